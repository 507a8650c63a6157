"""The MER 2024, 2025 and 2026 releases (docs/editions.md has each layout, file by file).

    MER 2024   video-labeled/ video-unlabeled-with-test2noise/   clips (.mp4 or .avi)
               label-disdim.csv (name, discrete[, valence]), label-transcription.csv (name, chinese),
               candidate_20000.csv (name)
    MER 2025   video/<name>.mp4, audio/<name>.wav, openface_face/<name>/<name>.npy (aligned faces),
    and 2026   subtitle_chieng.csv (name, chinese, english), track1_train*.csv (name, discrete[, valence]),
               track2_*.csv (name, openset: a label list), the candidate list (name)

Splits: the labelled training CSV is `train`; the candidate list, the clips the challenge scores, is
`test1` (labelled from a test label file when the user has one, else unlabelled: then only predicted and
submitted); every other clip is `test3`, the unlabelled pool MER-SEMI pseudo-labels from. Each clip's
media are whatever of its video, audio and aligned faces the release holds, so a release downloaded
without video/ works from the rest; a clip with none of them and no subtitle is a reject.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.datasets.base import Adapter, Candidate, Reject, iter_csv
from pipeline.datasets.mer2023 import VIDEO_SUFFIXES
from pipeline.errors import InputError, MissingInput
from pipeline.labels import LIST_SEPARATOR

LANGUAGES = ("chinese", "english")


@dataclass(frozen=True)
class Layout:
    """Where one release keeps what: files and folders relative to the root ("" = not in this release)."""
    train: str
    candidates: str
    test_labels: str
    video_dirs: tuple[str, ...]
    audio_dir: str
    faces_dir: str
    transcripts: tuple[tuple[str, str], ...]   # (CSV, its text column); a later file wins for a name in both
    label_lists: tuple[str, ...]


@dataclass(frozen=True)
class Mer2025Config:
    train: str = "track1_train_disdim.csv"        # the labelled training CSV (MER 2026: track1_train.csv)
    candidates: str = "track_all_candidates.csv"  # the names to predict (MER 2026: track1_track2_candidate.csv)
    test_labels: str = ""                         # name, discrete of the candidates once published; "" = none
    label_lists: tuple[str, ...] = ("track2_train_ovmerd.csv",)  # name, openset CSVs (MER 2026: track2_train_human.csv)
    subtitles: str = "subtitle_chieng.csv"        # name, chinese, english
    language: str = "chinese"                     # the subtitle column read as the transcript: chinese | english


class Mer2025Adapter(Adapter):
    """The MER 2025 / MER 2026 release: video/, audio/, openface_face/, subtitle_chieng.csv, the track CSVs."""

    name = "mer2025"
    Config = Mer2025Config

    def read(self, root: Path) -> Iterator[Candidate]:
        cfg = self.config
        return read_release(root, Layout(
            train=cfg.train, candidates=cfg.candidates, test_labels=cfg.test_labels, video_dirs=("video",),
            audio_dir="audio", faces_dir="openface_face", transcripts=((cfg.subtitles, language(cfg.language)),),
            label_lists=cfg.label_lists))


@dataclass(frozen=True)
class Mer2024Config:
    labels: str = "label-disdim.csv"              # the labelled clips: name, discrete[, valence]
    transcripts: str = "label-transcription.csv"  # their checked subtitles: name, chinese
    candidates: str = "candidate_20000.csv"       # the names to predict
    test_labels: str = ""                         # name, discrete of the candidates once published; "" = none
    subtitles: str = ""                           # a CSV of the other clips' subtitles (name, <language>); "" = none
    language: str = "chinese"                     # the column read from `subtitles`: chinese | english
    audio: str = ""                               # a folder of <name>.wav shipped with the candidates; "" = none
    faces: str = ""                               # a folder of <name>/<name>.npy aligned faces; "" = none


class Mer2024Adapter(Adapter):
    """The MER 2024 release: video-labeled/, video-unlabeled-with-test2noise/, label-disdim.csv, the candidates."""

    name = "mer2024"
    Config = Mer2024Config

    def read(self, root: Path) -> Iterator[Candidate]:
        cfg = self.config
        subtitles = ((cfg.subtitles, language(cfg.language)),) if cfg.subtitles else ()
        return read_release(root, Layout(
            train=cfg.labels, candidates=cfg.candidates, test_labels=cfg.test_labels,
            video_dirs=("video-labeled", "video-unlabeled-with-test2noise"), audio_dir=cfg.audio,
            faces_dir=cfg.faces, transcripts=(*subtitles, (cfg.transcripts, "chinese")), label_lists=()))


def language(name: str) -> str:
    if name not in LANGUAGES:
        raise ConfigError(f"prepare.options.language: {name!r}; allowed: one of {', '.join(LANGUAGES)}")
    return name


def read_release(root: Path, layout: Layout) -> Iterator[Candidate]:
    """Candidates of a release: the training rows, the candidates, then every other clip, each with the
    media, subtitle and label list the release holds for its name."""
    media = _Media(root, layout)
    texts: dict[str, str] = {}
    for path, column in layout.transcripts:
        texts |= _column(root, path, column, empty="")
    lists = {}
    for path in layout.label_lists:
        lists |= {name: parse_label_list(text) for name, text in _column(root, path, "openset").items()}
    test_labels = {r["name"]: r for r in _rows(root, layout.test_labels, ("name", "discrete"))} if layout.test_labels else {}
    candidates = [r["name"] for r in _rows(root, layout.candidates, ("name",))]

    def item(name: str, split: str, row: dict | None = None) -> Candidate:
        return Candidate(sample_id=name, split=split, label=(row or {}).get("discrete"),
                         valence=(row or {}).get("valence"), transcript=texts.get(name), label_list=lists.get(name),
                         **media.of(name))

    listed = set()
    for row in _rows(root, layout.train, ("name", "discrete")):
        listed.add(row["name"])
        yield item(row["name"], "train", row)
    for name in candidates:
        listed.add(name)
        yield item(name, "test1", test_labels.get(name))
    for name in sorted(set(test_labels) - set(candidates)):
        yield Candidate(name, "test1", None, skip=Reject(f"in {layout.test_labels} but not in {layout.candidates}"))
    for name in sorted((media.names() | set(texts) | set(lists)) - listed):
        yield item(name, "test3")


class _Media:
    """Each name's media files under the root, from one listing of each media folder."""

    def __init__(self, root: Path, layout: Layout):
        self.videos: dict[str, str] = {}
        for folder in layout.video_dirs:
            for path in sorted((root / folder).iterdir()) if (root / folder).is_dir() else []:
                if path.suffix.lower() in VIDEO_SUFFIXES:
                    self.videos.setdefault(path.stem, f"{folder}/{path.name}")
        audio = root / layout.audio_dir if layout.audio_dir else None
        self.audio = ({p.stem: f"{layout.audio_dir}/{p.name}" for p in audio.glob("*.wav")}
                      if audio is not None and audio.is_dir() else {})
        faces = root / layout.faces_dir if layout.faces_dir else None
        self.faces = ({p.name: f"{layout.faces_dir}/{p.name}/{p.name}.npy" for p in faces.iterdir()
                       if (p / f"{p.name}.npy").is_file()} if faces is not None and faces.is_dir() else {})
        if not (self.videos or self.audio or self.faces):
            raise MissingInput(f"{root}: no clip media found (looked for {', '.join(layout.video_dirs)}"
                               f"{', ' + layout.audio_dir if layout.audio_dir else ''}"
                               f"{', ' + layout.faces_dir if layout.faces_dir else ''}): prepare.root must "
                               f"point at the release folder")

    def names(self) -> set[str]:
        return set(self.videos) | set(self.audio) | set(self.faces)

    def of(self, name: str) -> dict[str, str | None]:
        return {"path": self.videos.get(name), "audio_path": self.audio.get(name), "face_path": self.faces.get(name)}


def _rows(root: Path, name: str, required: tuple[str, ...]) -> Iterator[dict]:
    path = root / name
    if not path.is_file():
        raise MissingInput(f"{path} not found: set prepare.options to the release's file names (docs/editions.md)")
    for row in iter_csv(path):
        missing = [c for c in required if c not in row]
        if missing:
            raise InputError(f"{path}: no column(s) {missing}; found {sorted(row)}")
        yield row


def _column(root: Path, name: str, column: str, empty: str | None = None) -> dict[str, str]:
    """name -> the column's text; a row whose text is absent gives `empty` (subtitles: the ASR heard nothing)."""
    return {row["name"]: row[column] if row[column] is not None else empty
            for row in _rows(root, name, ("name", column)) if row[column] is not None or empty is not None}


def parse_label_list(text: str) -> tuple[str, ...]:
    """An `openset` cell, written as a Python list ("['excited', 'joyful']") or plain words, -> its words in
    order, once each; the separator never occurs inside a word."""
    words = (w.strip() for w in re.split(r"[\[\]'\",;，、]", text or ""))
    return tuple(dict.fromkeys(w for w in words if w and LIST_SEPARATOR not in w))
