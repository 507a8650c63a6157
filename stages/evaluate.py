"""evaluate: MER-MULTI / MER-NOISE / MER-SEMI metrics, ablation table, robustness curve, plot data,
emotion-valence correlation per class, calibration (ECE before and after temperature scaling).

Reads the predictions of `train` (every subset) and `pseudolabel` (the main subset with pseudo-labels);
MER-SEMI is scored on the pseudo-labelled model, with the labelled-only figure beside it. evaluate.protocol
chooses the track a run is scored as (pipeline/protocols.py): its figures (metrics/track.json), the headline
and the organisers' submission files.
"""

import json
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from pipeline import evaluation as ev
from pipeline import outputs
from pipeline.config import load_section
from pipeline.environment import versions
from pipeline.fingerprint import file_sha256, fingerprint, source_digest
from pipeline.inputs import PREDICTIONS_NEED, PSEUDOLABEL, TRAIN, read_manifest, read_record, read_table
from pipeline.labels import LIST_COLUMN, manifest_labels
from pipeline.protocols import Scored


def run(params: Path, *, manifest: Path, predictions: Path, semi_predictions: Path, cv_metrics: Path,
        out: Path, submissions: Path, label_lists: Path | None = None) -> dict:
    cfg = load_section("evaluate", params)
    protocol = cfg.protocol.cls
    rows = read_manifest(manifest)
    cv = read_record(cv_metrics, TRAIN, ("main_subset", "over_seeds", "runs"))
    main = cv["main_subset"]
    supervised = ev.joined(read_table(predictions, TRAIN, PREDICTIONS_NEED), rows)
    noise_test = ev.noise_test_name(cfg.noise_view, supervised["test"].unique())
    if semi_predictions.is_dir():  # the pseudolabel rounds' folder: score the last round
        semi_predictions = semi_predictions / f"{load_section('pseudolabel', params).final_round}.parquet"
    semi = ev.joined(read_table(semi_predictions, PSEUDOLABEL, PREDICTIONS_NEED), rows)
    out.mkdir(parents=True, exist_ok=True)
    figures = ev.challenge_metrics(supervised, main, noise_test)
    figures["mer_semi"] = ev.score(semi, main, "test3", with_valence=False) | {
        "f1_weighted_labelled_only": figures["mer_semi"].get("f1_weighted")}
    labels = manifest_labels(rows)
    for name, values in figures.items():
        values = values | {"subset": main, "labels": list(labels), "paper_baseline": ev.PAPER_BASELINE[name]}
        (out / outputs.task_file(name)).write_text(json.dumps(values, indent=2))
    lists = pd.DataFrame(columns=["test", "sample_id", LIST_COLUMN]) if label_lists is None else \
        read_table(label_lists, TRAIN, ("test", "sample_id", LIST_COLUMN))
    scored = Scored(rows, supervised, semi, main, lists, cfg)
    track = protocol.figures(scored)
    (out / outputs.TRACK).write_text(json.dumps({"protocol": protocol.name} | track, indent=2))
    (out / outputs.HEADLINE).write_text(json.dumps(protocol.headline(track, figures, cv["over_seeds"][main]), indent=2))
    ablation = ev.ablation_table(supervised, cv["runs"], noise_test)
    # keyed by subset, not a list: `dvc metrics diff` (and the PR comment) compares nested keys, never lists
    (out / outputs.ABLATION).write_text(ablation.set_index("subset").to_json(orient="index", indent=2))
    (out / outputs.ABLATION_TABLE).write_text(ev.markdown_table(ablation))
    robustness = ev.robustness_curve(supervised)
    robustness.to_csv(out / outputs.ROBUSTNESS, index=False)
    (out / outputs.ROBUSTNESS_TABLE).write_text(ev.markdown_table(robustness))
    confusion = ev.confusion_rows(supervised, main, "test1")
    confusion.to_csv(out / outputs.CONFUSION, index=False)
    ev.per_class_f1(confusion, labels).to_csv(out / outputs.PER_CLASS_F1, index=False)
    ev.valence_rows(supervised, main, "test1").to_csv(out / outputs.VALENCE, index=False)
    ev.emotion_valence(supervised, main).to_csv(out / outputs.EMOTION_VALENCE, index=False)
    (out / outputs.CALIBRATION).write_text(json.dumps(ev.calibration(supervised, main), indent=2))
    submissions.mkdir(parents=True, exist_ok=True)
    for test, source in (("test1", supervised), ("test2", supervised), ("test3", semi)):
        name = noise_test if test == "test2" else test
        ev.submission(source, main, name).to_csv(submissions / f"{test}-pred.csv", index=False)
    protocol.submit(scored, submissions)
    made_from = {"manifest": manifest, "predictions": predictions, "semi_predictions": semi_predictions}
    record = {"fingerprint": submission_fingerprint(asdict(cfg), main, made_from)}
    (submissions / outputs.SUBMISSION_FINGERPRINT).write_text(json.dumps(record, indent=2))
    return figures if protocol.name == "mer2023" else {protocol.name: track}


def submission_fingerprint(config: dict, main: str, made_from: dict[str, Path]) -> str:
    """The submissions' fingerprint (pipeline.fingerprint): the scoring code, the evaluate section and the
    subset submitted, the bytes of the manifest and predictions they were made from, the libraries writing them."""
    code = ("submission", source_digest("evaluation.py", "protocols.py"))
    inputs = {name: file_sha256(path) for name, path in made_from.items()}
    return fingerprint(code, config | {"main_subset": main, "inputs": inputs}, versions("numpy", "pandas"))
