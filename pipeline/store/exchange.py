"""Features in and out of a feature store: HDF5, and the MER 2023 baseline's folder layout.

The baseline (and the features the challenge community shares) keeps one `<name>.npy` per sample in
`features/<FEATURE_NAME>/`: a 1-D utterance vector, or a 2-D [T, D] frame matrix. Imported features
are keyed by sample id, since no media content produced them here; a 2-D matrix is kept as the
entry's frame sequence and its mean over frames is the utterance vector, as the baseline's loader
averages it. Values are stored as float32, so float32 files round-trip exactly.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import InputError, MissingInput
from pipeline.inputs import NUMPY_READ_ERRORS
from pipeline.modalities import MODALITIES
from pipeline.progress import tracked
from pipeline.store.features import FeatureStore, Identity
from pipeline.store.lock import store_lock
from pipeline.store.media import MediaStore

LEVELS = {"utterance": "UTT", "frame": "FRA"}
IMPORTED = "imported"


def named_keys(store: FeatureStore, view: Path | None) -> dict[str, list[str]]:
    """cache key -> sample names: from a media view, or from the names an imported store holds."""
    ident = store.identity()
    if view is not None:
        rows = MediaStore(view).view()
        keys = ident.cache_keys(rows[ident.column])
        pairs = zip(keys, rows["sample_id"])
    else:
        index = store.index()
        pairs = zip(index["cache_key"], index["name"])
    names: dict[str, list[str]] = {}
    for key, name in pairs:
        if isinstance(key, str) and name:
            names.setdefault(key, []).append(name)
    if not names:
        raise InputError(f"{store.root}: no sample names to export under: pass the media view the "
                         f"features were encoded from (--view)")
    return names


def export_npy(store: FeatureStore, out: Path, view: Path | None = None, level: str = "utterance",
               feature_name: str = "") -> Path:
    """Write out/features/<FEATURE_NAME>/<name>.npy per present sample; returns the folder."""
    check_level(level)
    names = named_keys(store, view)
    folder = Path(out) / "features" / (feature_name or f"{store.root.stem}-{LEVELS[level]}")
    folder.mkdir(parents=True, exist_ok=True)
    for entry in tracked(store.entries(), f"export {folder.name}", "item"):
        if entry.utt is None or entry.cache_key not in names:
            continue
        if level == "frame" and entry.frames is None:
            raise InputError(f"{store.root}: entry {names[entry.cache_key][0]} has no frame-level "
                             f"features: export level 'utterance'")
        for name in names[entry.cache_key]:
            np.save(folder / f"{name}.npy", entry.utt if level == "utterance" else entry.frames)
    return folder


def export_hdf5(store: FeatureStore, out: Path, view: Path | None = None) -> Path:
    """One HDF5 file: names, utterance [N, D], frames [sum T, D] with frame_offsets [N + 1] when the
    store has sequences, the missing samples with their reasons, and the store's identity as JSON."""
    import h5py

    names = named_keys(store, view)
    got, utt, seqs, missing = [], [], [], []
    for entry in store.entries():
        for name in names.get(entry.cache_key, []):
            if entry.utt is None:
                missing.append((name, entry.reason))
                continue
            got.append(name)
            utt.append(entry.utt)
            seqs.append(entry.frames)
    order = np.argsort(got, kind="stable")
    dim = int(store.meta()["dim"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(out, "w") as h5:
        h5.attrs["identity"] = json.dumps(store.meta()["identity"], sort_keys=True)
        h5.attrs["dim"] = dim
        text = h5py.string_dtype()
        h5.create_dataset("names", data=[got[i] for i in order], dtype=text)
        h5["utterance"] = np.stack([utt[i] for i in order]) if got else np.zeros((0, dim), np.float32)
        if got and all(s is not None for s in seqs):
            lengths = [len(seqs[i]) for i in order]
            h5["frames"] = np.concatenate([seqs[i] for i in order])
            h5["frame_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        missing.sort()
        h5.create_dataset("missing_names", data=[m[0] for m in missing], dtype=text)
        h5.create_dataset("missing_reasons", data=[m[1] for m in missing], dtype=text)
    return Path(out)


def import_npy(folder: Path, modality: str, out: Path, items_per_part: int = 1024, replace: bool = False) -> dict:
    """Read a features/<FEATURE_NAME>/ folder of <name>.npy files into a feature store keyed by
    sample id. Non-finite or empty arrays become missing entries with their reason.

    The store is built beside `out` and swapped in whole once every file has been read, so a re-import
    holds each sample once with its newest value and a failed import leaves `out` as it was. A store of
    another identity (an encoder's, or the import of another folder or modality) is only replaced when
    `replace` is given."""
    folder, out = Path(folder), Path(out)
    if modality not in MODALITIES:
        raise InputError(f"modality {modality!r}: use one of {sorted(MODALITIES)}")
    files = sorted(f for f in folder.glob("*.npy") if f.is_file())
    if not files:
        raise MissingInput(f"{folder}: no .npy files (expected features/<FEATURE_NAME>/<name>.npy)")
    ident = Identity(IMPORTED, "1", modality, {"source": folder.name}, {}, keyed_by="sample_id")
    with store_lock(out):
        _check_target(out, ident, folder, replace)
        building = out.parent / f".{out.name}.importing"
        shutil.rmtree(building, ignore_errors=True)
        try:
            summary = _write_store(files, ident, building, items_per_part)
            _swap_in(building, out)
        finally:
            shutil.rmtree(building, ignore_errors=True)
    return summary | {"imported": len(files), "store": str(out)}


def _check_target(out: Path, ident: Identity, folder: Path, replace: bool) -> None:
    """Refuse to overwrite a store that is not an earlier import of this same folder and modality."""
    if not out.exists() or replace:
        return
    store = FeatureStore(out)
    if not (out / FeatureStore.META).is_file():
        raise InputError(f"{out} exists and is not a feature store: choose another --out, or pass --replace to "
                         f"delete it and import {folder} there")
    held = store.identity()
    if held != ident:   # the whole identity: the cache key leaves out the modality
        raise InputError(f"{out} holds {held.modality} features of {held.encoder!r} "
                         f"({held.config.get('source', held.config)}), not an import of {folder.name} as "
                         f"{ident.modality}: choose another --out, or pass --replace to delete that store")


def _write_store(files: list[Path], ident: Identity, path: Path, items_per_part: int) -> dict:
    dim = _read(files[0])[0].shape[-1]
    store = FeatureStore(path).create(ident, int(dim))
    missing = 0
    for start in tracked(range(0, len(files), items_per_part), f"import {ident.config['source']}", "part"):
        chunk = files[start:start + items_per_part]
        read = [_read(f, dim) for f in chunk]
        names = [f.stem for f in chunk]
        keys = list(ident.cache_keys(pd.Series(names)))
        store.write(keys, [r[1] for r in read], [r[3] for r in read], int(dim),
                    frames=[r[2] for r in read], names=names)
        missing += sum(r[1] is None for r in read)
    return {"missing": missing, "dim": int(dim)}


def _swap_in(new: Path, out: Path) -> None:
    """Replace `out` by `new` with renames: a reader sees the old store or the new one, never a mix."""
    old = out.parent / f".{out.name}.replaced"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _read(path: Path, dim: int | None = None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """(array, utterance vector, frames, reason); vector None with a reason when unusable."""
    try:
        array = np.load(path, allow_pickle=False)
    except NUMPY_READ_ERRORS as err:   # not .npy, cut short, a damaged header, an object array
        why = err if _is_npy(path) else "not a NumPy .npy file (a text or other file named .npy?)"
        raise InputError(f"{path}: {why}; {NPY_FIX}") from err
    if array.dtype.kind not in "biuf":
        raise InputError(f"{path}: holds {array.dtype} values, not numbers; {NPY_FIX}")
    if array.ndim not in (1, 2) or array.shape[-1] == 0 or (dim is not None and array.shape[-1] != dim):
        raise InputError(f"{path}: shape {array.shape}; expected [D] or [T, D] with D >= 1"
                         + (f" and D = {dim} like the folder's first file" if dim is not None else ""))
    with np.errstate(over="ignore"):   # beyond float32: inf, reported below
        array = array.astype(np.float32, copy=False)
    frames = array if array.ndim == 2 else None
    if array.ndim == 2 and len(array) == 0:
        return array, None, None, "no frames"
    if not np.isfinite(array).all():
        return array, None, None, "NaN or inf in the file"
    return array, array.mean(0) if frames is not None else array, frames, ""


NPY_FIX = "expected a float (or int) array saved with numpy.save: re-export the file or move it out of the folder"


def _is_npy(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def check_level(level: str) -> None:
    if level not in LEVELS:
        raise InputError(f"level {level!r}: use one of {sorted(LEVELS)}")
