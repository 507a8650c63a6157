"""Acted-emotion corpora whose file names carry the labels: RAVDESS and CREMA-D.

RAVDESS (`Actor_12/03-01-06-01-02-01-12.wav`): seven two-digit fields, modality (01 audio-video,
02 video only, 03 audio only), vocal channel (01 speech, 02 song), emotion (01-08), intensity (01 normal,
02 strong), statement (01, 02), repetition, actor (odd male, even female). Files may sit in any folder.

CREMA-D (`VideoFlash/1001_DFA_ANG_XX.flv`, `AudioWAV/1001_DFA_ANG_XX.wav`): actor, sentence code,
emotion (ANG DIS FEA HAP NEU SAD) and level (LO MD HI XX).

Both yield each corpus's own label names (mapped onto `prepare.labels` by `prepare.label_map`), the
speaker, the spoken sentence as the transcript, and the other fields in `meta`. One performance is one
item: when it exists as several files, the one with most modalities is kept and the others are recorded
as excluded. Items of the speakers in prepare.options.test_speakers form test1; all others are train.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from pipeline.datasets.base import Adapter, Candidate, Excluded, Reject
from pipeline.errors import MissingInput

RAVDESS_NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
RAVDESS_MODALITY = {"01": "audio-video", "02": "video", "03": "audio"}
RAVDESS_CHANNEL = {"01": "speech", "02": "song"}
RAVDESS_EMOTION = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry", "06": "fearful",
                   "07": "disgust", "08": "surprised"}
RAVDESS_INTENSITY = {"01": "normal", "02": "strong"}
RAVDESS_STATEMENT = {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
RAVDESS_SUFFIXES = {".mp4", ".wav"}

CREMAD_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
CREMAD_EMOTION = {"ANG": "angry", "DIS": "disgust", "FEA": "fearful", "HAP": "happy", "NEU": "neutral", "SAD": "sad"}
CREMAD_LEVEL = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
CREMAD_SENTENCE = {
    "IEO": "It's eleven o'clock", "TIE": "That is exactly what happened", "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about", "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold", "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment", "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before", "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes",
}
CREMAD_SUFFIXES = {".flv": "audio-video", ".mp4": "audio-video", ".wav": "audio"}
PREFERENCE = ("audio-video", "audio", "video")  # which file of a performance becomes the item


@dataclass(frozen=True)
class _Parsed:
    candidate: Candidate
    performance: str   # the same for every file of one recorded performance
    kind: str          # audio-video | audio | video


@dataclass(frozen=True)
class ActedConfig:
    test_speakers: tuple[str, ...] = ()   # these speakers' items form test1, all others train


class RavdessAdapter(Adapter):
    """RAVDESS: Actor_* folders of speech/song audio and/or video, labels in names like 03-01-06-01-02-01-12.wav."""

    name = "ravdess"
    Config = ActedConfig

    def read(self, root: Path) -> Iterator[Candidate]:
        return read_ravdess(root, self.config.test_speakers)


class CremadAdapter(Adapter):
    """CREMA-D: VideoFlash/*.flv and/or AudioWAV/*.wav, labels in names like 1001_DFA_ANG_XX."""

    name = "cremad"
    Config = ActedConfig

    def read(self, root: Path) -> Iterator[Candidate]:
        return read_cremad(root, self.config.test_speakers)


def read_ravdess(root: Path, test_speakers: Iterable[str] = ()) -> Iterator[Candidate]:
    files = _files(root, RAVDESS_SUFFIXES)
    if not files:
        raise MissingInput(f"{root}: no RAVDESS files (*.mp4, *.wav named like 03-01-06-01-02-01-12.wav)")
    yield from _one_per_performance(_ravdess(root, f, set(test_speakers)) for f in files)


def read_cremad(root: Path, test_speakers: Iterable[str] = ()) -> Iterator[Candidate]:
    files = _files(root, set(CREMAD_SUFFIXES))
    if not files:
        raise MissingInput(f"{root}: no CREMA-D files (*.flv, *.wav named like 1001_DFA_ANG_XX.flv)")
    yield from _one_per_performance(_cremad(root, f, set(test_speakers)) for f in files)


def _files(root: Path, suffixes: set[str]) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


def _unparsed(root: Path, path: Path, reason: str) -> _Parsed:
    rel = path.relative_to(root).as_posix()
    return _Parsed(Candidate(rel, "train", rel, skip=Reject(reason)), rel, "")


def _ravdess(root: Path, path: Path, test_speakers: set[str]) -> _Parsed:
    match = RAVDESS_NAME.match(path.stem)
    if not match:
        return _unparsed(root, path, "file name is not RAVDESS's MM-VV-EE-II-SS-RR-AA pattern")
    modality, channel, emotion, intensity, statement, repetition, actor = match.groups()
    tables = ((modality, RAVDESS_MODALITY), (channel, RAVDESS_CHANNEL), (emotion, RAVDESS_EMOTION),
              (intensity, RAVDESS_INTENSITY), (statement, RAVDESS_STATEMENT))
    unknown = [code for code, table in tables if code not in table]
    if unknown:
        return _unparsed(root, path, f"unknown RAVDESS code(s) {unknown} in the file name")
    speaker = actor.lstrip("0") or "0"
    meta = {"modality": RAVDESS_MODALITY[modality], "vocal_channel": RAVDESS_CHANNEL[channel],
            "intensity": RAVDESS_INTENSITY[intensity], "statement": statement, "repetition": int(repetition),
            "gender": "male" if int(actor) % 2 else "female"}
    cand = Candidate(path.stem, _split(speaker, test_speakers), path.relative_to(root).as_posix(),
                     label=RAVDESS_EMOTION[emotion], transcript=RAVDESS_STATEMENT[statement], speaker=speaker, meta=meta)
    return _Parsed(cand, path.stem[3:], RAVDESS_MODALITY[modality])


def _cremad(root: Path, path: Path, test_speakers: set[str]) -> _Parsed:
    match = CREMAD_NAME.match(path.stem)
    if not match:
        return _unparsed(root, path, "file name is not CREMA-D's 1001_DFA_ANG_XX pattern")
    actor, sentence, emotion, level = match.groups()
    unknown = [c for c, table in ((sentence, CREMAD_SENTENCE), (emotion, CREMAD_EMOTION), (level, CREMAD_LEVEL))
               if c not in table]
    if unknown:
        return _unparsed(root, path, f"unknown CREMA-D code(s) {unknown} in the file name")
    kind = CREMAD_SUFFIXES[path.suffix.lower()]
    meta = {"modality": kind, "sentence": sentence, "intensity": CREMAD_LEVEL[level]}
    cand = Candidate(path.stem, _split(actor, test_speakers), path.relative_to(root).as_posix(),
                     label=CREMAD_EMOTION[emotion], transcript=CREMAD_SENTENCE[sentence], speaker=actor, meta=meta)
    return _Parsed(cand, path.stem, kind)


def _split(speaker: str, test_speakers: set[str]) -> str:
    return "test1" if speaker in test_speakers else "train"


def _one_per_performance(parsed: Iterable[_Parsed]) -> Iterator[Candidate]:
    """Every file once: the preferred file of each performance as the item, its other files excluded."""
    groups: dict[str, list[_Parsed]] = {}
    for p in parsed:
        groups.setdefault(p.performance, []).append(p)
    for group in groups.values():
        group.sort(key=lambda p: PREFERENCE.index(p.kind) if p.kind in PREFERENCE else len(PREFERENCE))
        kept = group[0].candidate
        yield kept
        for other in group[1:]:
            reason = f"same performance as {kept.path} (kept: it has more modalities)"
            yield other.candidate if other.candidate.skip else replace(other.candidate, skip=Excluded(reason))
