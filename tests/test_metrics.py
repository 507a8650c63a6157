"""pipeline.training.metrics and calibration: hand-computed examples and sklearn agreement."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from pipeline.training.calibration import apply_temperature, calibrate, fit_temperature, nll
from pipeline.training.metrics import accuracy, combined, ece, score_split, valence_mse, weighted_f1


def test_weighted_f1_hand_example():
    # class 0: support 3, tp 2, predicted 3 -> P 2/3, R 2/3, F1 2/3
    # class 1: support 2, tp 1, predicted 1 -> P 1,   R 1/2, F1 2/3
    # class 2: support 1, tp 1, predicted 2 -> P 1/2, R 1,   F1 2/3
    y_true = [0, 0, 0, 1, 1, 2]
    y_pred = [0, 0, 2, 1, 0, 2]
    assert weighted_f1(y_true, y_pred) == pytest.approx(2 / 3)
    # unequal per-class F1: (3 * 0.8 + 1 * 0) / 4
    assert weighted_f1([0, 0, 0, 1], [0, 0, 1, 0]) == pytest.approx((3 * (2 * 2 / (3 + 3)) + 0) / 4)


def test_weighted_f1_matches_sklearn_with_prediction_only_classes():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 4, 200)
    y_pred = rng.integers(0, 6, 200)  # classes 4, 5 never occur in y_true
    assert weighted_f1(y_true, y_pred) == pytest.approx(f1_score(y_true, y_pred, average="weighted"))
    never_predicted = np.where(y_pred == 3, 0, y_pred)  # class 3 has support but no prediction: F1 0
    assert weighted_f1(y_true, never_predicted) == pytest.approx(
        f1_score(y_true, never_predicted, average="weighted", zero_division=0))


def test_weighted_f1_is_sklearns_to_the_bit():
    """The counts-based weighted F1 must give f1_score's float exactly (training picks epochs on it): random
    label sets, classes only predicted, classes never predicted, mostly-right predictions, string labels."""
    rng = np.random.default_rng(1)
    for trial in range(500):
        n, classes, predicted = int(rng.integers(1, 400)), int(rng.integers(1, 8)), int(rng.integers(1, 10))
        y_true, y_pred = rng.integers(0, classes, n), rng.integers(0, predicted, n)
        if trial % 2:
            y_pred = np.where(rng.random(n) < 0.7, y_true, y_pred)
        expected = f1_score(y_true, y_pred, labels=np.unique(y_true), average="weighted", zero_division=0)
        assert weighted_f1(y_true, y_pred) == float(expected), trial
    words, guesses = np.array(["sad", "happy", "sad", "angry"]), np.array(["sad", "worried", "angry", "angry"])
    assert weighted_f1(words, guesses) == float(f1_score(words, guesses, labels=np.unique(words), average="weighted"))


def test_accuracy_mse_combined():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert valence_mse([1.0, -1.0, 0.0], [0.0, 1.0, 0.0]) == pytest.approx(5 / 3)
    assert combined(0.6, 1.2) == pytest.approx(0.3)


def test_score_split_skips_unlabelled_rows_and_nan_valence():
    out = score_split([0, 1, -1, 1], [0, 1, 2, 0], [1.0, np.nan, 2.0, -1.0], [0.0, 5.0, 2.0, 1.0])
    assert out["n"] == 3 and out["n_valence"] == 3
    assert out["f1_weighted"] == pytest.approx(weighted_f1([0, 1, 1], [0, 1, 0]))
    assert out["valence_mse"] == pytest.approx((1 + 0 + 4) / 3)
    assert out["combined"] == pytest.approx(out["f1_weighted"] - 0.25 * out["valence_mse"])
    assert "valence_mse" not in score_split([0, 1], [0, 1])
    assert "valence_mse" not in score_split([0, 1], [0, 1], [np.nan, np.nan], [0.0, 0.0])


def test_ece_hand_example():
    # n_bins=2, bins [0, .5] and (.5, 1]. High bin: conf .9 right, .8 wrong -> 2/4 * |1/2 - .85|;
    # low bin: conf .4 right, .45 right -> 2/4 * |1 - .425|.
    probs = np.array([[0.9, 0.05, 0.05], [0.8, 0.1, 0.1], [0.4, 0.35, 0.25], [0.45, 0.3, 0.25]])
    y = np.array([0, 1, 0, 0])
    assert ece(probs, y, n_bins=2) == pytest.approx(0.5 * 0.35 + 0.5 * 0.575)
    assert ece(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1])) == pytest.approx(0.0)


def test_temperature_recovers_overconfidence():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(size=(4000, 6)) * 1.5
    y = np.array([rng.choice(6, p=p) for p in apply_temperature(true_logits, 1.0)])
    over = true_logits * 3.0                       # an over-confident model: T should come out near 3
    t = fit_temperature(over, y)
    assert t == pytest.approx(3.0, rel=0.1)
    assert nll(over, y, t) < nll(over, y)
    report = calibrate(over, y)
    assert report.ece_after < report.ece_before and report.n == 4000


def test_calibration_ignores_unvalidated_rows():
    logits = np.array([[2.0, 0.0], [np.nan, np.nan], [0.0, 1.0], [1.0, 0.0]])
    y = np.array([0, 1, 1, -1])
    assert calibrate(logits, y).n == 2
