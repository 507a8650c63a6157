"""Assemble model inputs: manifest rows of a media view joined with their features per modality."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import InputError
from pipeline.labels import label_index  # noqa: F401 - label_index is imported from here too
from pipeline.modalities import CONTENT_KEYS, MODALITIES
from pipeline.store.features import FeatureStore
from pipeline.store.media import MediaStore


@dataclass(frozen=True)
class NormStats:
    """Per-dimension mean and (floored) std of a modality's training features."""
    mean: np.ndarray
    std: np.ndarray

    def apply(self, x: np.ndarray, limit: float = 6.0, out: np.ndarray | None = None) -> np.ndarray:
        """Clipped at +-limit: a corrupted view can move a feature far outside anything seen in training,
        and an unbounded input drives the linear valence head to absurd values. NaN stays NaN. Into `out`
        (x itself, to overwrite it) or one new array, and no temporaries: at release scale a modality's
        matrix is half a gigabyte."""
        out = np.subtract(x, self.mean, dtype=np.float32, out=out)
        out /= self.std
        return np.clip(out, -limit, limit, out=out)


@dataclass
class Table:
    """Items of one view with their targets and features (rows aligned across every field)."""
    rows: pd.DataFrame                  # manifest rows (sample_id, split, label, valence, ...)
    X: dict[str, np.ndarray]            # modality -> (n, d) float32, NaN rows where absent
    present: dict[str, np.ndarray]      # modality -> (n,) bool
    norm: dict[str, NormStats] | None = None   # the z-scoring applied to X, if any
    labels: tuple[str, ...] = field(kw_only=True)  # the run's label set, in class-index order

    @property
    def y(self) -> np.ndarray:
        return label_index(self.rows["label"], self.labels)

    @property
    def v(self) -> np.ndarray:
        return self.rows["valence"].to_numpy(np.float64)

    def take(self, mask: np.ndarray, modalities: tuple[str, ...] | None = None) -> Table:
        keep = modalities or tuple(self.X)
        return Table(self.rows[mask].reset_index(drop=True),
                     {m: self.X[m][mask] for m in keep}, {m: self.present[m][mask] for m in keep},
                     norm=self.norm, labels=self.labels)

    def any_present(self, modalities: tuple[str, ...]) -> np.ndarray:
        return np.logical_or.reduce([self.present[m] for m in modalities])


def load_table(manifest: pd.DataFrame, view: Path, features: dict[str, Path], labels: tuple[str, ...],
               require: bool = False) -> Table:
    """Every manifest item in `view`'s order; an item the view lacks (failed extraction) has no modality.
    `require`: a modality whose input some item has must have features for at least one item (else the
    feature store is empty or broken, and training would silently go on without that modality)."""
    media = MediaStore(view).view()[["sample_id", *CONTENT_KEYS]]
    rows = manifest.merge(media, on="sample_id", how="left").reset_index(drop=True)
    X, present = {}, {}
    for modality, path in features.items():
        store = FeatureStore(path)
        if store.identity().modality != modality:
            raise InputError(f"feature store {path} holds {store.identity().modality} features, not {modality}")
        X[modality], present[modality] = store.load(rows)
        with_input = int(rows[MODALITIES[modality].key].notna().sum())
        if require and with_input and not present[modality].any():
            raise InputError(f"train.features.{modality}: {path} has features for none of the {with_input} items "
                             f"with {modality} input (an empty, failed or foreign store): re-run `mer encode` or "
                             f"`mer import-features` for it, or remove {modality} from train.features")
    return Table(rows.drop(columns=CONTENT_KEYS), X, present, labels=tuple(labels))


def standardize(tables: dict[str, Table], reference: str = "train") -> dict[str, Table]:
    """z-score every modality with the statistics of the reference table's present rows, in place: the
    tables' float32 arrays are overwritten (they are the loaded copies; a release's are gigabytes, and a
    second copy would double the train stage's peak memory).

    MER 2023 used raw features; functionals such as eGeMAPS span several orders of magnitude,
    which an unnormalised MLP does not survive, hence `train.feature_norm`. NaN rows (absent) stay NaN."""
    stats = norm_stats(tables[reference])
    for table in tables.values():
        table.X = {m: stats[m].apply(x, out=x if x.dtype == np.float32 and x.flags.writeable else None)
                   for m, x in table.X.items()}
        table.norm = stats
    return tables


def norm_stats(table: Table) -> dict[str, NormStats]:
    stats = {}
    for m, X in table.X.items():
        rows = X[table.present[m]]
        mean = rows.mean(0) if len(rows) else np.zeros(X.shape[1], np.float32)
        std = rows.std(0) if len(rows) else np.ones(X.shape[1], np.float32)
        # near-constant training dims (e.g. a probability the clean data never moves) must not turn a
        # small shift in a corrupted view into hundreds of standard deviations
        floor = max(float(np.median(std)) * 0.1, 1e-8)
        stats[m] = NormStats(mean.astype(np.float32), np.maximum(std, floor).astype(np.float32))
    return stats


def normalized(table: Table, stats: dict[str, NormStats]) -> Table:
    return Table(table.rows, {m: stats[m].apply(x) for m, x in table.X.items()}, table.present,
                 norm=stats, labels=table.labels)
