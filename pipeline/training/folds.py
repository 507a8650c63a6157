"""Folds and the checked arrays every cross-validation takes, whatever the model family."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

from pipeline.training.cv import TestSet


def make_folds(n: int, k: int = 5, seed: int = 0, y=None, groups=None) -> np.ndarray:
    """Fold id per item, stratified by y when given, never splitting a group when groups are given.

    Rows with y < 0 (unlabelled) get fold -1. Seeded: same inputs, same folds.
    """
    use = np.ones(n, dtype=bool) if y is None else np.asarray(y) >= 0
    idx = np.flatnonzero(use)
    strata = np.zeros(len(idx), dtype=int) if y is None else np.asarray(y)[idx]
    if groups is not None:
        splits = StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(idx, strata, np.asarray(groups)[idx])
    elif y is not None:
        splits = StratifiedKFold(k, shuffle=True, random_state=seed).split(idx, strata)
    else:
        splits = KFold(k, shuffle=True, random_state=seed).split(idx)
    folds = np.full(n, -1, dtype=np.int64)
    for f, (_, val) in enumerate(splits):
        folds[idx[val]] = f
    return folds


def fold_seed(seed: int, fold: int) -> int:
    """Seed of fold `fold`'s batch-order generator (shared with the reference loop)."""
    return int(np.random.SeedSequence([seed, fold]).generate_state(1)[0])


def fold_indices(y: np.ndarray, folds: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, val) rows per fold: labelled rows only; fold -1 rows are in every training set."""
    y, folds = np.asarray(y), np.asarray(folds)
    labelled = y >= 0
    ids = sorted(set(folds[labelled & (folds >= 0)].tolist()))
    if ids != list(range(len(ids))) or len(ids) < 2:
        raise ValueError(f"fold ids of labelled rows must be 0..K-1 with K >= 2, got {ids}")
    return [(np.flatnonzero(labelled & (folds != k)), np.flatnonzero(labelled & (folds == k))) for k in ids]


@dataclass
class CVInputs:
    """The arguments every cross-validation takes, checked and as numpy arrays."""
    modalities: tuple[str, ...]
    y: np.ndarray          # (N,) int64, -1 = unused
    v: np.ndarray          # (N,) float64, NaN = no valence
    w: np.ndarray          # (N,) loss weight
    folds: np.ndarray      # (N,) int64
    splits: list[tuple[np.ndarray, np.ndarray]]
    start: float           # perf_counter at the call


def cv_inputs(X: Mapping[str, np.ndarray], y, v, folds, sample_weight) -> CVInputs:
    start = time.perf_counter()
    folds = np.asarray(folds, dtype=np.int64)
    y, v, w = label_arrays(y, v, sample_weight)
    return CVInputs(tuple(X), y, v, w, folds, fold_indices(y, folds), start)


def label_arrays(y, v, sample_weight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y as int64; v as float64 (None -> all NaN); weights (None -> 1)."""
    y = np.asarray(y, dtype=np.int64)
    v = np.full(len(y), np.nan) if v is None else np.asarray(v, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    return y, v, w


@dataclass
class CVJob:
    """One cross-validation to run: training rows (features, presence, targets, folds, loss weights),
    the test sets its fold ensemble predicts, and the seed of its initial weights and batch order."""
    X: Mapping[str, np.ndarray]
    present: Mapping[str, np.ndarray] | None
    y: np.ndarray
    v: np.ndarray | None
    folds: np.ndarray
    tests: Mapping[str, TestSet] = field(default_factory=dict)
    sample_weight: np.ndarray | None = None
    seed: int = 0

    def inputs(self) -> CVInputs:
        return cv_inputs(self.X, self.y, self.v, self.folds, self.sample_weight)
