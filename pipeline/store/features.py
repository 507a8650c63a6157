"""The feature store: one content-addressed Zarr store per feature (an encoder with its config).

An entry's cache key is hash(encoder identity, content key of the input), where the identity is the
encoder's name, version, canonical config (defaults and runtime knobs removed) and the library versions
that shape its output: its fingerprint (pipeline.fingerprint). So batch size, device or worker count
never invalidate anything; a new layer, pooling or checkpoint re-encodes that feature only; identical
inputs in several views (a transcript that corruption leaves alone, a clip drawn with no blur) are
encoded once.

Each entry has an utterance vector and, optionally, a frame-level [T, D] sequence. Imported features
(pre-extracted by others, see pipeline.store.exchange) have no input content to key on: their
identity is keyed by sample id instead (`keyed_by`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import InputError, MissingInput
from pipeline.fingerprint import fingerprint
from pipeline.inputs import read_record
from pipeline.modalities import MODALITIES
from pipeline.store.media import digest
from pipeline.store.parts import PartStore

INDEX_COLUMNS = ["cache_key", "row", "status", "reason", "frame_start", "n_frames", "name"]
CHUNK_ROWS = {"utt": 1024, "frames": 4096}


@dataclass(frozen=True)
class Identity:
    encoder: str
    version: str
    modality: str
    config: dict
    libraries: dict
    keyed_by: str = ""     # "" = the modality's content key; "sample_id" for imported features

    @property
    def key(self) -> str:
        return fingerprint((self.encoder, self.version), self.config, self.libraries)

    @property
    def column(self) -> str:
        """The media view column an entry's cache key is derived from."""
        return self.keyed_by or MODALITIES[self.modality].key

    def changes(self, new: Identity) -> list[str]:
        """What differs from this identity to `new`, one phrase per option, version or library."""
        found = [f"{what} {getattr(self, what)!r} -> {getattr(new, what)!r}"
                 for what in ("encoder", "version") if getattr(self, what) != getattr(new, what)]
        for what, old_map, new_map, absent in (("option", self.config, new.config, "default"),
                                               ("library", self.libraries, new.libraries, "none")):
            for key in sorted(set(old_map) | set(new_map)):
                old, now = old_map.get(key, absent), new_map.get(key, absent)
                if old != now:
                    found.append(f"{what} {key} {old!r} -> {now!r}")
        return found

    def cache_keys(self, content_keys: pd.Series) -> pd.Series:
        """Cache key per item; None where the item has no input for this modality."""
        ident = self.key
        return content_keys.map(lambda c: digest(ident, c) if isinstance(c, str) else None)


@dataclass(frozen=True)
class Entry:
    cache_key: str
    name: str                       # sample id for imported entries, else ""
    utt: np.ndarray | None          # None: missing, with its reason
    frames: np.ndarray | None
    reason: str


