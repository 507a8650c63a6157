"""What every corpus adapter yields, and the checks that turn candidate rows into a manifest.

An adapter only knows its corpus layout; it yields `Candidate`s. `validate` applies the same rules to
every corpus: media inside the root, readable container, known label, valid valence, unique id.
Bad rows become rejects with their reason; nothing is dropped silently.

Media kinds: a video (with or without audio), an audio file, a still image, a folder of frames, or none
(a text-only row). Beside it a corpus may ship per-modality files of its own (MER 2025: `audio/<name>.wav`
and OpenFace-aligned faces `openface_face/<name>/<name>.npy`), in `audio_path` and `face_path`; extract
uses them by extract.audio_source and extract.face_source. `has_video`, `has_audio` and `transcript`
record what each item really has. `label_list` holds open-vocabulary labels (MER-FG), joined by ";".
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import ClassVar

import av
import pandas as pd

from pipeline.errors import InputError
from pipeline.labels import LIST_COLUMN, LIST_SEPARATOR, PLACEHOLDER_VALENCE, VALENCE_RANGE
from pipeline.media.decode import IMAGE_SUFFIXES, MediaError, clip_hash, face_array_shape, frame_files
from pipeline.registry import Component

SPLITS = ("train", "test1", "test2", "test3")

MANIFEST_COLUMNS = [
    "sample_id", "split", "path", "label", "valence", "transcript", "speaker",
    "has_video", "has_audio", "media_hash", "true_label", "true_valence", "meta",
    "audio_path", "face_path", LIST_COLUMN,
]


@dataclass(frozen=True)
class Candidate:
    sample_id: str
    split: str
    path: str | None               # relative to the corpus root; None for a text-only item
    label: str | None = None       # corpus label before mapping; None = unlabelled
    valence: float | None = None
    transcript: str | None = None  # None = not given (extract may run ASR)
    speaker: str | None = None
    true_label: str | None = None  # known truth of an unlabelled item (generated corpora only)
    true_valence: float | None = None
    meta: dict | None = None       # corpus-specific attributes (e.g. intensity, statement), kept as JSON
    skip: Reject | None = None     # the adapter already knows why this file cannot be an item
    audio_path: str | None = None  # the corpus's own audio of the item (e.g. audio/<name>.wav), relative to the root
    face_path: str | None = None   # its aligned face frames, an (N, H, W, 3) uint8 BGR .npy array
    label_list: tuple[str, ...] | None = None  # open-vocabulary labels (MER-FG); None = not labelled so


class Adapter(Component):
    """One corpus layout: `read(root)` yields a Candidate per file or row found under the corpus root."""

    kind = "corpus adapter"
    generated: ClassVar[bool] = False   # a synthetic corpus: a model trained on it means nothing on real clips

    def read(self, root: Path) -> Iterator[Candidate]:
        raise NotImplementedError


class Reject(Exception):
    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Excluded(Reject):
    """Left out on purpose (its label maps to "" in prepare.label_map): recorded, not counted as a reject."""


def resolve_inside(root: Path, rel: str) -> Path:
    """The media path (a file or a folder of frames), refusing anything that escapes the data root:
    the path itself, and for a folder each frame in it (a frame may be a link)."""
    try:
        full = _inside(root, root / rel, rel)
        kind = "folder" if full.is_dir() else "file" if full.is_file() else ""
    except (OSError, ValueError) as err:   # a NUL byte, a name too long for the file system
        raise Reject(f"unusable path {printable(rel)!r}: {err}") from err
    if kind == "folder":
        frames = frame_files(full)
        if not frames:
            raise Reject(f"folder holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))}): {rel}")
        for frame in frames:
            _inside(root, frame, f"{rel}/{frame.name}")
        return full
    if kind != "file":
        raise Reject(f"missing file: {rel}")
    return full


def _inside(root: Path, path: Path, rel: str) -> Path:
    """`path` with links resolved, or a Reject when that lies outside the data root."""
    full = path.resolve()
    if not full.is_relative_to(root.resolve()):
        raise Reject(f"path escapes the data root: {rel}")
    return full


def probe_streams(path: Path) -> tuple[bool, bool]:
    """(has_video, has_audio) of a media file; Reject when no demuxer can open it."""
    if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
        return True, False
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.video), bool(container.streams.audio)
    except (av.FFmpegError, OSError, UnicodeDecodeError) as err:
        raise Reject(f"unreadable container: {err}") from err


def map_label(label: str | None, labels: tuple[str, ...], label_map: dict[str, str]) -> str | None:
    """A corpus label in the project's label set; prepare.label_map applies to labels outside the set."""
    if label is None or (isinstance(label, float) and math.isnan(label)) or str(label).strip() == "":
        return None
    label = str(label)
    mapped = label if label in labels else label_map.get(label, label)
    if mapped == "":
        raise Excluded(f"excluded by prepare.label_map: label {label!r}")
    if mapped not in labels:
        raise Reject(f"unknown label {label!r} (known: {', '.join(labels)}; map others with prepare.label_map)")
    return mapped


def check_valence(valence: float | None) -> float:
    if valence is None or (isinstance(valence, float) and math.isnan(valence)):
        return math.nan
    try:
        value = float(valence)
    except (TypeError, ValueError) as err:
        raise Reject(f"valence is not a number: {valence!r}") from err
    if value == PLACEHOLDER_VALENCE:
        return math.nan  # the MER 2023 baseline's "no valence" placeholder
    lo, hi = VALENCE_RANGE
    if not lo <= value <= hi:
        raise Reject(f"valence {value} outside [{lo}, {hi}]")
    return value


def clean_transcript(text) -> str | None:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    return str(text).strip()


