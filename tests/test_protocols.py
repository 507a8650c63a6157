"""evaluate.protocol end to end on a release-shaped corpus drawn as features (no media): candidates in test1
(labelled, with label lists), an unlabelled pool in test3, clips with label lists in train and the pool.
Real training (fusion, a pseudo-labelling round, the label-list model), then `evaluate` per protocol: its
figures recomputed from the submission files it writes."""

from __future__ import annotations

import ast
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, f1_score

from pipeline.config import DemoConfig, FineGrainedParams, FusionParams, PseudolabelConfig, TrainConfig
from pipeline.demo.features import feature_corpus
from pipeline.emotion_wheel import EmotionWheel
from pipeline.labels import split_list
from pipeline.reporting.diff import headline_frame
from pipeline.reporting.report import write_report
from pipeline.training import label_lists as fg
from pipeline.training.metrics import over_seeds_by_subset
from pipeline.training.run import cv_summary, predictions_frame, run_subsets
from pipeline.training.semi import model_predictions, run_round
from stages import evaluate
from tests.list_fixtures import with_label_lists, write_class_wheel

SPEC = DemoConfig(seed=3, n_train=72, n_test1=30, n_test2=0, n_test3_labelled=0, n_unlabelled=45)
CFG = TrainConfig(features={"audio": "a", "visual": "v", "text": "t"}, folds=3,
                  fusion=FusionParams(epochs=12, batch_size=32, lr=0.003, hidden=(32, 16)), feature_norm="standard",
                  ablation=("A",))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train once; returns a function that evaluates under a protocol and reads what evaluate wrote."""
    work = tmp_path_factory.mktemp("protocols")
    rows, tables = feature_corpus(SPEC, dim=8, noise=0.6)
    rows = with_label_lists(rows)
    for table in tables.values():
        table.rows = table.rows.merge(rows[["sample_id", "label_list"]], on="sample_id")
    rows.to_parquet(work / "manifest.parquet")
    runs = [("A", 0), ("AVT", 0)]
    frames, summaries = [], []
    for (subset, seed), (result, ids) in zip(runs, run_subsets(tables, runs, CFG)):
        frames.append(predictions_frame(result, ids, tables, subset, seed))
        summaries.append(cv_summary(result, subset, seed, len(ids)))
    supervised = pd.concat(frames, ignore_index=True)
    supervised.to_parquet(work / "predictions.parquet")
    semi, picked, _ = run_round(tables, rows, model_predictions(supervised, "AVT", 0), PseudolabelConfig(), CFG)
    assert len(picked)  # the round retrained: its predictions differ from train's
    semi.to_parquet(work / "semi.parquet")
    (work / "cv.json").write_text(json.dumps({"main_subset": "AVT", "runs": summaries,
                                              "over_seeds": over_seeds_by_subset(summaries)}))
    model = fg.fit(tables, "AVT", dataclasses.replace(CFG.fusion, epochs=40), FineGrainedParams(), CFG.folds, 0)
    fg.predictions(model, tables).to_parquet(work / "label_lists.parquet")
    wheel = write_class_wheel(work / "wheel")

    def evaluate_as(protocol: str):
        out = work / protocol
        params = out / "params.yaml"
        out.mkdir()
        params.write_text(yaml.safe_dump({"evaluate": {"protocol": protocol, "wheel": str(wheel)}}))
        evaluate.run(params, manifest=work / "manifest.parquet", predictions=work / "predictions.parquet",
                     semi_predictions=work / "semi.parquet", cv_metrics=work / "cv.json", out=out / "metrics",
                     submissions=out / "submissions", label_lists=work / "label_lists.parquet")
        read = lambda name: json.loads((out / "metrics" / f"{name}.json").read_text())  # noqa: E731
        write_report(out / "metrics", out / "report.html", out / "summary.md")
        return read, out / "submissions"

    return rows, model, wheel, evaluate_as


def candidates(rows):
    return rows[rows["split"] == "test1"]


def test_semi_scores_the_last_round_on_the_candidates_from_its_submission(run):
    rows, _, _, evaluate_as = run
    read, submissions = evaluate_as("semi")
    submission = pd.read_csv(submissions / "submission.csv")
    assert list(submission.columns) == ["name", "discrete"]
    assert submission["name"].tolist() == candidates(rows)["sample_id"].tolist()   # exactly the candidate list
    truth = candidates(rows).set_index("sample_id")["label"].reindex(submission["name"]).to_numpy()
    track, headline = read("track"), read("headline")
    assert track["protocol"] == "semi" and track["n"] == SPEC.n_test1 and "valence_mse" not in track
    assert track["f1_weighted"] == pytest.approx(f1_score(truth, submission["discrete"], average="weighted"), abs=1e-12)
    assert track["accuracy"] == pytest.approx(accuracy_score(truth, submission["discrete"]), abs=1e-12)
    assert track["f1_weighted_labelled_only"] != track["f1_weighted"]
    assert "| accuracy |" in (submissions.parent / "summary.md").read_text()
    assert set(headline) == {"semi", "semiAcc", "cvF1"} and headline["semi"] == round(track["f1_weighted"], 3)
    assert headline_frame({k: {"new": v} for k, v in headline.items()})["figure"].tolist() == [
        "MER-SEMI F1", "MER-SEMI accuracy", "CV F1"]


def test_fg_scores_the_submitted_lists_with_the_emotion_wheel(run):
    rows, model, wheel, evaluate_as = run
    read, submissions = evaluate_as("fg")
    npz = np.load(submissions / "submission.npz")
    names = candidates(rows)["sample_id"].tolist()
    assert npz["filenames"].tolist() == names
    items = [ast.literal_eval(item) for item in npz["fileitems"]]   # "['word', ...]" per candidate, never empty
    assert all(isinstance(words, list) and 1 <= len(words) <= 5 for words in items)
    assert pd.read_csv(submissions / "submission.csv")["name"].tolist() == names
    truth = dict(zip(names, candidates(rows)["label_list"].map(split_list)))
    expected = EmotionWheel.read(wheel).score(truth, dict(zip(names, npz["fileitems"])))
    track, headline = read("track"), read("headline")
    assert track["n"] == len(names)
    for level in ("level1", "level2"):
        assert track[level]["f"] == pytest.approx(expected[level]["f"], abs=1e-12)
    assert headline["fgL1"] == round(expected["level1"]["f"], 3)
    assert headline["fg"] == round((expected["level1"]["f"] + expected["level2"]["f"]) / 2, 3)
    # the class words are learnable from the features: far above a constant list of the commonest word
    common = pd.Series([w for words in truth.values() for w in words]).mode()[0]
    constant = EmotionWheel.read(wheel).score(truth, dict.fromkeys(names, [common]))
    assert expected["level1"]["f"] > constant["level1"]["f"] + 0.2
    summary = (submissions.parent / "summary.md").read_text()
    assert "## Track figures (evaluate.protocol: fg)" in summary and "| level1 | wheel1 |" in summary


def test_the_vocabulary_folds_word_forms(run):
    _, model, _, _ = run
    assert "gloomy" in model.vocabulary.words and "gloomyness" not in model.vocabulary.words
    assert model.vocabulary.normalise(["Gloomyness", "SADLY", "unknown"]) == ["gloomy", "sad"]
    assert model.summary["vocabulary"] == 17 and model.summary["oof_sample_f1"] > 0.3


def test_mer2023_keeps_its_headline_and_writes_no_track_submission(run):
    _, _, _, evaluate_as = run
    read, submissions = evaluate_as("mer2023")
    assert read("track") == {"protocol": "mer2023"}
    assert list(read("headline")) == ["multi", "multiF1", "multiMSE", "noise", "noiseF1", "noiseMSE", "semi", "cv"]
    assert not (submissions / "submission.csv").exists() and (submissions / "test1-pred.csv").exists()
    assert "Track figures" not in (submissions.parent / "summary.md").read_text()


@pytest.mark.slow
def test_train_stage_fits_the_label_lists_and_fg_scores_them(tmp_path):
    """`train` on a manifest with label lists (text-only clips, imported text features): it writes the
    candidates' lists and its summary, and `evaluate` (fg) submits every candidate."""
    from pipeline.config import load_section
    from pipeline.datasets import Candidate, validate
    from pipeline.extract import extract
    from pipeline.labels import MER_LABELS
    from pipeline.store.exchange import import_npy
    from stages import train

    spec = DemoConfig(seed=5, n_train=48, n_test1=12, n_test2=0, n_test3_labelled=0, n_unlabelled=24)
    rows, tables = feature_corpus(spec, dim=8, noise=0.6)
    rows = with_label_lists(rows)
    (tmp_path / "npy").mkdir()
    for table in tables.values():
        for name, x in zip(table.rows["sample_id"], table.X["text"]):
            np.save(tmp_path / "npy" / f"{name}.npy", x)
    import_npy(tmp_path / "npy", "text", tmp_path / "features" / "t.zarr")
    manifest, rejects = validate([Candidate(r.sample_id, r.split, None, r.label, r.valence, transcript="words")
                                  for r in rows.itertuples()], tmp_path, MER_LABELS, {})
    assert rejects.empty
    manifest = manifest.assign(label_list=rows["label_list"].to_numpy())
    manifest.to_parquet(tmp_path / "manifest.parquet")
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"train": {"features": {"text": "t"}, "folds": 2, "ablation": [],
                                                "fusion": {"epochs": 30, "hidden": [16, 8], "lr": 0.003}},
                                      "evaluate": {"protocol": "fg", "wheel": str(write_class_wheel(tmp_path / "w"))},
                                      "pseudolabel": {"rounds": {"r1": "x"}}}))
    extract(manifest, tmp_path, tmp_path / "media.zarr", load_section("extract", params))
    report = train.run(params, manifest=tmp_path / "manifest.parquet", clean=tmp_path / "media.zarr", corrupted=None,
                       features=tmp_path / "features", predictions=tmp_path / "predictions.parquet",
                       metrics=tmp_path / "cv.json", curves=tmp_path / "curves", checkpoint=tmp_path / "checkpoint",
                       label_lists=tmp_path / "lists.parquet")
    assert report["label_lists"]["items"] == spec.n_train + spec.n_unlabelled   # every list outside test1
    lists = pd.read_parquet(tmp_path / "lists.parquet")
    assert lists["sample_id"].tolist() == candidates(rows)["sample_id"].tolist()
    assert lists["label_list"].map(split_list).map(len).between(1, 5).all()
    evaluate.run(params, manifest=tmp_path / "manifest.parquet", predictions=tmp_path / "predictions.parquet",
                 semi_predictions=tmp_path / "predictions.parquet", cv_metrics=tmp_path / "cv.json",
                 out=tmp_path / "metrics", submissions=tmp_path / "subs", label_lists=tmp_path / "lists.parquet")
    assert np.load(tmp_path / "subs" / "submission.npz")["filenames"].tolist() == lists["sample_id"].tolist()
    assert json.loads((tmp_path / "metrics" / "track.json").read_text())["n"] == spec.n_test1