class FeatureStore:
    META = "feature.json"

    def __init__(self, root: str | Path):
        self.parts = PartStore(root)

    @property
    def root(self) -> Path:
        return self.parts.root

    def create(self, identity: Identity, dim: int) -> FeatureStore:
        """Make this store `identity`'s, whose vectors have `dim` values. Entries of an earlier identity
        stay (content-addressed, they cost nothing and come back if its config does), but only when
        they are vectors of the same size and were encoded, not imported."""
        if self.parts.committed():
            self._check_successor(identity, dim)
        self.parts.create()
        meta = {"identity": identity.__dict__, "identity_key": identity.key, "dim": dim}
        (self.root / self.META).write_text(json.dumps(meta, indent=2, sort_keys=True))
        return self

    def _check_successor(self, identity: Identity, dim: int) -> None:
        held, held_dim = self.identity(), int(self.meta()["dim"])
        fix = f"delete it (rm -r {self.root}) to encode every item again"
        if held.keyed_by and held != identity:
            raise InputError(f"{self.root} holds features imported from {held.config.get('source', '?')!r} "
                             f"(mer import-features), not encoder {identity.encoder!r}'s: import them into another "
                             f"store (import-features --out), or {fix}")
        if dim != held_dim:
            changed = "; ".join(held.changes(identity)) or "the same identity"
            raise InputError(f"{self.root} holds {held_dim}-d vectors of encoder {held.encoder!r}, but this "
                             f"configuration gives {dim}-d vectors ({changed}), and one store holds one size: "
                             f"{fix}, or give this configuration a feature name of its own in encode.features")

    def meta(self) -> dict:
        path = self.root / self.META
        if not path.is_file():
            raise MissingInput(f"{self.root} is not a feature store (no {self.META}): run the encode stage")
        return read_record(path, f"`mer encode` or `mer import-features` (after deleting {self.root})",
                           ("identity", "identity_key", "dim"))

    def holds(self, identity: Identity) -> bool:
        """Whether this store exists and was last written by `identity`."""
        return (self.root / self.META).is_file() and self.meta()["identity_key"] == identity.key

    def identity(self) -> Identity:
        return Identity(**self.meta()["identity"])

    def index(self) -> pd.DataFrame:
        frame = self.parts.index().reindex(columns=[*INDEX_COLUMNS, "part"])
        # stores written before frame sequences and names existed lack these columns
        frame = frame.fillna({"frame_start": 0, "n_frames": -1, "name": ""})
        return frame.astype({"frame_start": "int64", "n_frames": "int64"})

    def write(self, keys: list[str], vectors: list[np.ndarray | None], reasons: list[str], dim: int,
              frames: list[np.ndarray | None] | None = None, names: list[str] | None = None) -> str:
        """One part: the vectors (and frame sequences) that exist, plus an index row for every key
        (status ok or missing)."""
        frames = frames or [None] * len(keys)
        names = names or [""] * len(keys)
        ok = [v for v in vectors if v is not None]
        seqs = [f for v, f in zip(vectors, frames) if v is not None and f is not None]
        rows, pos, start = [], 0, 0
        for key, vec, seq, reason, name in zip(keys, vectors, frames, reasons, names, strict=True):
            n = len(seq) if vec is not None and seq is not None else -1
            rows.append({"cache_key": key, "row": pos if vec is not None else -1,
                         "status": "ok" if vec is not None else "missing", "reason": reason,
                         "frame_start": start, "n_frames": n, "name": name})
            pos += vec is not None
            start += max(n, 0)
        arrays = {"utt": _stack(ok, dim)}
        if seqs:
            arrays["frames"] = _stack(seqs, dim, concat=True)
        part = PartStore.part_id(keys)
        self.parts.write_part(part, arrays, pd.DataFrame(rows, columns=INDEX_COLUMNS), CHUNK_ROWS)
        return part

    def entries(self) -> Iterator[Entry]:
        """Every committed entry, part by part, with its vector and frame sequence."""
        for part, rows in self.index().groupby("part", sort=True):
            utt = self.parts.array(part, "utt")[...]
            frames = self.parts.array(part, "frames")[...] if (rows["n_frames"] > 0).any() else None
            for r in rows.itertuples(index=False):
                ok = r.status == "ok"
                seq = frames[r.frame_start:r.frame_start + r.n_frames] if ok and r.n_frames >= 0 else None
                yield Entry(r.cache_key, r.name or "", utt[r.row] if ok else None, seq, r.reason)

    def matrix(self) -> tuple[np.ndarray, dict[str, int], dict[str, str]]:
        """All stored vectors as one matrix, a row per ok cache key, and the reason per missing key.

        Column-wise (no per-row Python loop): loading a training set's features is on every train run."""
        index = self.index()
        parts = sorted(index["part"].unique())
        blocks = self.parts.read_all(parts, "utt")
        offsets = dict(zip(parts, np.cumsum([0] + [len(b) for b in blocks[:-1]])))
        ok = index["status"] == "ok"
        rows = index["row"][ok].to_numpy() + index["part"][ok].map(offsets).to_numpy()
        lookup = dict(zip(index["cache_key"][ok], rows.tolist()))
        gone = index[~ok].drop_duplicates("cache_key")
        missing = dict(zip(gone["cache_key"], gone["reason"]))
        dim = int(self.meta()["dim"])
        sizes = sorted({b.shape[1] for b in blocks} - {dim})
        if sizes:   # mixed sizes: written before create() refused them
            raise InputError(f"{self.root} holds {dim}-d vectors and vectors of size {sizes} from an earlier "
                             f"encoder configuration: delete it (rm -r {self.root}) and encode again")
        matrix = np.concatenate(blocks) if blocks else np.zeros((0, dim), np.float32)
        return matrix, lookup, missing

    def load(self, view: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Features for the items of a media view, in its row order: (X, present). Absent rows are NaN."""
        ident = self.identity()
        keys = ident.cache_keys(view[ident.column])
        matrix, lookup, _ = self.matrix()
        rows = np.array([lookup.get(k, -1) if k else -1 for k in keys], dtype=np.int64)
        present = rows >= 0
        X = (matrix[np.where(present, rows, 0)] if len(matrix) else np.zeros((len(view), matrix.shape[1]))
             ).astype(np.float32, copy=False)
        X[~present] = np.nan  # one copy, no temporary: at release scale a store's matrix is half a gigabyte
        return X, present


def _stack(arrays: list[np.ndarray], dim: int, concat: bool = False) -> np.ndarray:
    if not arrays:
        return np.zeros((0, dim), np.float32)
    return (np.concatenate if concat else np.stack)(arrays).astype(np.float32, copy=False)