def validate(
    candidates: Iterable[Candidate],
    root: Path,
    labels: tuple[str, ...],
    label_map: dict[str, str],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split candidates into (manifest, rejects) data frames."""
    rows, rejects, seen = [], [], set()
    for cand in candidates:
        try:
            rows.append(_check(cand, root, labels, label_map, seen))
            seen.add(cand.sample_id)
        except Reject as rej:
            rejects.append({"sample_id": printable(cand.sample_id), "split": printable(cand.split),
                            "path": printable(cand.path),
                            "reason": rej.reason, "excluded": isinstance(rej, Excluded)})
    manifest = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return manifest, pd.DataFrame(rejects, columns=["sample_id", "split", "path", "reason", "excluded"])


def _check(cand: Candidate, root: Path, labels, label_map, seen: set[str]) -> dict:
    if cand.skip is not None:
        raise cand.skip
    for what, text in (("file name", cand.path), ("sample id", cand.sample_id)):
        if isinstance(text, str) and not _utf8(text):
            raise Reject(f"{what} is not valid UTF-8: {printable(text)}; rename it")
    if cand.sample_id in seen:
        raise Reject(f"duplicate sample id {cand.sample_id!r}")
    if cand.split not in SPLITS:
        raise Reject(f"unknown split {cand.split!r} (known: {', '.join(SPLITS)})")
    has_video = has_audio = False
    files = []
    if cand.path is not None:
        files.append(resolve_inside(root, cand.path))
        has_video, has_audio = probe_streams(files[-1])
        if not (has_video or has_audio):
            raise Reject("container has neither a video nor an audio stream")
    if cand.audio_path is not None:
        files.append(resolve_inside(root, cand.audio_path))
        if not probe_streams(files[-1])[1]:
            raise Reject(f"no audio stream in {cand.audio_path}")
        has_audio = True
    if cand.face_path is not None:
        files.append(resolve_inside(root, cand.face_path))
        try:
            face_array_shape(files[-1])
        except MediaError as err:
            raise Reject(str(err)) from err
        has_video = True
    transcript = clean_transcript(cand.transcript)
    if not files and not transcript:
        raise Reject("no media and no transcript: nothing to recognise")
    return {
        "sample_id": cand.sample_id,
        "split": cand.split,
        "path": cand.path,
        "label": map_label(cand.label, labels, label_map),
        "valence": check_valence(cand.valence),
        "transcript": transcript,
        "speaker": cand.speaker,
        "has_video": has_video,
        "has_audio": has_audio,
        "media_hash": clip_hash(files) if files else None,
        "true_label": map_label(cand.true_label, labels, label_map),
        "true_valence": check_valence(cand.true_valence),
        "meta": json.dumps(cand.meta, sort_keys=True) if cand.meta else None,
        "audio_path": cand.audio_path,
        "face_path": cand.face_path,
        LIST_COLUMN: None if cand.label_list is None else LIST_SEPARATOR.join(cand.label_list),
    }


# The csv module's field limit (128 KiB) is below a long transcript; a field past this one is an
# unclosed quote swallowing the rest of the file, not text.
MAX_FIELD = 16 * 2**20


def csv_rows(path: Path) -> Iterator[tuple[int, dict | Reject]]:
    """(line, row) per data row of a CSV file, empty fields as None; a row that cannot be read as the header
    says (bytes that are not UTF-8, more fields than the header) comes as a Reject with the reason, so it
    costs that row only. A header that is not UTF-8, or text the csv module cannot split into rows, is an
    InputError naming the file and line."""
    text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")   # undecodable bytes kept, found below
    csv.field_size_limit(MAX_FIELD)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows = _split(reader, path)
    header = next(rows, None)
    if header is None:
        return
    if not all(map(_utf8, header)):
        raise InputError(f"{path}: line 1 (the header) is not valid UTF-8: save the file as UTF-8")
    while header and header[-1] == "":   # a trailing comma on the header line: no column
        header = header[:-1]
    line = reader.line_num
    for fields in rows:
        start, line = line + 1, reader.line_num
        if not any(fields):
            continue
        if not all(map(_utf8, fields)):
            yield start, Reject(f"line {start}: not valid UTF-8 (another encoding?): save {path.name} as UTF-8")
        elif len(fields) > len(header) and any(fields[len(header):]):
            yield start, Reject(f"line {start}: {len(fields)} fields but the header has {len(header)} "
                                f"(a trailing comma or an unquoted comma in a value?)")
        else:
            yield start, {name: value or None for name, value in zip_longest(header, fields[:len(header)])}


def _split(reader, path: Path) -> Iterator[list[str]]:
    """The reader's rows; a row it cannot split stops the file, named with the line where that row starts."""
    start = 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            hint = " (an unclosed quote?)" if "field limit" in str(err) else ""
            raise InputError(f"{path}: line {start}: {err}{hint}: fix the CSV there") from err
        start = reader.line_num + 1
        yield fields


def iter_csv(path: Path, columns: tuple[str, ...] = ()) -> Iterator[dict]:
    """The rows of a CSV file that must be whole (labels, transcripts): a bad row, or a header without
    one of `columns`, is an error naming it."""
    for _, row in csv_rows(path):
        if isinstance(row, Reject):
            raise InputError(f"{path}: {row.reason}")
        missing = [c for c in columns if c not in row]
        if missing:
            raise InputError(f"{path}: no column {', '.join(missing)}; the header must name {', '.join(columns)}")
        yield row


def _utf8(text: str) -> bool:
    """False when the text holds bytes that were not UTF-8 (decoded with surrogateescape)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(text: str | None) -> str | None:
    """Text safe to write anywhere: bytes that were not UTF-8 shown as \\xNN escapes."""
    if text is None:
        return None
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
