"""Temperature scaling (Guo et al. 2017) fit on out-of-fold logits.

One scalar T > 0 divides the logits; it is fit by minimising the NLL of the labelled out-of-fold rows,
so the model is never calibrated on rows it trained on. T leaves the argmax, hence F1, unchanged.
NLL is convex in 1/T, so a bounded 1-D search over log T finds the optimum.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

from pipeline.training.metrics import ece

LOG_T_BOUNDS = (np.log(1e-2), np.log(1e2))


def _usable(logits: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labelled rows with finite logits (out-of-fold arrays hold NaN for rows never validated)."""
    logits, y = np.asarray(logits, dtype=np.float64), np.asarray(y)
    keep = (y >= 0) & np.isfinite(logits).all(axis=1)
    return logits[keep], y[keep]


def nll(logits, y, temperature: float = 1.0) -> float:
    logits, y = _usable(logits, y)
    return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits, y) -> float:
    logits, y = _usable(logits, y)
    if len(y) == 0:
        raise ValueError("no labelled rows with finite logits to fit a temperature on")
    res = minimize_scalar(lambda log_t: nll(logits, y, float(np.exp(log_t))), bounds=LOG_T_BOUNDS,
                          method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Calibrated probabilities softmax(logits / T)."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1)


@dataclass(frozen=True)
class CalibrationReport:
    temperature: float
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float


def calibrate(logits, y, n_bins: int = 15) -> CalibrationReport:
    """Fit T on (out-of-fold) logits and report NLL and ECE before and after, on the same rows."""
    logits, y = _usable(logits, y)
    t = fit_temperature(logits, y)
    before, after = apply_temperature(logits, 1.0), apply_temperature(logits, t)
    return CalibrationReport(t, len(y), nll(logits, y), nll(logits, y, t), ece(before, y, n_bins), ece(after, y, n_bins))
