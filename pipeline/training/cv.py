"""What a cross-validation returns, whatever the model family: out-of-fold outputs, per-fold figures at
the chosen model, and the fold ensemble's predictions on each test set (the mean of the folds' logits
and valences, as the MER 2023 baseline's average_folder_results)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from pipeline.training.metrics import combined, score_split, selection_metric, valence_mse, weighted_f1

PREDICT_CHUNK = 4096  # test rows per prediction: bounds the copies and activations on large test sets


@dataclass
class TestSet:
    __test__ = False  # not a pytest class
    X: dict[str, np.ndarray]
    present: dict[str, np.ndarray] | None = None   # modality -> (n,) bool; missing key = all present
    y: np.ndarray | None = None                    # -1 = unlabelled row (not scored)
    v: np.ndarray | None = None                    # NaN = no valence truth
    rows: np.ndarray | None = None                 # the rows of X and present in the set (None = all); y and v
                                                   # are the set's own: the ablation subsets' sets share one
                                                   # table's arrays instead of each copying the rows it covers

    def __len__(self) -> int:
        return len(next(iter(self.X.values()))) if self.rows is None else len(self.rows)

    def chunks(self) -> Iterator[tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]]:
        """The set's features and presence, PREDICT_CHUNK rows at a time (one empty chunk for an empty set): a
        prediction holds one chunk's copy, whatever the size of the set."""
        size = PREDICT_CHUNK
        for lo in range(0, max(len(self), 1), size):
            sel = slice(lo, lo + size) if self.rows is None else self.rows[lo:lo + size]
            yield ({m: x[sel] for m, x in self.X.items()},
                   None if self.present is None else {m: p[sel] for m, p in self.present.items()})


@dataclass
class TestPrediction:
    logits: np.ndarray         # (n, C): mean over folds of the emotion logits
    valence: np.ndarray        # (n,): mean over folds
    fold_logits: np.ndarray    # (K, n, C)
    fold_valence: np.ndarray   # (K, n)
    scores: dict[str, float] | None = None

    @property
    def pred(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    @property
    def probs(self) -> np.ndarray:
        return softmax_np(self.logits)


@dataclass
class CVResult:
    model: str                       # the model family's name
    modalities: tuple[str, ...]
    folds: np.ndarray
    oof_logits: np.ndarray           # (N, C); NaN for rows never validated
    oof_valence: np.ndarray          # (N,)
    fold_scores: list[dict]          # per fold, at its best epoch
    cv: dict[str, float]             # mean over folds of fold_scores
    tests: dict[str, TestPrediction]
    best_epoch: np.ndarray           # (K,); -1 where not applicable
    curves: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (K, epochs)
    seconds: float = 0.0
    ensemble: object = None          # the fold models at their best epochs (for checkpoints)

    @property
    def oof_probs(self) -> np.ndarray:
        return softmax_np(self.oof_logits)


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - np.max(logits, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def fold_figures(y, v, logits: np.ndarray, vhat: np.ndarray) -> dict[str, float]:
    """Validation figures of one fold; "selection" is what picks the best epoch (combined, or F1
    when the fold has no valence truth, where valence_mse and combined are NaN)."""
    f1 = weighted_f1(y, logits.argmax(1))
    has_v = np.isfinite(v)
    mse = valence_mse(v[has_v], vhat[has_v]) if has_v.any() else float("nan")
    return {"n": len(y), "f1_weighted": f1, "valence_mse": mse, "combined": combined(f1, mse),
            "selection": selection_metric(f1, mse)}


def mean_figures(figures: list[dict]) -> dict[str, float]:
    keys = ("f1_weighted", "valence_mse", "combined", "selection")
    return {k: float(np.mean([f[k] for f in figures])) for k in keys if figures and k in figures[0]}


def predict_chunks(ts: TestSet, predict: Callable[[dict, dict | None], tuple[np.ndarray, np.ndarray]]) -> TestPrediction:
    """make_test_prediction over `predict`'s (K, n, C) fold logits and (K, n) fold valences, one chunk at a time."""
    parts = [predict(X, present) for X, present in ts.chunks()]
    return make_test_prediction(np.concatenate([lo for lo, _ in parts], axis=1),
                                np.concatenate([va for _, va in parts], axis=1), ts)


def make_test_prediction(fold_logits: np.ndarray, fold_val: np.ndarray, ts: TestSet) -> TestPrediction:
    """Mean over folds of logits and valence (the baseline's average_folder_results), scored if y given."""
    pred = TestPrediction(fold_logits.mean(0), fold_val.mean(0), fold_logits, fold_val)
    if ts.y is not None:
        pred.scores = score_split(ts.y, pred.pred, ts.v, pred.valence if ts.v is not None else None)
    return pred
