"""MER-SEMI: confidence-based pseudo-labelling, Algorithm 1 of the MER 2023 paper used as a selector.

For each labelled item whose out-of-fold prediction is right, its confidence (max softmax) joins its
class's list; lambda_j is the eta-quantile of class j's list; an unlabelled item predicted as j with
confidence above lambda_j is selected with its predicted label and valence. The paper's text says
"highest eta portion" while its algorithm takes the eta-quantile (which keeps the top 1 - eta): this
follows the algorithm, so a larger eta selects fewer, more confident items.
"""

from __future__ import annotations

import numpy as np

from pipeline.training.cv import softmax_np


def class_thresholds(oof_logits: np.ndarray, y: np.ndarray, eta: float, n_classes: int) -> np.ndarray:
    """lambda_j per class; +inf for a class with no correctly predicted labelled item (selects nothing)."""
    probs = softmax_np(oof_logits)
    pred, conf = probs.argmax(1), probs.max(1)
    right = (pred == y) & np.isfinite(conf)
    return np.array([np.quantile(conf[right & (y == j)], eta) if np.any(right & (y == j)) else np.inf
                     for j in range(n_classes)])


def select(logits: np.ndarray, thresholds: np.ndarray, max_per_class: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(selected mask, predicted class, confidence) for unlabelled items; with a cap, the most confident
    items of each class are kept."""
    probs = softmax_np(logits)
    pred, conf = probs.argmax(1), probs.max(1)
    chosen = conf > thresholds[pred]
    if max_per_class > 0:
        for j in np.unique(pred[chosen]):
            members = np.flatnonzero(chosen & (pred == j))
            if len(members) > max_per_class:
                chosen[members[np.argsort(-conf[members], kind="stable")[max_per_class:]]] = False
    return chosen, pred, conf
