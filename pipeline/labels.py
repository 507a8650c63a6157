"""Label sets. MER 2023 fixes the order of its six classes; indices follow it everywhere.

A corpus may use another label set (`prepare.labels`, e.g. RAVDESS's eight classes). `prepare` stores
the set in the manifest's attributes; models, predictions (one `logit_<label>` column per class, in
order) and metrics follow it from there.
"""

import numpy as np

MER_LABELS: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "worried", "surprise")
VALENCE_RANGE: tuple[float, float] = (-5.0, 5.0)
# The baseline's placeholder for unlabelled items in label-6way.npz: never a training target.
PLACEHOLDER_VALENCE = -10.0
LOGIT_PREFIX = "logit_"


def clip_valence(values):
    """Valence predictions clipped to VALENCE_RANGE, the range every corpus's valence is validated to.

    Clipped rather than squashed (tanh): the model keeps the baseline's linear valence head and plain MSE
    loss, and since every true valence lies in the range, clipping can only lower a prediction's squared
    error, never raise it."""
    return np.clip(values, *VALENCE_RANGE)


def logit_columns(labels) -> list[str]:
    return [f"{LOGIT_PREFIX}{name}" for name in labels]


def predicted_labels(frame) -> tuple[str, ...]:
    """The label set of a predictions frame, in model order, read from its logit columns."""
    return tuple(c.removeprefix(LOGIT_PREFIX) for c in frame.columns if c.startswith(LOGIT_PREFIX))


def manifest_labels(manifest) -> tuple[str, ...]:
    """The label set `prepare` recorded in a manifest frame (MER 2023's six for older manifests)."""
    return tuple(manifest.attrs.get("labels") or MER_LABELS)


def label_index(labels, names: tuple[str, ...]) -> np.ndarray:
    """Label strings -> class indices in the order of `names`; -1 for unlabelled."""
    lookup = {name: i for i, name in enumerate(names)}
    return np.array([lookup.get(x, -1) if isinstance(x, str) else -1 for x in labels], dtype=np.int64)


# Open-vocabulary label lists (MER-FG): the manifest's `label_list` holds a clip's words joined by ";".
LIST_COLUMN, LIST_SEPARATOR = "label_list", ";"
CANDIDATE_SPLIT = "test1"   # the clips a challenge scores and a submission lists (MER 2024-2026: the candidates)


def split_list(value) -> list[str]:
    """A `label_list` cell as its words ([] for an empty or missing cell)."""
    if not isinstance(value, str):
        return []
    return [w for w in (w.strip() for w in value.split(LIST_SEPARATOR)) if w]
