"""The media store: what the encoders read, one view of the corpus per store (clean, noisy, ...).

Per item: 16 kHz mono audio (16-bit, as the baseline's wav files), aligned face crops of the sampled
frames with a per-frame found flag, box and time, and the transcript with its source. Each index row
records the source clip's hash, the hash of the params that produced it, and a content key per
modality, which is what the feature store's cache keys build on.

Compactly, as files in their own formats (benchmarks/results/face_codecs.json and disk.json measure
them): each item's audio one lossless FLAC file, concatenated per part ("audio_codes": the row's
audio_code_len bytes from audio_start), and each face crop one image file (extract.face_quality: JPEG at
that quality, 0 = lossless PNG), concatenated per part ("face_codes") with each crop's end offset
("face_ends"). Stores written before kept int16 samples ("audio") and raw pixels ("faces"); their rows
lack those columns, and they still read. The faces key is taken on the decoded crops, which is what an
encoder sees, so lossless crops keep the key raw pixels had.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import soundfile as sf

from pipeline.errors import MissingInput
from pipeline.modalities import CONTENT_KEYS, MODALITIES
from pipeline.store.parts import PartStore

INDEX_COLUMNS = [
    "sample_id", "source_hash", "params_hash", "audio_start", "audio_len", "frame_start", "n_frames",
    "n_faces", "transcript", "transcript_source", *CONTENT_KEYS, "meta", "face_quality", "face_size", "audio_code_len",
]
VIEW_FILE = "view.parquet"
AUDIO_RATE = 16000   # pipeline.media.decode.SAMPLE_RATE, named here so that reading a store needs no decoder
CHUNK_ROWS = {"audio_codes": 1 << 18, "face_codes": 1 << 16, "face_ends": 4096, "face_found": 4096, "frame_time": 4096,
              "boxes": 4096}


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
    # (face quality, the crops' image files) as load read them: written again at that quality, the crops
    # keep their bytes instead of taking a second lossy pass
    face_codes: tuple[int, list[bytes]] | None = field(default=None, repr=False)

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


def encode_audio(audio: np.ndarray) -> bytes:
    """Audio as a lossless 16-bit FLAC file (its samples exactly as int16 storage kept them)."""
    out = io.BytesIO()
    sf.write(out, to_int16(audio), AUDIO_RATE, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def decode_audio(code: bytes) -> np.ndarray:
    return sf.read(io.BytesIO(code), dtype="int16")[0]


def encode_crops(faces: np.ndarray, quality: int) -> list[bytes]:
    """Each RGB crop as an image file: JPEG at `quality` (1-100), lossless PNG at 0. Same bytes on every run."""
    ext, flags = (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3]) if quality == 0 else \
        (".jpg", [cv2.IMWRITE_JPEG_QUALITY, quality])
    return [cv2.imencode(ext, np.ascontiguousarray(crop[..., ::-1]), flags)[1].tobytes() for crop in faces]


def decode_crops(codes: list[bytes], size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 RGB crops back from their image files."""
    crops = [cv2.imdecode(np.frombuffer(code, np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for code in codes]
    return np.stack(crops) if crops else np.zeros((0, size, size, 3), np.uint8)


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

    def write(self, items: list[MediaItem], face_quality: int = 0) -> str:
        """Write items as one part, face crops at `face_quality` (extract.face_quality); returns its id."""
        arrays, rows = _pack(items, face_quality)
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
            size = getattr(row, "audio_code_len", None)
            if pd.isna(size):   # written before audio was encoded: int16 samples
                raw = self.parts.read(row.part, "audio", row.audio_start, row.audio_start + row.audio_len)
            else:
                code = self.parts.read(row.part, "audio_codes", row.audio_start, row.audio_start + int(size))
                raw = decode_audio(code.tobytes()) if size else np.zeros(0, np.int16)
            item.audio = raw.astype(np.float32) / 32768.0
        if row.n_frames >= 0:
            span = (row.part, row.frame_start, row.frame_start + row.n_frames)
            quality = getattr(row, "face_quality", None)
            if pd.isna(quality):   # written before crops were encoded: raw pixels
                item.faces = self.parts.read(span[0], "faces", *span[1:])
            else:
                codes = self._face_codes(*span)
                item.faces, item.face_codes = decode_crops(codes, int(row.face_size)), (int(quality), codes)
            item.found = self.parts.read(span[0], "face_found", *span[1:])
            item.frame_time = self.parts.read(span[0], "frame_time", *span[1:])
            item.boxes = self.parts.read(span[0], "boxes", *span[1:])
        return item

    def _face_codes(self, part: str, start: int, stop: int) -> list[bytes]:
        """The stored image files of frames [start, stop) of a part."""
        ends = self.parts.read(part, "face_ends", max(start - 1, 0), stop)
        ends = ends if start else np.concatenate([[0], ends])
        blob = self.parts.read(part, "face_codes", int(ends[0]), int(ends[-1])).tobytes()
        return [blob[a - ends[0]:b - ends[0]] for a, b in zip(ends[:-1], ends[1:])]


def stored_crops(item: MediaItem, quality: int) -> tuple[list[bytes], MediaItem]:
    """The item's crops as the store keeps them at `quality`, and the item as it will read back."""
    if item.face_codes is not None and item.face_codes[0] == quality:
        return item.face_codes[1], item
    codes = encode_crops(item.faces, quality)
    return codes, item if quality == 0 else replace(item, faces=decode_crops(codes, item.faces.shape[1]))


def _pack(items: list[MediaItem], quality: int) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Concatenate items into ragged arrays plus one index row each (-1 length = absent; audio_start in bytes)."""
    size = next((i.faces.shape[1] for i in items if i.faces is not None), 1)
    audio, codes, found, times, boxes, rows = [], [], [], [], [], []
    a_pos = f_pos = 0
    for item in items:
        a_len = -1 if item.audio is None else len(item.audio)
        n = -1 if item.faces is None else len(item.faces)
        audio.append(encode_audio(item.audio) if a_len > 0 else b"")
        if n >= 0:
            crops, item = stored_crops(item, quality)
            codes.extend(crops)
            found.append(item.found)
            times.append(item.frame_time)
            boxes.append(item.boxes)
        rows.append({
            "sample_id": item.sample_id, "source_hash": item.source_hash, "params_hash": item.params_hash,
            "audio_start": a_pos, "audio_len": a_len, "frame_start": f_pos, "n_frames": n,
            "n_faces": int(item.found.sum()) if n >= 0 else 0,
            "transcript": item.transcript, "transcript_source": item.transcript_source,
            **content_keys(item), "meta": json.dumps(item.meta, sort_keys=True, default=str),
            "face_quality": quality, "face_size": size, "audio_code_len": len(audio[-1]),
        })
        a_pos += len(audio[-1])
        f_pos += max(n, 0)
    arrays = {
        "audio_codes": np.frombuffer(b"".join(audio), np.uint8),
        "face_codes": np.frombuffer(b"".join(codes), np.uint8),
        "face_ends": np.cumsum([len(c) for c in codes], dtype=np.int64),
        "face_found": np.concatenate(found).astype(bool) if found else np.zeros(0, bool),
        "frame_time": np.concatenate(times).astype(np.float32) if times else np.zeros(0, np.float32),
        "boxes": np.concatenate(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32),
    }
    return arrays, rows
