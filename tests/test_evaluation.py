"""pipeline.evaluation extras against direct computations: emotion-valence correlation, calibration, seeds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from scipy.stats import pointbiserialr
from sklearn.metrics import f1_score

from pipeline import evaluation as ev
from pipeline.labels import MER_LABELS, logit_columns
from pipeline.training.calibration import fit_temperature
from pipeline.training.metrics import ece, over_seeds_by_subset

LOGIT_COLUMNS = logit_columns(MER_LABELS)


def joined_rows(seeds=(0, 1), n=120) -> pd.DataFrame:
    """Predictions of subset AV on train-oof and test1, joined with truths; class 'surprise' never occurs."""
    rng = np.random.default_rng(0)
    frames = []
    y = rng.integers(0, 5, n)
    v_true = np.array([0.0, -3.0, 3.0, -2.0, -1.0, 0.0])[y] + rng.normal(size=n)
    for seed in seeds:
        logits = 2.5 * np.eye(6)[y] + rng.normal(scale=1.5, size=(n, 6))  # overconfident-ish, mostly right
        frame = pd.DataFrame(logits, columns=LOGIT_COLUMNS)
        frame.insert(0, "sample_id", [f"s{i}" for i in range(n)])
        frame.insert(0, "test", np.where(np.arange(n) < n // 2, "train-oof", "test1"))
        frame.insert(0, "seed", seed)
        frame.insert(0, "subset", "AV")
        frame["valence"] = v_true + rng.normal(scale=0.5 + seed, size=n)
        frame["label"], frame["valence_true"] = np.array(MER_LABELS)[y], v_true
        frame["fallback"] = False
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_emotion_valence_against_direct_correlations():
    rows = joined_rows()
    table = ev.emotion_valence(rows, "AV").set_index(["test", "label"])
    block = rows[(rows["seed"] == 0) & (rows["test"] == "test1")]
    probs = softmax(block[LOGIT_COLUMNS].to_numpy(), axis=1)
    for c, name in enumerate(MER_LABELS[:5]):
        mine = (block["label"] == name).to_numpy()
        r = table.loc[("test1", name)]
        assert r["truth_r"] == pytest.approx(pointbiserialr(mine, block["valence_true"]).statistic)
        assert r["model_r"] == pytest.approx(np.corrcoef(probs[:, c], block["valence"])[0, 1])
        assert r["mean_valence"] == pytest.approx(block.loc[mine, "valence_true"].mean())
        assert r["n"] == mine.sum()
    absent = table.loc[("test1", "surprise")]
    assert absent["n"] == 0 and pd.isna(absent["truth_r"]) and pd.isna(absent["mean_valence"])
    assert table.loc[("test1", "angry"), "truth_r"] < 0 < table.loc[("test1", "happy"), "truth_r"]


def test_calibration_against_direct_ece():
    rows = joined_rows()
    report = ev.calibration(rows, "AV")
    oof = rows[(rows["seed"] == 0) & (rows["test"] == "train-oof")]
    y = oof["label"].map(MER_LABELS.index).to_numpy()
    logits = oof[LOGIT_COLUMNS].to_numpy()
    t = fit_temperature(logits, y)
    assert report["temperature"] == pytest.approx(t, rel=1e-6)
    assert report["oof_ece_raw"] == pytest.approx(ece(softmax(logits, axis=1), y))
    assert report["oof_ece_scaled"] == pytest.approx(ece(softmax(logits / t, axis=1), y))
    assert report["oof_nll_scaled"] <= report["oof_nll_raw"]
    test = rows[(rows["seed"] == 0) & (rows["test"] == "test1")]
    yt = test["label"].map(MER_LABELS.index).to_numpy()
    assert report["test1_ece_scaled"] == pytest.approx(ece(softmax(test[LOGIT_COLUMNS].to_numpy() / t, axis=1), yt))


def test_seeds_give_mean_and_std():
    rows = joined_rows(seeds=(0, 1, 2))
    figures = ev.score(rows, "AV", "test1")
    f1s = []
    for seed in (0, 1, 2):
        block = rows[(rows["seed"] == seed) & (rows["test"] == "test1")]
        f1s.append(f1_score(block["label"], np.array(MER_LABELS)[block[LOGIT_COLUMNS].to_numpy().argmax(1)],
                            average="weighted"))
    assert figures["f1_weighted"] == pytest.approx(np.mean(f1s))
    assert figures["f1_weighted_std"] == pytest.approx(np.std(f1s)) and figures["f1_weighted_std"] > 0
    runs = [{"subset": "A", "seed": s, "f1_weighted": f, "valence_mse": 1.0 + s} for s, f in enumerate(f1s)]
    summary = over_seeds_by_subset(runs)["A"]
    assert summary["f1_weighted"] == pytest.approx(np.mean(f1s))
    assert summary["valence_mse_std"] == pytest.approx(np.std([1, 2, 3]))


def test_markdown_table_prints_counts_as_whole_numbers_and_blanks_for_absent():
    frame = pd.DataFrame({"subset": ["A", "T"], "f1": [0.5, np.nan], "n": [40, None]}).astype({"n": "Int64"})
    assert ev.markdown_table(frame).splitlines()[2:] == ["| A | 0.5000 | 40 |", "| T |  |  |"]
