"""Label sets. MER 2023 fixes the order of its six classes; indices follow it everywhere."""

MER_LABELS: tuple[str, ...] = ("neutral", "angry", "happy", "sad", "worried", "surprise")
VALENCE_RANGE: tuple[float, float] = (-5.0, 5.0)
# The baseline's placeholder for unlabelled items in label-6way.npz: never a training target.
PLACEHOLDER_VALENCE = -10.0
