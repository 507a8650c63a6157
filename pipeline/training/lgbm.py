"""LightGBM early-fusion baseline on the same inputs, folds and result shape as `cv.cross_validate`.

Features are the concatenated modality vectors; an absent modality is NaN, which LightGBM routes
down its learned missing-value branch. Per fold: LGBMClassifier (emotion) and LGBMRegressor (valence,
on rows with valence). No epoch selection: the out-of-fold figures are those of the fitted models.
Test predictions average the folds' log-probabilities (the "logits" of this model) and valences.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor

from pipeline.labels import MER_LABELS
from pipeline.training.cv import (CVResult, TestSet, fold_figures, available_cores, fold_indices,
                                  make_test_prediction, mean_figures)

LOG_FLOOR = 1e-12  # log-probability floor for a class absent from a fold's training rows


@dataclass(frozen=True)
class LGBMConfig:
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    colsample_bytree: float = 0.5
    subsample: float = 1.0
    reg_lambda: float = 0.0
    n_classes: int = len(MER_LABELS)
    seed: int = 0
    n_jobs: int = 0                  # 0 = every core this process may use


def early_fusion_matrix(X: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray] | None,
                        modalities: tuple[str, ...]) -> np.ndarray:
    """(n, sum d_m) float32: modality blocks side by side, NaN where a modality is absent."""
    blocks = []
    for m in modalities:
        x = np.asarray(X[m], dtype=np.float32)
        if present is not None and m in present:
            x = np.where(np.asarray(present[m], dtype=bool)[:, None], x, np.nan)
        blocks.append(x)
    return np.concatenate(blocks, axis=1)


def _params(cfg: LGBMConfig) -> dict:
    return dict(n_estimators=cfg.n_estimators, learning_rate=cfg.learning_rate, num_leaves=cfg.num_leaves,
                min_child_samples=cfg.min_child_samples, colsample_bytree=cfg.colsample_bytree,
                subsample=cfg.subsample, subsample_freq=1 if cfg.subsample < 1 else 0, reg_lambda=cfg.reg_lambda,
                random_state=cfg.seed, deterministic=True, force_col_wise=True,
                n_jobs=cfg.n_jobs or available_cores(), verbose=-1)


class _FoldModel:
    """One fold's classifier and (when the fold has valence) regressor."""

    def __init__(self, cfg: LGBMConfig, F, y, v, w, rows: np.ndarray):
        self.n_classes = cfg.n_classes
        self.clf = LGBMClassifier(**_params(cfg)).fit(F[rows], y[rows], sample_weight=w[rows])
        with_v = rows[np.isfinite(v[rows])]
        self.reg = None
        if len(with_v):
            self.reg = LGBMRegressor(**_params(cfg)).fit(F[with_v], v[with_v], sample_weight=w[with_v])

    def log_probs(self, F: np.ndarray) -> np.ndarray:
        out = np.full((len(F), self.n_classes), np.log(LOG_FLOOR))
        out[:, self.clf.classes_] = np.log(np.maximum(self.clf.predict_proba(F), LOG_FLOOR))
        return out

    def valence(self, F: np.ndarray) -> np.ndarray:
        return self.reg.predict(F) if self.reg is not None else np.full(len(F), np.nan)


def cross_validate_lgbm(X: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray] | None, y, v, folds,
                        cfg: LGBMConfig = LGBMConfig(), tests: Mapping[str, TestSet] | None = None,
                        sample_weight=None) -> CVResult:
    start = time.perf_counter()
    modalities = tuple(X)
    y, folds = np.asarray(y, dtype=np.int64), np.asarray(folds, dtype=np.int64)
    v = np.full(len(y), np.nan) if v is None else np.asarray(v, dtype=np.float64)
    w = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    F = early_fusion_matrix(X, present, modalities)
    test_F = {name: early_fusion_matrix(ts.X, ts.present, modalities) for name, ts in (tests or {}).items()}
    oof_logits, oof_val = np.full((len(y), cfg.n_classes), np.nan), np.full(len(y), np.nan)
    figures, test_out = [], {name: ([], []) for name in test_F}
    for train_rows, val_rows in fold_indices(y, folds):
        model = _FoldModel(cfg, F, y, v, w, train_rows)
        oof_logits[val_rows], oof_val[val_rows] = model.log_probs(F[val_rows]), model.valence(F[val_rows])
        figures.append(fold_figures(y[val_rows], v[val_rows], oof_logits[val_rows], oof_val[val_rows]))
        for name, tf in test_F.items():
            test_out[name][0].append(model.log_probs(tf))
            test_out[name][1].append(model.valence(tf))
    preds = {name: make_test_prediction(np.stack(lo), np.stack(va), tests[name]) for name, (lo, va) in test_out.items()}
    return CVResult("lightgbm", modalities, folds, oof_logits, oof_val, figures, mean_figures(figures), preds,
                    np.full(len(figures), -1), {}, time.perf_counter() - start)
