"""Property-based fuzzing of the readers of files a user hands the pipeline: CSV manifests, MER 2023 label
files (npz and CSV), `.npy` feature imports, checkpoints and params.yaml sections.

The property, for every reader: whatever the input (random bytes, a valid file cut short or with bytes
changed, a well-formed file holding the wrong things), it returns a usable result or raises a MerError,
which the CLI prints as a message without a traceback. Any other exception is a cause a user would meet
as a traceback: Hypothesis shrinks it to a minimal file and prints it.

The default run tries a bounded number of inputs per reader; `-m slow` runs the deep profile.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from media_fixtures import write_clip

from pipeline.errors import MerError

QUICK, DEEP = 40, 1500   # inputs per reader: default run, `-m slow`


def fuzz(examples: int):
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def returns_or_refuses(read, *args):
    """read(*args), or None where it refused the input with a MerError; anything else propagates."""
    try:
        result = read(*args)
    except MerError as err:
        event(f"refused: {type(err).__name__}")   # `--hypothesis-show-statistics` shows how inputs end
        return None
    event("read")
    return result


@contextmanager
def folder():
    with tempfile.TemporaryDirectory(prefix="fuzz-") as tmp:
        yield Path(tmp)


# --- inputs ---------------------------------------------------------------------------------------------

# Bytes that matter to the formats read here: CSV structure, NUL, not UTF-8, a BOM, zip and npy magic.
SPECIAL = st.sampled_from([b'"', b",", b"\n", b"\r", b"\x00", b"\xe9", b"\xff\xfe", b"\xef\xbb\xbf", b"PK\x03\x04",
                           b"\x93NUMPY", b"\\", b"{", b"]", b"-1e999"])


@st.composite
def damaged(draw, original: bytes) -> bytes:
    """`original` cut short, or with bytes changed, inserted or deleted (one to four edits)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        edit = draw(st.sampled_from(["cut", "change", "insert", "delete"]))
        if edit == "cut":
            del data[at:]
        elif edit == "change" and data:
            data[at] = draw(st.integers(0, 255))
        elif edit == "insert":
            data[at:at] = draw(SPECIAL | st.binary(min_size=1, max_size=8))
        else:
            del data[at:at + draw(st.integers(1, 16))]
    return bytes(data)


def files(original: bytes) -> st.SearchStrategy[bytes]:
    """A damaged copy of a valid file, the valid file itself, or bytes with no relation to it."""
    return st.one_of(damaged(original), st.just(original), st.binary(max_size=300))


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
TREES = st.recursive(SCALARS, lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids,
                                                                                         max_size=3), max_leaves=8)


def paths(tree, prefix=()):
    """Every (path, value) inside a JSON-like tree, through dicts and lists."""
    yield prefix, tree
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        yield from paths(value, (*prefix, key))


@st.composite
def rewritten(draw, tree):
    """A deep copy of `tree` with one value replaced by an arbitrary one, or deleted."""
    tree = json.loads(json.dumps(tree))
    path, _ = draw(st.sampled_from(list(paths(tree))[1:]))
    parent = tree
    for key in path[:-1]:
        parent = parent[key]
    if draw(st.booleans()):
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(TREES)
    return tree


# --- CSV manifests (the csv adapter, through the whole prepare stage) -----------------------------------

MANIFEST = (b"path,split,label,valence,transcript,speaker\n"
            b"a.mp4,train,happy,1.5,\"hello, there\",s1\n"
            b",test1,sad,,text only,s2\n"
            b"a.mp4,test3,,,\"a \"\"quoted\"\" word\nover two lines\",\n")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return write_clip(tmp_path_factory.mktemp("clip") / "a.mp4", seconds=0.4, fps=5, size=64).read_bytes()


def prepare_csv(clip: bytes, manifest: bytes):
    from pipeline.config import PrepareConfig
    from pipeline.datasets.prepare import prepare

    with folder() as root:
        (root / "a.mp4").write_bytes(clip)
        (root / "manifest.csv").write_bytes(manifest)
        cfg = PrepareConfig(adapter="csv", root=str(root), options={"manifest": "manifest.csv"}, max_reject_rate=1.0)
        result = returns_or_refuses(prepare, cfg, root / "out" / "manifest.parquet", root / "out" / "rejects.csv")
        if result is not None:
            result.summary()
        return result


def csv_manifest_property(examples: int, clip: bytes):
    @fuzz(examples)
    @given(manifest=files(MANIFEST))
    def check(manifest):
        prepare_csv(clip, manifest)
    return check


# --- MER 2023 labels: label-6way.npz, train-label.csv, transcription.csv ----------------------------------

def npz_bytes(members: dict) -> bytes:
    raw = io.BytesIO()
    np.savez(raw, **members)
    return raw.getvalue()


