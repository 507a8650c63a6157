"""The feature store: one content-addressed Zarr store per feature (an encoder with its config).

An entry's cache key is hash(encoder identity, content key of the input), where the identity is the
encoder's name, version, canonical config (defaults and runtime knobs removed) and the library versions
that shape its output. So batch size, device or worker count never invalidate anything; a new layer,
pooling or checkpoint re-encodes that feature only; identical inputs in several views (a transcript
that corruption leaves alone, a clip drawn with no blur) are encoded once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.store.media import digest
from pipeline.store.parts import PartStore

MODALITY_KEY = {"audio": "audio_key", "visual": "faces_key", "text": "text_key"}
INDEX_COLUMNS = ["cache_key", "row", "status", "reason"]


@dataclass(frozen=True)
class Identity:
    encoder: str
    version: str
    modality: str
    config: dict
    libraries: dict

    @property
    def key(self) -> str:
        return digest(json.dumps([self.encoder, self.version, self.config, self.libraries], sort_keys=True))

    def cache_keys(self, content_keys: pd.Series) -> pd.Series:
        """Cache key per item; None where the item has no input for this modality."""
        ident = self.key
        return content_keys.map(lambda c: digest(ident, c) if isinstance(c, str) else None)


class FeatureStore:
    META = "feature.json"

    def __init__(self, root: str | Path):
        self.parts = PartStore(root)

    @property
    def root(self) -> Path:
        return self.parts.root

    def create(self, identity: Identity, dim: int) -> FeatureStore:
        self.parts.create()
        meta = {"identity": identity.__dict__, "identity_key": identity.key, "dim": dim}
        (self.root / self.META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return self

    def meta(self) -> dict:
        path = self.root / self.META
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} is not a feature store (no {self.META}): run the encode stage")
        return json.loads(path.read_text())

    def identity(self) -> Identity:
        return Identity(**self.meta()["identity"])

    def index(self) -> pd.DataFrame:
        frame = self.parts.index()
        return frame if not frame.empty else pd.DataFrame(columns=[*INDEX_COLUMNS, "part"])

    def write(self, keys: list[str], vectors: list[np.ndarray | None], reasons: list[str], dim: int) -> str:
        """One part: the vectors that exist, plus an index row for every key (status ok or missing)."""
        ok = [v for v in vectors if v is not None]
        utt = np.stack(ok).astype(np.float32) if ok else np.zeros((0, dim), np.float32)
        rows, pos = [], 0
        for key, vec, reason in zip(keys, vectors, reasons):
            rows.append({"cache_key": key, "row": pos if vec is not None else -1,
                         "status": "ok" if vec is not None else "missing", "reason": reason})
            pos += vec is not None
        part = PartStore.part_id(keys)
        self.parts.write_part(part, {"utt": utt}, pd.DataFrame(rows, columns=INDEX_COLUMNS), {"utt": 1024})
        return part

    def matrix(self) -> tuple[np.ndarray, dict[str, int], dict[str, str]]:
        """All stored vectors as one matrix, a row per ok cache key, and the reason per missing key.

        Column-wise (no per-row Python loop): loading a training set's features is on every train run."""
        index = self.index()
        parts = sorted(index["part"].unique())
        blocks = [self.parts.array(part, "utt")[...] for part in parts]
        offsets = dict(zip(parts, np.cumsum([0] + [len(b) for b in blocks[:-1]]).tolist()))
        ok = (index["status"] == "ok").to_numpy()
        rows = index.loc[ok, "part"].map(offsets).to_numpy(np.int64) + index.loc[ok, "row"].to_numpy(np.int64)
        lookup = dict(zip(index.loc[ok, "cache_key"].tolist(), rows.tolist()))  # a later part wins, as it was written later
        first_missing = index[~ok].drop_duplicates("cache_key")
        missing = dict(zip(first_missing["cache_key"].tolist(), first_missing["reason"].tolist()))
        dim = int(self.meta()["dim"])
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
        return matrix, lookup, missing

    def load(self, view: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Features for the items of a media view, in its row order: (X, present). Absent rows are NaN."""
        ident = self.identity()
        keys = ident.cache_keys(view[MODALITY_KEY[ident.modality]])
        matrix, lookup, _ = self.matrix()
        rows = np.array([lookup.get(k, -1) if k else -1 for k in keys], dtype=np.int64)
        present = rows >= 0
        X = np.full((len(view), matrix.shape[1]), np.nan, np.float32)
        X[present] = matrix[rows[present]]
        return X, present
