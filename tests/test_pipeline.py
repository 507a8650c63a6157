"""End to end: real `dvc repro` of every stage on a small generated corpus, in a fresh git repo."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dvc_project import project_copy, run

SMALL = {
    "demo": {"n_train": 72, "n_test1": 24, "n_test2": 18, "n_test3_labelled": 12, "n_unlabelled": 30},
    "corrupt": {"robustness_snr_db": [0], "robustness_blur": [4]},
    "train": {"fusion": {"epochs": 40}},
}


@pytest.fixture(scope="session")
def repro(tmp_path_factory) -> Path:
    work = project_copy(tmp_path_factory.mktemp("project"), SMALL)
    done = run(["dvc", "repro"], work)
    (work / "repro.log").write_text(done.stdout + done.stderr)
    return work


def test_repro_writes_every_challenge_metric(repro):
    multi = json.loads((repro / "metrics/mer_multi.json").read_text())
    noise = json.loads((repro / "metrics/mer_noise.json").read_text())
    semi = json.loads((repro / "metrics/mer_semi.json").read_text())
    for figures in (multi, noise):
        assert {"f1_weighted", "accuracy", "valence_mse", "combined"} <= set(figures)
        assert figures["combined"] == pytest.approx(figures["f1_weighted"] - 0.25 * figures["valence_mse"])
    assert multi["n"] == 24 and noise["n"] == 18 and semi["n"] == 12
    assert "valence_mse" not in semi  # MER-SEMI is scored by F1 only
    headline = json.loads((repro / "metrics/headline.json").read_text())
    assert (headline["multi"], headline["multiF1"], headline["multiMSE"]) == pytest.approx(
        (multi["combined"], multi["f1_weighted"], multi["valence_mse"]), abs=5e-4)
    assert (headline["noise"], headline["semi"]) == pytest.approx((noise["combined"], semi["f1_weighted"]), abs=5e-4)
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repro).stdout)
    assert [Path(f).name for f in shown[""]["data"]] == ["headline.json"]  # the only DVC metrics file
    submission = pd.read_csv(repro / "models/submissions/test1-pred.csv")
    assert list(submission.columns) == ["name", "discrete", "valence"] and len(submission) == 24


def test_each_pseudolabel_round_shows_its_progress(repro):
    log = (repro / "repro.log").read_text()
    for round_name in ("r1", "r2"):
        assert f"pseudolabel {round_name}: 3/3 step (100%)" in log, log[-3000:]  # a log's lines, not a bar


def test_second_repro_has_nothing_to_do(repro):
    out = run(["dvc", "repro"], repro).stdout
    assert "Running stage" not in out, out
    assert "up to date" in out


def test_a_fused_model_beats_every_unimodal_model(repro):
    runs = {r["subset"]: r["f1_weighted"] for r in json.loads((repro / "metrics/cv.json").read_text())["runs"]}
    fused = max(f1 for subset, f1 in runs.items() if len(subset) > 1)
    for single in ("A", "V", "T"):
        assert fused > runs[single], (single, runs)


def test_noise_hurts_audio_but_not_text(repro):
    curve = pd.read_csv(repro / "metrics/robustness.csv")
    audio = curve[curve["subset"] == "A"].set_index("snr")["f1_weighted"]
    text = curve[curve["subset"] == "T"].set_index("snr")["f1_weighted"]
    assert audio["0"] < audio["clean"]
    assert text["0"] == pytest.approx(text["clean"])  # transcripts are given, so noise cannot touch them
    # The blur view leaves the audio as it was: the audio-only model must score exactly as on clean clips.
    assert audio["blur4"] == pytest.approx(audio["clean"]) and text["blur4"] == pytest.approx(text["clean"])


def test_the_control_view_reproduces_the_clean_view_bit_for_bit(repro):
    """snrinf (the SNR views' code, noise at +inf dB, blur 1): the same features, the same predictions and so the
    same figures as the clean view, exactly."""
    from pipeline.store.features import FeatureStore
    from pipeline.store.media import MediaStore

    clean_view = MediaStore(repro / "featurestore/media.zarr").view().set_index("sample_id")
    control_view = MediaStore(repro / "featurestore/corrupted.zarr/snrinf").view().set_index("sample_id").sort_index()
    clean_view = clean_view.loc[control_view.index]
    for store in sorted((repro / "featurestore/features").glob("*.zarr")):
        features = FeatureStore(store)
        (X_clean, had), (X_control, has) = features.load(clean_view), features.load(control_view)
        assert np.array_equal(had, has) and X_clean.tobytes() == X_control.tobytes(), store.name
    predictions = pd.read_parquet(repro / "models/predictions.parquet")
    by_item = lambda test: (predictions[predictions["test"] == test].drop(columns="test")  # noqa: E731
                            .sort_values(["subset", "seed", "sample_id"]).reset_index(drop=True))
    assert len(by_item("test2")) and by_item("test2").equals(by_item("test2@snrinf"))
    curve = pd.read_csv(repro / "metrics/robustness.csv")
    figures = ["f1_weighted", "valence_mse", "n"]
    control = curve[curve["view"] == "snrinf"].set_index("subset")[figures]
    assert control.equals(curve[curve["view"] == "clean"].set_index("subset")[figures].loc[control.index])
    assert "scores exactly the clean figures for every subset" in (repro / "reports/summary.md").read_text()