def object_array(value) -> np.ndarray:
    array = np.empty((), dtype=object)
    array[()] = value
    return array


GOOD_CORPUS = {"sample_00000001": {"emo": "happy", "val": 1.5}, "sample_00000002": {"emo": "neutral", "val": -10.0}}
LABEL_NPZ = npz_bytes({"train_corpus": object_array(GOOD_CORPUS), "test1_corpus": object_array({})})
LABEL_CSV = b"name,discrete,valence\nsample_00000001,happy,1.5\nsample_00000002,sad,-2\n"
TRANSCRIPTS = "name,sentence\nsample_00000001,我很开心\nsample_00000002,\n".encode()

LABEL_NPZS = st.one_of(
    files(LABEL_NPZ),
    st.dictionaries(st.sampled_from(["train_corpus", "test1_corpus", "test3_corpus", "train", "notes"]),
                    st.one_of(TREES.map(object_array), rewritten(GOOD_CORPUS).map(object_array),
                              hnp.arrays(hnp.scalar_dtypes(), hnp.array_shapes(min_dims=0, max_dims=2))),
                    min_size=1, max_size=3).map(npz_bytes))


def read_mer2023_release(clip: bytes, npz: bytes, label_csv: bytes, transcripts: bytes):
    from pipeline.datasets import validate
    from pipeline.datasets.mer2023 import read_mer2023
    from pipeline.labels import MER_LABELS

    with folder() as root:
        (root / "train").mkdir()
        for name in ("sample_00000001", "sample_00000002"):
            (root / "train" / f"{name}.mp4").write_bytes(clip)
        (root / "label-6way.npz").write_bytes(npz)
        (root / "train-label.csv").write_bytes(label_csv)
        (root / "transcription.csv").write_bytes(transcripts)
        return returns_or_refuses(lambda: validate(read_mer2023(root), root, MER_LABELS, {}))


def mer2023_labels_property(examples: int, clip: bytes):
    @fuzz(examples)
    @given(npz=LABEL_NPZS, label_csv=files(LABEL_CSV), transcripts=files(TRANSCRIPTS))
    def check(npz, label_csv, transcripts):
        read_mer2023_release(clip, npz, label_csv, transcripts)
    return check


# --- .npy feature imports ---------------------------------------------------------------------------------

def npy_bytes(array: np.ndarray) -> bytes:
    raw = io.BytesIO()
    np.save(raw, array, allow_pickle=True)
    return raw.getvalue()


ANY_DTYPE = st.one_of(hnp.scalar_dtypes(), hnp.byte_string_dtypes(), hnp.unicode_string_dtypes(),
                      hnp.array_dtypes(max_size=2))
NPY_FILES = st.one_of(
    files(npy_bytes(np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3))),
    hnp.arrays(ANY_DTYPE, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)).map(npy_bytes),
    TREES.map(object_array).map(npy_bytes))


def import_files(contents: list[bytes]):
    from pipeline.store.exchange import import_npy
    from pipeline.store.features import FeatureStore

    with folder() as tmp:
        (tmp / "feats").mkdir()
        for i, data in enumerate(contents):
            (tmp / "feats" / f"s{i}.npy").write_bytes(data)
        summary = returns_or_refuses(import_npy, tmp / "feats", "audio", tmp / "f.zarr")
        if summary is not None:   # what it wrote reads back: one entry per file, vectors of the summary's size
            entries = list(FeatureStore(tmp / "f.zarr").entries())
            assert len(entries) == len(contents)
            assert all(e.utt is None or e.utt.shape == (summary["dim"],) for e in entries)
        return summary


def npy_import_property(examples: int):
    @fuzz(examples)
    @given(contents=st.lists(NPY_FILES, min_size=1, max_size=3))
    def check(contents):
        import_files(contents)
    return check


