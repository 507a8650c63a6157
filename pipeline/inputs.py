"""Reading what one stage hands the next (the manifest, predictions, metrics JSON): a missing file is a
MissingInput and a damaged or foreign one an InputError, each naming the file and the command that writes it."""

from __future__ import annotations

import json
import tokenize
from pathlib import Path

import pandas as pd
import pyarrow

from pipeline.errors import InputError, require

PREPARE = "`mer prepare` (dvc repro prepare)"
TRAIN = "`mer train` (dvc repro train)"
PSEUDOLABEL = "`mer pseudolabel ROUND` (dvc repro pseudolabel)"
MANIFEST_NEEDS = ("sample_id", "split")
PREDICTIONS_NEED = ("subset", "seed", "test", "sample_id", "valence")
# What numpy raises on a damaged .npy: the header is parsed with ast and tokenize, the data sized from it.
NUMPY_READ_ERRORS = (ValueError, EOFError, OSError, SyntaxError, tokenize.TokenError, MemoryError)


def read_table(path: Path, made_by: str, columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """The Parquet table at `path`, holding at least `columns`."""
    require(path, made_by)
    try:
        frame = pd.read_parquet(path)
    except (pyarrow.ArrowException, OSError, ValueError) as err:
        raise InputError(f"{path}: not a readable Parquet table ({err}): run {made_by} again") from err
    _check_has(path, made_by, "column", columns, frame.columns)
    return frame


def read_manifest(path: Path) -> pd.DataFrame:
    return read_table(path, PREPARE, MANIFEST_NEEDS)


def read_record(path: Path, made_by: str, keys: tuple[str, ...] = ()) -> dict:
    """The JSON object at `path`, holding at least `keys`."""
    require(path, made_by)
    try:
        record = json.loads(Path(path).read_text())
    except (ValueError, OSError) as err:   # not JSON, not UTF-8, a folder
        raise InputError(f"{path}: not readable JSON ({err}): run {made_by} again") from err
    if not isinstance(record, dict):
        raise InputError(f"{path}: holds a JSON {type(record).__name__}, not an object: run {made_by} again")
    _check_has(path, made_by, "key", keys, record)
    return record


def _check_has(path: Path, made_by: str, what: str, wanted: tuple[str, ...], have) -> None:
    missing = [k for k in wanted if k not in have]
    if missing:
        raise InputError(f"{path}: no {what} {', '.join(map(repr, missing))}, so not what {made_by} writes: "
                         f"pass the file it wrote, or run it again")