def test_diff_report_shows_the_headline_rows_of_the_protocols_either_side_has():
    from pipeline.evaluation import HEADLINE, HEADLINES

    mer2023 = headline_frame({"multi": {"old": 0.5, "new": 0.6, "diff": 0.1}})  # one figure known: every row
    assert mer2023["figure"].tolist() == [label for label, _ in HEADLINE.values()]
    switched = headline_frame({"multi": {"old": 0.5}, "fgL1": {"new": 0.4}, "cvF1": {"new": 0.7}})
    expected = [label for name in ("mer2023", "fg") for key, (label, _) in HEADLINES[name].items()]
    assert switched["figure"].tolist() == list(dict.fromkeys(expected))


def test_the_experiments_table_shows_the_headline_of_the_protocol_scored():
    from pipeline.reporting.exps import experiments_frame

    def state(name, headline, protocol):
        return {"rev": name, "name": name, "data": {
            "metrics": {"metrics/headline.json": {"data": headline}},
            "params": {"params.yaml": {"data": {"evaluate": {"protocol": protocol}, "train": {"lr": len(name)}}}}}}

    fg_runs = [{"rev": "workspace", "name": None, "data": {}, "experiments": [{"revs": [
        state("a", {"fg": 0.3, "fgL1": 0.4, "fgL2": 0.2, "cvF1": 0.5}, "fg"),
        state("bb", {"fg": 0.5, "fgL1": 0.6, "fgL2": 0.4, "cvF1": 0.4}, "fg")]}]}]
    frame = experiments_frame(fg_runs)   # sorted by the first fg figure: "multi" is not there
    assert list(frame.columns[-4:]) == ["fg", "fgL1", "fgL2", "cvF1"] and frame["fg"].tolist() == [0.5, 0.3]
