"""The media store: what the encoders read, one view of the corpus per store (clean, noisy, ...).

Per item: 16 kHz mono audio (int16, as the baseline's wav files), aligned face crops of the sampled
frames with a per-frame found flag, box and time, and the transcript with its source. Each index row
records the source clip's hash, the hash of the params that produced it, and a content key per
modality, which is what the feature store's cache keys build on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import MissingInput
from pipeline.modalities import CONTENT_KEYS, MODALITIES
from pipeline.store.parts import PartStore

INDEX_COLUMNS = [
    "sample_id", "source_hash", "params_hash", "audio_start", "audio_len", "frame_start", "n_frames",
    "n_faces", "transcript", "transcript_source", *CONTENT_KEYS, "meta",
]
VIEW_FILE = "view.parquet"
CHUNK_ROWS = {"audio": 16000 * 8, "faces": 16, "face_found": 4096, "frame_time": 4096, "boxes": 4096}


@dataclass
class MediaItem:
    sample_id: str
    source_hash: str
    params_hash: str
    audio: np.ndarray | None = None        # float32 mono in [-1, 1] at 16 kHz
    faces: np.ndarray | None = None        # (T, S, S, 3) uint8 RGB, zeros where no face
    found: np.ndarray | None = None        # (T,) bool
    frame_time: np.ndarray | None = None   # (T,) float32 seconds
    boxes: np.ndarray | None = None        # (T, 4) float32
    transcript: str | None = None          # None: no transcript at all
    transcript_source: str = "missing"     # given | asr:<model> | missing
    meta: dict = field(default_factory=dict)

    @property
    def found_faces(self) -> np.ndarray:
        """The crops an encoder may read: frames where a face was found."""
        if self.faces is None:
            return np.zeros((0, 1, 1, 3), np.uint8)
        return self.faces[self.found]


def digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:32]


def to_int16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def content_keys(item: MediaItem) -> dict[str, str | None]:
    """Per-modality keys of exactly what an encoder will see; None where the modality is absent."""
    audio = None if item.audio is None else digest("audio", to_int16(item.audio).tobytes())
    faces = item.found_faces
    visual = digest("faces", str(faces.shape), faces.tobytes()) if len(faces) else None
    text = digest("text", item.transcript) if item.transcript else None
    return {MODALITIES["audio"].key: audio, MODALITIES["visual"].key: visual, MODALITIES["text"].key: text}


def corrupted_views(folder: Path | None) -> dict[str, Path]:
    """The view stores in the `corrupt` stage's folder, by name (none when it has not run)."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.name: p for p in sorted(folder.iterdir()) if (p / VIEW_FILE).is_file()}


class MediaStore:
    def __init__(self, root: str | Path):
        self.parts = PartStore(root)
        self._index: pd.DataFrame | None = None

    @property
    def root(self) -> Path:
        return self.parts.root

    def create(self) -> MediaStore:
        self.parts.create()
        return self

    def write(self, items: list[MediaItem]) -> str:
        """Write items as one part; returns its id."""
        arrays, rows = _pack(items)
        part = PartStore.part_id([f"{i.sample_id}:{i.source_hash}:{i.params_hash}" for i in items])
        self.parts.write_part(part, arrays, pd.DataFrame(rows, columns=INDEX_COLUMNS), CHUNK_ROWS)
        return part

    def index(self) -> pd.DataFrame:
        """Committed rows; when an item was written more than once with the same hashes, one row."""
        if self._index is None:
            frame = self.parts.index()
            if frame.empty:
                frame = pd.DataFrame(columns=[*INDEX_COLUMNS, "part"])
            self._index = frame.drop_duplicates(["sample_id", "source_hash", "params_hash"], keep="last")
        return self._index

    def current(self, wanted: pd.DataFrame) -> pd.DataFrame:
        """Index rows matching `wanted`'s (sample_id, source_hash, params_hash), in `wanted`'s order."""
        keys = ["sample_id", "source_hash", "params_hash"]
        return wanted[keys].merge(self.index(), on=keys, how="inner")

    def write_view(self, rows: pd.DataFrame) -> None:
        """Record which rows are live now: the items downstream stages read from this store."""
        tmp = self.root / ".view.parquet.tmp"
        rows.to_parquet(tmp, index=False)
        tmp.replace(self.root / VIEW_FILE)

    def view(self) -> pd.DataFrame:
        path = self.root / VIEW_FILE
        if not path.is_file():
            raise MissingInput(f"{self.root} has no {VIEW_FILE}: run the stage that writes this store")
        return pd.read_parquet(path)

    def load(self, row) -> MediaItem:
        """The stored item behind one index row."""
        # Parquet round trips may turn an absent transcript into NaN; absent is None.
        transcript = row.transcript if isinstance(row.transcript, str) else None
        item = MediaItem(row.sample_id, row.source_hash, row.params_hash,
                         transcript=transcript, transcript_source=row.transcript_source,
                         meta=json.loads(row.meta))
        if row.audio_len >= 0:
            raw = self.parts.read(row.part, "audio", row.audio_start, row.audio_start + row.audio_len)
            item.audio = raw.astype(np.float32) / 32768.0
        if row.n_frames >= 0:
            span = (row.part, row.frame_start, row.frame_start + row.n_frames)
            item.faces = self.parts.read(span[0], "faces", *span[1:])
            item.found = self.parts.read(span[0], "face_found", *span[1:])
            item.frame_time = self.parts.read(span[0], "frame_time", *span[1:])
            item.boxes = self.parts.read(span[0], "boxes", *span[1:])
        return item


def _pack(items: list[MediaItem]) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Concatenate items into ragged arrays plus one index row each (-1 length = absent)."""
    size = next((i.faces.shape[1] for i in items if i.faces is not None), 1)
    audio, faces, found, times, boxes, rows = [], [], [], [], [], []
    a_pos = f_pos = 0
    for item in items:
        a_len = -1 if item.audio is None else len(item.audio)
        n = -1 if item.faces is None else len(item.faces)
        if a_len >= 0:
            audio.append(to_int16(item.audio))
        if n >= 0:
            faces.append(item.faces)
            found.append(item.found)
            times.append(item.frame_time)
            boxes.append(item.boxes)
        rows.append({
            "sample_id": item.sample_id, "source_hash": item.source_hash, "params_hash": item.params_hash,
            "audio_start": a_pos, "audio_len": a_len, "frame_start": f_pos, "n_frames": n,
            "n_faces": int(item.found.sum()) if n >= 0 else 0,
            "transcript": item.transcript, "transcript_source": item.transcript_source,
            **content_keys(item), "meta": json.dumps(item.meta, sort_keys=True, default=str),
        })
        a_pos += max(a_len, 0)
        f_pos += max(n, 0)
    arrays = {
        "audio": np.concatenate(audio) if audio else np.zeros(0, np.int16),
        "faces": np.concatenate(faces) if faces else np.zeros((0, size, size, 3), np.uint8),
        "face_found": np.concatenate(found).astype(bool) if found else np.zeros(0, bool),
        "frame_time": np.concatenate(times).astype(np.float32) if times else np.zeros(0, np.float32),
        "boxes": np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
    }
    return arrays, rows
