"""LightGBM early-fusion baseline on the same inputs, folds and result shape as the fusion family.

Features are the concatenated modality vectors; an absent modality is NaN, which LightGBM routes
down its learned missing-value branch. Per fold: LGBMClassifier (emotion) and LGBMRegressor (valence,
on rows with valence). No epoch selection: the out-of-fold figures are those of the fitted models.
Test predictions average the folds' log-probabilities (the "logits" of this model) and valences.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from lightgbm import Booster, LGBMClassifier, LGBMRegressor

from pipeline.config import LightGBMParams
from pipeline.labels import clip_valence
from pipeline.training.cv import CVResult, TestPrediction, TestSet, fold_figures, mean_figures, predict_chunks
from pipeline.training.folds import CVJob
from pipeline.training.runtime import available_cores

LOG_FLOOR = 1e-12  # log-probability floor for a class absent from a fold's training rows


@dataclass(frozen=True)
class LightGBMRun:
    """A LightGBM cross-validation's settings: the train.lightgbm params section plus what a run decides."""
    params: LightGBMParams = field(default_factory=LightGBMParams)
    n_classes: int = field(kw_only=True)  # the run's label set's size
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


def _params(run: LightGBMRun, seed: int) -> dict:
    p = run.params
    return dict(n_estimators=p.n_estimators, learning_rate=p.learning_rate, num_leaves=p.num_leaves,
                min_child_samples=p.min_child_samples, colsample_bytree=p.colsample_bytree,
                subsample=p.subsample, subsample_freq=1 if p.subsample < 1 else 0, reg_lambda=p.reg_lambda,
                random_state=seed, deterministic=True, force_col_wise=True,
                n_jobs=run.n_jobs or available_cores(), verbose=-1)


class FoldModel:
    """One fold's classifier booster (over the classes its training rows had) and, when the fold has
    valence, regressor booster. Boosters (not the sklearn wrappers) so a checkpoint round-trips them."""

    def __init__(self, classes: np.ndarray, emotion: Booster, valence: Booster | None, n_classes: int):
        self.classes, self.emotion, self.reg, self.n_classes = np.asarray(classes), emotion, valence, n_classes

    @classmethod
    def fit(cls, run: LightGBMRun, seed: int, F, y, v, w, rows: np.ndarray) -> FoldModel:
        clf = LGBMClassifier(**_params(run, seed)).fit(F[rows], y[rows], sample_weight=w[rows])
        with_v = rows[np.isfinite(v[rows])]
        reg = LGBMRegressor(**_params(run, seed)).fit(F[with_v], v[with_v], sample_weight=w[with_v]) if len(with_v) else None
        return cls(clf.classes_, clf.booster_, reg.booster_ if reg is not None else None, run.n_classes)

    def log_probs(self, F: np.ndarray) -> np.ndarray:
        probs = self.emotion.predict(F)
        if probs.ndim == 1:  # binary objective: probability of the second class
            probs = np.stack([1 - probs, probs], axis=1)
        out = np.full((len(F), self.n_classes), np.log(LOG_FLOOR))
        out[:, self.classes] = np.log(np.maximum(probs, LOG_FLOOR))
        return out

    def valence(self, F: np.ndarray) -> np.ndarray:
        return clip_valence(self.reg.predict(F)) if self.reg is not None else np.full(len(F), np.nan)

    def to_dict(self) -> dict:
        return {"classes": self.classes.tolist(), "emotion": self.emotion.model_to_string(),
                "valence": self.reg.model_to_string() if self.reg is not None else None}

    @classmethod
    def from_dict(cls, d: dict, n_classes: int) -> FoldModel:
        reg = Booster(model_str=d["valence"]) if d["valence"] is not None else None
        return cls(np.array(d["classes"]), Booster(model_str=d["emotion"]), reg, n_classes)


def predict_folds(models: list[FoldModel], ts: TestSet, modalities: tuple[str, ...]) -> TestPrediction:
    """The fold ensemble's prediction: mean of the folds' log-probabilities and valences."""
    def predict(X, present):
        F = early_fusion_matrix(X, present, modalities)
        return np.stack([m.log_probs(F) for m in models]), np.stack([m.valence(F) for m in models])

    return predict_chunks(ts, predict)


def cross_validate(jobs: list[CVJob], run: LightGBMRun) -> list[CVResult]:
    """Each job's K-fold CV, one after another (a booster has nothing to stack)."""
    return [_cross_validate(job, run) for job in jobs]


def _cross_validate(job: CVJob, run: LightGBMRun) -> CVResult:
    a = job.inputs()
    y, v = a.y, a.v
    F = early_fusion_matrix(job.X, job.present, a.modalities)
    oof_logits, oof_val = np.full((len(y), run.n_classes), np.nan), np.full(len(y), np.nan)
    figures, models = [], []
    for train_rows, val_rows in a.splits:
        model = FoldModel.fit(run, job.seed, F, y, v, a.w, train_rows)
        models.append(model)
        oof_logits[val_rows], oof_val[val_rows] = model.log_probs(F[val_rows]), model.valence(F[val_rows])
        figures.append(fold_figures(y[val_rows], v[val_rows], oof_logits[val_rows], oof_val[val_rows]))
    preds = {name: predict_folds(models, ts, a.modalities) for name, ts in job.tests.items()}
    return CVResult("lightgbm", a.modalities, a.folds, oof_logits, oof_val, figures, mean_figures(figures), preds,
                    np.full(len(figures), -1), {}, time.perf_counter() - a.start, models)
