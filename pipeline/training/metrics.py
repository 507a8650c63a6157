"""MER 2023 metrics (protocol §6.1): weighted F1, valence MSE, combined = F1_w - 0.25 * MSE; plus ECE.

Rows with label < 0 (unlabelled) never enter the emotion metrics, and rows whose valence truth is NaN
never enter the MSE, so one prediction file can be scored against a partially labelled split
(MER-SEMI scores only its labelled rows).
"""

from __future__ import annotations

import numpy as np

MSE_WEIGHT = 0.25  # Eq. 12 of the paper
COUNTS = ("n", "n_valence", "n_fallback")  # item counts: the same for every seed, no std


def weighted_f1(y_true, y_pred) -> float:
    """sklearn's support-weighted F1 over the classes present in y_true (`f1_score(average="weighted")`).

    Classes that only occur in y_pred have zero support, so they weigh nothing in the average either
    way. Computed here from the per-class counts with sklearn's own arithmetic (F1 = 2 tp / (support +
    predicted), then np.average weighted by support), so it is the same float to the last bit
    (tests/test_metrics.py), at a fortieth of f1_score's cost: training scores every fold of every
    subset after every epoch.
    """
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.size == 0:
        return float("nan")
    labels, true_sum = np.unique(y_true, return_counts=True)
    at = np.minimum(np.searchsorted(labels, y_pred), len(labels) - 1)
    predicted = labels[at] == y_pred                                  # predictions of a class in y_true
    pred_sum = np.bincount(at[predicted], minlength=len(labels))
    tp_sum = np.bincount(at[predicted & (y_pred == y_true)], minlength=len(labels))
    f1 = 2.0 * tp_sum.astype(np.float64) / (true_sum.astype(np.float64) + pred_sum.astype(np.float64))
    return float(np.average(f1, weights=true_sum))


def accuracy(y_true, y_pred) -> float:
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return float(np.mean(y_true == y_pred)) if y_true.size else float("nan")


def valence_mse(v_true, v_pred) -> float:
    v_true, v_pred = np.asarray(v_true, dtype=np.float64), np.asarray(v_pred, dtype=np.float64)
    return float(np.mean((v_true - v_pred) ** 2)) if v_true.size else float("nan")


def combined(f1: float, mse: float) -> float:
    return f1 - MSE_WEIGHT * mse


def selection_metric(f1: float, mse: float) -> float:
    """The baseline's per-epoch model-selection value: combined, or F1 alone when there is no valence."""
    return f1 if np.isnan(mse) else combined(f1, mse)


def score_split(y_true, y_pred, v_true=None, v_pred=None) -> dict[str, float]:
    """Figures of one split. Emotion metrics over rows with y_true >= 0; valence over rows with finite truth."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labelled = y_true >= 0
    f1 = weighted_f1(y_true[labelled], y_pred[labelled])
    out = {"n": int(labelled.sum()), "f1_weighted": f1, "accuracy": accuracy(y_true[labelled], y_pred[labelled])}
    if v_true is None or v_pred is None:
        return out
    v_true, v_pred = np.asarray(v_true, dtype=np.float64), np.asarray(v_pred, dtype=np.float64)
    has_v = np.isfinite(v_true)
    if not has_v.any():
        return out
    mse = valence_mse(v_true[has_v], v_pred[has_v])
    out.update(n_valence=int(has_v.sum()), valence_mse=mse, combined=combined(f1, mse))
    return out


def ece(probs, y, n_bins: int = 15) -> float:
    """Expected calibration error of the top-1 confidence over `n_bins` equal-width bins (lo, hi].

    ECE = sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)|; the first bin also takes confidence 0.
    """
    probs, y = np.asarray(probs, dtype=np.float64), np.asarray(y)
    if len(y) == 0:
        return float("nan")
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    gap = np.bincount(bins, weights=correct - conf, minlength=n_bins)  # per bin: |B| * (acc - conf)
    return float(np.abs(gap).sum() / len(y))


def over_seeds(blocks: list[dict]) -> dict:
    """Mean of each figure over seeds, with its std when there are several."""
    out = {}
    for key in blocks[0]:
        values = [b[key] for b in blocks if key in b]
        out[key] = float(np.mean(values))
        if len(values) > 1 and key not in COUNTS:
            out[f"{key}_std"] = float(np.std(values))
    return out


CV_FIGURES = ("f1_weighted", "valence_mse", "combined")


def over_seeds_by_subset(summaries: list[dict]) -> dict[str, dict]:
    """Per subset of cross-validation run summaries: each CV figure's mean over seeds, and its std (key
    `<figure>_std`) with several seeds."""
    out = {}
    for subset in dict.fromkeys(s["subset"] for s in summaries):
        runs = [{k: s[k] for k in CV_FIGURES if k in s} for s in summaries if s["subset"] == subset]
        out[subset] = over_seeds(runs)
    return out
