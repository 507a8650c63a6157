"""MER 2023 release layout.

    <root>/train/ test1/ test2/ test3/    videos (any extension), test2 already corrupted
    <root>/train-label.csv                name,discrete,valence (test1/2/3-label.csv when released)
    <root>/transcription.csv              name,sentence (NaN or empty allowed)
    <root>/label-6way.npz                 optional: the baseline's processed labels

Test items without a label file are unlabelled; test3 labels carry no valence.
"""

from __future__ import annotations

import io
import math
import pickle
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.datasets.base import SPLITS, Adapter, Candidate, iter_csv
from pipeline.errors import InputError, MissingInput
from pipeline.inputs import NUMPY_READ_ERRORS
from pipeline.labels import PLACEHOLDER_VALENCE

VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".flv", ".webm"}


@dataclass(frozen=True)
class Mer2023Config:
    pass


class Mer2023Adapter(Adapter):
    """The MER 2023 release folder: train/ and test1-3/ videos, label CSVs or label-6way.npz, transcription.csv."""

    name = "mer2023"
    Config = Mer2023Config

    def read(self, root: Path) -> Iterator[Candidate]:
        return read_mer2023(root)


def read_mer2023(root: Path) -> Iterator[Candidate]:
    if not (root / "train").is_dir():
        raise MissingInput(f"{root}/train/ not found: prepare.root must point at the MER 2023 release folder")
    labels = _labels(root)
    transcripts = _transcripts(root / "transcription.csv")
    for split in SPLITS:
        for video in sorted((root / split).glob("*")) if (root / split).is_dir() else []:
            if video.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            name = video.stem
            emo, val = labels.get((split, name), (None, None))
            yield Candidate(
                sample_id=name, split=split, path=f"{split}/{video.name}",
                label=emo, valence=val, transcript=transcripts.get(name),
            )


def _labels(root: Path) -> dict[tuple[str, str], tuple[str | None, float | None]]:
    labels: dict[tuple[str, str], tuple[str | None, float | None]] = {}
    npz = root / "label-6way.npz"
    if npz.is_file():
        for split, corpus in read_label_npz(npz).items():
            for name, item in corpus.items():
                if float(item["val"]) == PLACEHOLDER_VALENCE and item["emo"] == "neutral":
                    continue  # the baseline's placeholder for an unlabelled item
                labels[(split, name)] = (item["emo"], float(item["val"]))
    for split in SPLITS:
        csv = root / f"{split}-label.csv"
        if csv.is_file():
            for row in iter_csv(csv, ("name", "discrete")):
                labels[(split, row["name"])] = (row["discrete"], row.get("valence"))
    return labels


def _transcripts(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    # A row that exists with NaN means "ASR gave nothing": an empty transcript, not a missing one.
    return {row["name"]: (row.get("sentence") or "") for row in iter_csv(path, ("name",))}


class _LabelUnpickler(pickle.Unpickler):
    """Admits only numpy's array reconstruction; the payload must then be dicts of strings and numbers."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy", "ndarray"), ("numpy", "dtype"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a label file holds only arrays, "
                                         "dicts, strings and numbers")
        return super().find_class(module, name)


def read_label_npz(path: Path) -> dict[str, dict[str, dict]]:
    """`label-6way.npz` as {split: {name: {'emo': str, 'val': float}}}, without a bare allow_pickle; a file
    that is not that is an InputError naming it and what it holds."""
    def split_of(member: str) -> str:
        return member.removesuffix(".npy").removesuffix("_corpus")

    try:
        with zipfile.ZipFile(path) as zf:
            members = {m: zf.read(m) for m in zf.namelist() if split_of(m) in SPLITS}
    except (zipfile.BadZipFile, EOFError, NotImplementedError, OSError, ValueError, zlib.error) as err:
        raise InputError(f"{path}: not a readable .npz (zip) archive ({err}): {EXPECTED}") from err
    return {split_of(m): _checked_corpus(_load_member(raw, f"{path}:{m}"), f"{path}:{m}") for m, raw in members.items()}


EXPECTED = ("expected the MER 2023 baseline's label file: per split a <split>_corpus.npy holding a pickled dict "
            "{name: {'emo': label, 'val': valence}}; replace the file or delete it to use the label CSVs")


def _load_member(data: bytes, where: str):
    """One member's pickled object, refusing every class but numpy's arrays."""
    raw = io.BytesIO(data)
    try:
        major, _ = np.lib.format.read_magic(raw)
        read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, dtype = read_header(raw)
    except NUMPY_READ_ERRORS as err:
        raise InputError(f"{where}: not a .npy array ({err}): {EXPECTED}") from err
    if dtype.kind != "O" or shape != ():
        raise InputError(f"{where}: holds an array of {dtype} and shape {shape}, not a pickled dict: {EXPECTED}")
    try:
        array = _LabelUnpickler(raw).load()
    except Exception as err:   # a refused class, or a damaged stream: that raises nearly anything (pickle's docs)
        raise InputError(f"{where}: cannot be unpickled ({type(err).__name__}: {err}): {EXPECTED}") from err
    return array.item() if isinstance(array, np.ndarray) and array.shape == () else array


def _checked_corpus(corpus, where: str) -> dict[str, dict]:
    if not isinstance(corpus, dict):
        raise InputError(f"{where}: holds a {type(corpus).__name__}, not a dict: {EXPECTED}")
    for name, item in corpus.items():
        if not (isinstance(name, str) and isinstance(item, dict) and isinstance(item.get("emo"), str)
                and _number(item.get("val"))):
            raise InputError(f"{where}: malformed entry {name!r}: {item!r}; each must be "
                             f"{{'emo': label, 'val': valence}}")
    return corpus


def _number(value) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return not math.isnan(float(value))   # inf is a row's reject (valence out of range)
    except OverflowError:   # an int beyond any float
        return False