# --- checkpoints ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A small trained checkpoint of each model family (two modalities, z-scored features)."""
    import pandas as pd

    from pipeline.config import FusionParams, LightGBMParams, TrainConfig
    from pipeline.store.features import FeatureStore, Identity
    from pipeline.training import checkpoint
    from pipeline.training.data import Table, standardize
    from pipeline.training.run import run_subset

    root = tmp_path_factory.mktemp("checkpoints")
    rng = np.random.default_rng(0)
    dims, n = {"audio": 3, "visual": 2}, 16
    rows = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "split": "train",
                         "label": ["happy", "sad"] * (n // 2), "valence": rng.normal(size=n)})
    tables = standardize({"train": Table(rows, {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in dims.items()},
                                         {m: np.ones(n, bool) for m in dims}, labels=("happy", "sad"))})
    records = {}
    for modality, dim in dims.items():
        FeatureStore(root / f"{modality}.zarr").create(Identity(f"enc-{modality}", "1", modality, {}, {}), dim)
        records[modality] = checkpoint.feature_record(f"enc-{modality}", root / f"{modality}.zarr")
    out = {}
    for model in ("fusion", "lightgbm"):
        cfg = TrainConfig(model=model, features={"audio": "a", "visual": "v"}, folds=2,
                          fusion=FusionParams(epochs=2, hidden=(4,)), feature_norm="standard",
                          lightgbm=LightGBMParams(n_estimators=2, min_child_samples=1))
        result, _ = run_subset(tables, "AV", cfg, seed=0)
        out[model] = checkpoint.save(root / model, result, records, tables["train"].norm, tables["train"].labels)
    return out


def load_damaged(original: Path, name: str, data: bytes):
    """Load a copy of checkpoint `original` whose file `name` holds `data`; a loaded one must predict."""
    from pipeline.training import checkpoint
    from pipeline.training.cv import TestSet

    with folder() as tmp:
        ckpt = Path(shutil.copytree(original, tmp / "ckpt"))
        (ckpt / name).write_bytes(data)
        loaded = returns_or_refuses(checkpoint.load, ckpt)
        if loaded is not None:
            loaded.check_features(loaded.features)
            dims = {m: loaded.features[m]["dim"] for m in loaded.modalities}
            pred = loaded.predict(TestSet({m: np.zeros((2, d), np.float32) for m, d in dims.items()}))
            assert pred.probs.shape == (2, len(loaded.labels))
        return loaded


@st.composite
def damaged_checkpoint(draw, checkpoints: dict[str, Path]) -> tuple[Path, str, bytes]:
    """(checkpoint, one of its files, what that file holds now): bytes damaged, or JSON with a value changed."""
    from pipeline.training.checkpoint import META
    from pipeline.training.families import FAMILIES

    model = draw(st.sampled_from(sorted(checkpoints)))
    name = draw(st.sampled_from([META, FAMILIES[model].FILE]))
    original = (checkpoints[model] / name).read_bytes()
    if name.endswith(".json") and draw(st.booleans()):
        return checkpoints[model], name, json.dumps(draw(rewritten(json.loads(original)))).encode()
    return checkpoints[model], name, draw(files(original))


def checkpoint_property(examples: int, checkpoints: dict[str, Path]):
    @fuzz(examples)
    @given(data=st.data())
    def check(data):
        load_damaged(*data.draw(damaged_checkpoint(checkpoints)))
    return check


# --- params.yaml sections ---------------------------------------------------------------------------------

def section_keys() -> dict[str, list[str]]:
    from pipeline.config import SECTIONS

    return {name: [f.name for f in dataclasses.fields(cls)] for name, cls in SECTIONS.items()}


@st.composite
def params_text(draw) -> bytes:
    """A params.yaml: sections of real keys with arbitrary values, or damaged YAML."""
    keys = section_keys()
    if draw(st.integers(0, 4)) == 0:
        return draw(files(b"train:\n  lr: 0.001\n  hidden: [16, 8]\nprepare:\n  labels: [happy, sad]\n"))
    sections = draw(st.dictionaries(st.sampled_from(sorted(keys)), st.none(), min_size=1, max_size=3))
    for name in sections:
        sections[name] = draw(st.dictionaries(st.sampled_from(keys[name]), TREES, max_size=3) | TREES)
    return yaml.safe_dump(sections, allow_unicode=True).encode()


def load_every_section(text: bytes) -> dict:
    from pipeline.config import SECTIONS, load_section

    with folder() as tmp:
        (tmp / "params.yaml").write_bytes(text)
        return {name: returns_or_refuses(load_section, name, tmp / "params.yaml") for name in SECTIONS}


def params_property(examples: int):
    @fuzz(examples)
    @given(text=params_text())
    def check(text):
        load_every_section(text)
    return check


# --- the runs ---------------------------------------------------------------------------------------------

PROPERTIES = {"csv-manifest": (csv_manifest_property, ("clip",)), "mer2023-labels": (mer2023_labels_property, ("clip",)),
              "npy-import": (npy_import_property, ()), "checkpoint": (checkpoint_property, ("checkpoints",)),
              "params": (params_property, ())}


def run_property(name: str, examples: int, request) -> None:
    make, fixtures = PROPERTIES[name]
    make(examples, *(request.getfixturevalue(f) for f in fixtures))()


@pytest.mark.parametrize("name", PROPERTIES)
def test_reader_returns_a_result_or_a_mer_error(name, request):
    run_property(name, QUICK, request)


@pytest.mark.slow
@pytest.mark.parametrize("name", PROPERTIES)
def test_reader_returns_a_result_or_a_mer_error_deep(name, request):
    run_property(name, DEEP, request)
