"""The three modalities, in the one table that the stores, encode, training, predict and params read.

A modality's name is what an encoder declares (`Encoder.modality`) and what keys `train.features`; its
letter spells it in a modality subset (`train.ablation`: "AV" is audio and visual); the table's order is
the order of a model's branches.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

SILENCE_RMS = 1e-5  # below this a waveform carries no signal, only dither or digital zeros


@dataclass(frozen=True)
class Modality:
    name: str
    letter: str           # its letter in a modality subset code
    key: str              # media view column: the content key of exactly what an encoder of it reads
    size: str             # media view column measuring an input (a transcript's size is its length)
    field: str            # the MediaItem attribute an encoder of it reads
    present: str          # manifest column saying an item has it (the transcript itself for text)
    absent: str           # why an encoder of it gave no vector for an empty input

    def sizes(self, rows: pd.DataFrame) -> pd.Series:
        """The size of each media view row's input, for length buckets."""
        values = rows[self.size]
        return values.str.len() if self.name == "text" else values

    def in_manifest(self, manifest: pd.DataFrame) -> pd.Series:
        """Which manifest items have it."""
        values = manifest[self.present]
        return values.fillna("").str.len() > 0 if self.name == "text" else values.astype(bool)

    def is_empty(self, item) -> bool:
        """Nothing to encode: silent or empty audio, an empty transcript, no face frame."""
        if self.name == "text":
            return not has_text(item)
        return is_silent(item) if self.name == "audio" else len(item) == 0


MODALITIES = {m.name: m for m in (
    Modality("audio", "A", "audio_key", "audio_len", "audio", "has_audio", "silent or empty audio"),
    Modality("visual", "V", "faces_key", "n_faces", "found_faces", "has_video", "no face found"),
    Modality("text", "T", "text_key", "transcript", "transcript", "transcript", "empty transcript"),
)}
BY_LETTER = {m.letter: m for m in MODALITIES.values()}
LETTERS = "".join(BY_LETTER)
CONTENT_KEYS = [m.key for m in MODALITIES.values()]
# every non-empty subset, singles first, letters in table order: A, V, T, AV, AT, VT, AVT
ALL_SUBSETS = tuple("".join(c) for n in range(1, len(LETTERS) + 1) for c in combinations(LETTERS, n))
SUBSET_RULE = f"made of {', '.join(LETTERS)} ({', '.join(MODALITIES)}), each at most once"


def is_subset_code(code: str) -> bool:
    """A modality subset: made of the letters, each at most once, at least one."""
    return len(code) > 0 and len(set(code)) == len(code) and set(code) <= set(LETTERS)


def parse_subset(code: str) -> tuple[str, ...]:
    """'AVT' -> ('audio', 'visual', 'text'), the order the model's branches take."""
    if not code or set(code) - set(LETTERS):
        raise ValueError(f"modality subset {code!r}: {SUBSET_RULE}")
    return tuple(BY_LETTER[c].name for c in LETTERS if c in code)


def subset_code(names) -> str:
    """('text', 'audio') -> 'AT': the subset of those modalities, letters in table order."""
    return "".join(m.letter for m in MODALITIES.values() if m.name in set(names))


def is_silent(wave: np.ndarray) -> bool:
    """Empty or (near-)silent audio, which encoders answer with None rather than a feature."""
    wave = np.asarray(wave, dtype=np.float64)
    return wave.size == 0 or float(np.sqrt(np.mean(wave * wave))) < SILENCE_RMS


def has_text(text) -> bool:
    """A transcript with something to encode (not None, not empty or blank)."""
    return isinstance(text, str) and bool(text.strip())
