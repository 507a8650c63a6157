"""A generated release of each later shape (MER 2024; MER 2025 with video/; MER 2026 without) through a
real `dvc repro` with its recipes/<shape>.yaml: prepare, extract from the shipped faces and audio, encode,
train, pseudolabel and evaluate. The candidates are predicted and submitted exactly, the pool alone is
pseudo-labelled from, and the labelled candidates are what is scored."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dvc_project import REPO, project_copy, run

from pipeline.demo.releases import ReleaseSpec, write_release
from pipeline.labels import MER_LABELS

pytestmark = pytest.mark.slow

SPEC = {"n_train": 36, "n_candidates": 12, "n_pool": 12, "seconds": 1.0, "fps": 10}
OPTIONS = {  # beside each recipe: the generated release's own file names, and its test labels
    "mer2024": {"audio": "audio", "subtitles": "subtitle.csv"},   # no test labels: the candidates are only submitted
    "mer2025": {"test_labels": "track1_test.csv",
                "label_lists": ["track2_train_ovmerd.csv", "track2_train_mercaptionplus.csv"]},
    "mer2026": {"test_labels": "track1_test.csv"},
}
FAST = {"train": {"folds": 3, "fusion": {"epochs": 15}, "ablation": ["T", "AVT"]}}


@pytest.fixture(scope="module", params=list(OPTIONS))
def repro(request, tmp_path_factory) -> tuple[str, Path, pd.DataFrame]:
    shape = request.param
    recipe = yaml.safe_load((REPO / "recipes" / f"{shape}.yaml").read_text())
    recipe["prepare"] |= {"root": "data/release", "options": recipe["prepare"]["options"] | OPTIONS[shape]}
    overrides = {section: recipe.get(section, {}) | FAST.get(section, {}) for section in recipe | FAST}
    work = project_copy(tmp_path_factory.mktemp("project"), overrides)
    rows = write_release(work / "data" / "release", ReleaseSpec(shape=shape, with_video=shape == "mer2025", **SPEC),
                         workers=2)
    run(["dvc", "repro", "evaluate"], work)
    return shape, work, pd.DataFrame(rows)


def names(rows: pd.DataFrame, split: str) -> list[str]:
    return sorted(rows.loc[rows["split"] == split, "name"])


def test_splits_and_what_extract_read(repro):
    shape, work, rows = repro
    manifest = pd.read_parquet(work / "data" / "manifest.parquet")
    assert manifest.groupby("split").size().to_dict() == rows.groupby("split").size().to_dict()
    view = pd.read_parquet(work / "featurestore" / "media.zarr" / "view.parquet").merge(manifest[["sample_id", "split"]])
    shipped = view["meta"].map(lambda m: json.loads(m).get("shipped"))
    if shape == "mer2024":   # faces detected in every video; the shipped audio of the unlabelled clips
        assert all(s == ["audio"] for s in shipped[view["split"] != "train"])
        assert shipped[view["split"] == "train"].isna().all() and (view["n_faces"] > 0).mean() > 0.9
        return
    assert all(s == ["faces", "audio"] for s in shipped)
    faces = json.loads((work / "metrics" / "faces.json").read_text())["all"]
    assert faces["no_face"] == int(rows["no_face"].sum()) > 0 and faces["items"] == len(rows)


def test_candidates_are_predicted_and_submitted_and_the_labelled_ones_scored(repro):
    shape, work, rows = repro
    cv = json.loads((work / "metrics" / "cv.json").read_text())
    predictions = pd.read_parquet(work / "models" / "predictions.parquet")
    main = predictions[predictions["subset"] == cv["main_subset"]]
    assert sorted(main.loc[main["test"] == "test1", "sample_id"].unique()) == names(rows, "test1")
    submission = pd.read_csv(work / "models" / "submissions" / "test1-pred.csv")
    assert sorted(submission["name"]) == names(rows, "test1") and submission["name"].is_unique
    assert set(submission["discrete"]) <= set(MER_LABELS)
    track = pd.read_csv(work / "models" / "submissions" / "submission.csv")   # the recipe's protocol: semi
    assert list(track.columns) == ["name", "discrete"] and len(track) == len(names(rows, "test1"))
    assert sorted(track["name"]) == names(rows, "test1") and set(track["discrete"]) <= set(MER_LABELS)
    scored = json.loads((work / "metrics" / "mer_multi.json").read_text())
    assert scored["n"] == (0 if shape == "mer2024" else len(names(rows, "test1")))
    if shape != "mer2024":  # learnable content: well above the 1/6 of chance on the candidates
        assert scored["f1_weighted"] > 0.4, scored


def test_pseudolabels_come_from_the_pool_alone(repro):
    shape, work, rows = repro
    for round_name in ("r1", "r2"):
        selection = json.loads((work / "metrics" / "pseudolabel" / round_name / "selection.json").read_text())
        assert selection["unlabelled"] == len(names(rows, "test3"))
        selected = pd.read_csv(work / "metrics" / "pseudolabel" / round_name / "selected.csv")
        assert set(selected["sample_id"]) <= set(names(rows, "test3"))
