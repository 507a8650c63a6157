"""MER-SEMI: confidence-based pseudo-labelling, Algorithm 1 of the MER 2023 paper used as a selector.

For each labelled item whose out-of-fold prediction is right, its confidence (max softmax) joins its
class's list G_j; lambda_j is the eta-quantile of G_j; an unlabelled item predicted as j with confidence
above lambda_j is selected, with its predicted label and valence as pseudo-targets.

The paper's text says "highest eta portion" while its algorithm takes the eta-quantile, which keeps
the top (1 - eta) of each class's correct confidences. This follows the algorithm: a larger eta
selects fewer, more confident items (eta 0 keeps everything above the least confident correct item).

Beyond the algorithm, each class keeps at most its most confident `max_per_labelled` x (its labelled
count) items (and `max_per_class`), so the pseudo-labels keep the labelled set's class balance. Without
it, a class the start model never gets right has no threshold and no pseudo-labels while the others
gain hundreds, and retraining then forgets that class: on the few-label demo corpus the uncapped
selection lost up to 0.06 F1 on some seeds, the capped one never lost.

A round (`run_round`) selects from the start model's predictions of one subset and seed and retrains
that subset on labelled + selected items; `round_report` is what a round's metrics say of it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import evaluation as ev
from pipeline.config import ConfigError, PseudolabelConfig, TrainConfig
from pipeline.labels import clip_valence, logit_columns, predicted_labels
from pipeline.training.cv import softmax_np
from pipeline.training.data import Table, label_index
from pipeline.training.run import predictions_frame, run_subset

SELECTED_COLUMNS = ["sample_id", "label", "confidence", "valence"]
EMPTY_NOTE = "empty selection: no unlabelled item passed its class threshold; the start model's predictions are kept"


def class_thresholds(oof_logits: np.ndarray, y: np.ndarray, eta: float, n_classes: int) -> np.ndarray:
    """lambda_j per class; +inf for a class with no correctly predicted labelled item (selects nothing)."""
    probs = softmax_np(oof_logits)
    pred, conf = probs.argmax(1), probs.max(1)
    right = (pred == y) & np.isfinite(conf)
    return np.array([np.quantile(conf[right & (y == j)], eta) if np.any(right & (y == j)) else np.inf
                     for j in range(n_classes)])


def class_caps(labelled_counts: np.ndarray, max_per_class: int = 0, max_per_labelled: float = 0.0) -> np.ndarray:
    """Most pseudo-labels each class may keep (inf: no cap): the tighter of max_per_class and
    ceil(max_per_labelled x the class's labelled count); a value of 0 turns that cap off."""
    caps = np.full(len(labelled_counts), np.inf)
    if max_per_class > 0:
        caps = np.minimum(caps, max_per_class)
    if max_per_labelled > 0:
        caps = np.minimum(caps, np.ceil(max_per_labelled * np.asarray(labelled_counts, dtype=float)))
    return caps


def select(logits: np.ndarray, thresholds: np.ndarray,
           caps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(selected mask, predicted class, confidence) for unlabelled items; where a class has more than
    its cap, its most confident items are kept. Vectorised over the logits only, so memory is
    O(items x classes)."""
    probs = softmax_np(logits)
    pred, conf = probs.argmax(1), probs.max(1)
    chosen = conf > thresholds[pred]
    for j in np.unique(pred[chosen]) if caps is not None else ():
        members = np.flatnonzero(chosen & (pred == j))
        if len(members) > caps[j]:
            chosen[members[np.argsort(-conf[members], kind="stable")[int(caps[j]):]]] = False
    return chosen, pred, conf


def select_items(oof: pd.DataFrame, unlabelled: pd.DataFrame, eta: float, max_per_class: int = 0,
                 max_per_labelled: float = 0.0) -> tuple[pd.DataFrame, np.ndarray]:
    """Algorithm 1 on prediction frames: `oof` holds the labelled items' out-of-fold logits and their
    `label`, `unlabelled` the model's logits and valence for the pool. Returns the selected items
    (sample_id, pseudo-label, confidence, pseudo-valence, in the pool's order) and lambda per class."""
    labels = predicted_labels(oof)  # the label set, from the logit columns
    columns = logit_columns(labels)
    y = label_index(oof["label"], labels)
    thresholds = class_thresholds(oof[columns].to_numpy(), y, eta, len(labels))
    caps = class_caps(np.bincount(y[y >= 0], minlength=len(labels)), max_per_class, max_per_labelled)
    chosen, pred, conf = select(unlabelled[columns].to_numpy(), thresholds, caps)
    picked = pd.DataFrame({"sample_id": unlabelled["sample_id"].to_numpy()[chosen],
                           "label": np.array(labels, dtype=object)[pred[chosen]],
                           "confidence": conf[chosen], "valence": unlabelled["valence"].to_numpy()[chosen]})
    return picked, thresholds


def pseudo_table(pool: Table, picked: pd.DataFrame) -> Table:
    """The pool's rows of the selected items, with the pseudo-label and predicted valence (clipped to the
    label range, whatever model wrote the start predictions) as targets."""
    table = pool.take(pool.rows["sample_id"].isin(picked["sample_id"]).to_numpy())
    targets = picked.set_index("sample_id").loc[table.rows["sample_id"]]
    table.rows = table.rows.assign(label=targets["label"].to_numpy(), valence=clip_valence(targets["valence"].to_numpy()))
    return table


def with_truth(picked: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """Selected items with their hidden true label where the corpus knows it (generated corpora)."""
    return picked.merge(manifest[["sample_id", "true_label"]], on="sample_id", how="left")


def class_balance(picked: pd.DataFrame, thresholds: np.ndarray, oof: pd.DataFrame) -> pd.DataFrame:
    """Per class: lambda_j, the size of G_j (correct out-of-fold items), items selected, and the
    pseudo-label precision where true labels are known (`picked` from `with_truth`)."""
    labels = predicted_labels(oof)
    y = label_index(oof["label"], labels)
    right = oof[logit_columns(labels)].to_numpy().argmax(1) == y
    records = []
    for j, name in enumerate(labels):
        mine = picked[picked["label"] == name]
        known = mine["true_label"].notna()
        records.append({"label": name, "threshold": None if np.isinf(thresholds[j]) else float(thresholds[j]),
                        "correct_labelled": int((right & (y == j)).sum()), "selected": len(mine),
                        "precision": float((mine.loc[known, "true_label"] == name).mean()) if known.any() else None})
    return pd.DataFrame(records)


def precision(picked: pd.DataFrame) -> float | None:
    """Share of selected items whose pseudo-label equals the known true label (None: no truth known)."""
    known = picked["true_label"].notna()
    return float((picked.loc[known, "label"] == picked.loc[known, "true_label"]).mean()) if known.any() else None


# ---------------------------------------------------------------- one round


def model_predictions(predictions: pd.DataFrame, subset: str, seed: int) -> pd.DataFrame:
    """One model's rows of a predictions file (train's holds every subset and seed)."""
    return predictions[(predictions["subset"] == subset) & (predictions["seed"] == seed)].reset_index(drop=True)


def labelled_oof(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    return predictions[predictions["test"] == "train-oof"].merge(manifest[["sample_id", "label"]], on="sample_id")


def unlabelled_pool(predictions: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """The model's predictions of the unlabelled test3 items (the MER-SEMI pool); an item predicted from
    the training prior (`fallback`: no modality of the model) has nothing to teach and is left out."""
    pool = manifest.loc[(manifest["split"] == "test3") & manifest["label"].isna(), "sample_id"]
    return predictions[(predictions["test"] == "test3") & predictions["sample_id"].isin(pool) & ~predictions["fallback"]]


def run_round(tables: dict[str, Table], manifest: pd.DataFrame, start: pd.DataFrame, cfg: PseudolabelConfig,
              train_cfg: TrainConfig) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Select from the start model's predictions (one subset and seed), retrain on labelled + selected.
    Returns the new predictions, the selected items and lambda per class; an empty selection retrains
    nothing and keeps the start model's predictions."""
    picked, thresholds = select_items(labelled_oof(start, manifest), unlabelled_pool(start, manifest),
                                      cfg.eta, cfg.max_per_class, cfg.max_per_labelled)
    if picked.empty:
        return start, picked, thresholds
    subset, seed = start["subset"].iloc[0], int(start["seed"].iloc[0])
    extra = pseudo_table(tables["test3"], picked)
    result, train_ids = run_subset(tables, subset, train_cfg, seed, extra, cfg.weight)
    return predictions_frame(result, train_ids, tables, subset, seed), picked, thresholds


def round_report(round_name: str, start_path: str, cfg: PseudolabelConfig, thresholds: np.ndarray,
                 picked: pd.DataFrame, start: pd.DataFrame, predictions: pd.DataFrame, manifest: pd.DataFrame) -> dict:
    """The round's metrics: selection size and balance, pseudo-label precision (where truth is known),
    and MER-SEMI (test3) / MER-MULTI (test1) F1 of the retrained model beside the start model's."""
    subset, labels = start["subset"].iloc[0], predicted_labels(start)
    before, after = ev.joined(start, manifest), ev.joined(predictions, manifest)
    f1 = lambda rows, test: ev.score(rows, subset, test, with_valence=False).get("f1_weighted")  # noqa: E731
    return {
        "round": round_name, "start": start_path, "eta": cfg.eta, "max_per_class": cfg.max_per_class,
        "max_per_labelled": cfg.max_per_labelled, "weight": cfg.weight,
        "unlabelled": int(len(unlabelled_pool(start, manifest))), "selected": len(picked),
        "empty": picked.empty, "note": EMPTY_NOTE if picked.empty else "",
        "thresholds": {c: (None if np.isinf(t) else round(float(t), 4)) for c, t in zip(labels, thresholds)},
        "per_class": {c: int((picked["label"] == c).sum()) for c in labels},
        "precision": precision(picked),
        "mer_semi_f1": f1(after, "test3"), "mer_semi_f1_start": f1(before, "test3"),
        "mer_multi_f1": f1(after, "test1"), "mer_multi_f1_start": f1(before, "test1"),
    }


def round_start(cfg: PseudolabelConfig, round_name: str) -> Path:
    """The predictions `round_name` starts from; a later round must start from the one before it."""
    names = list(cfg.rounds)
    if round_name not in cfg.rounds:
        raise ConfigError(f"pseudolabel.rounds has no round {round_name!r}; rounds: {names}")
    start = Path(cfg.rounds[round_name])
    i = names.index(round_name)
    if i > 0 and start.stem != names[i - 1]:
        raise ConfigError(f"pseudolabel.rounds.{round_name} starts from {start}, not from the previous "
                          f"round's predictions ({names[i - 1]}.parquet)")
    return start
