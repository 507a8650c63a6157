"""Bad input and faults, as a careful user (or an attacker) meets them: each case asserts the message or
the recorded reason a user acts on, and that nothing else was lost. Commands run as real `mer`
subprocesses where the exit code and what reaches the terminal are the point."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from media_fixtures import write_clip
from test_stage_paths import path_args

from pipeline.fingerprint import file_sha256
from pipeline.store.features import FeatureStore, Identity
from pipeline.store.lock import lock_paths, store_lock
from pipeline.store.media import MediaStore

BIN = Path(sys.executable).parent


def mer(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed `mer` command; never raises on a non-zero exit."""
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"} | (env or {})
    return subprocess.run([str(BIN / "mer"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def params_file(path: Path, sections: dict) -> Path:
    path.write_text(yaml.safe_dump(sections))
    return path


# --- errors a user can act on -------------------------------------------------------------------------

def test_expected_error_prints_its_message_without_traceback(tmp_path):
    params = params_file(tmp_path / "params.yaml", {"train": {"lrr": 0.1}})
    done = mer("train", "--params", str(params), *path_args("train", tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "mer train: error: train: unknown key(s) ['lrr']" in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 3


@pytest.mark.parametrize("how", [("--debug",), ()])
def test_debug_shows_the_traceback(tmp_path, how):
    params = params_file(tmp_path / "params.yaml", {"train": {"lrr": 0.1}})
    done = mer(*how, "train", "--params", str(params), *path_args("train", tmp_path),
               env={} if how else {"MER_DEBUG": "1"})
    assert done.returncode != 0
    assert "Traceback" in done.stderr and "ConfigError: train: unknown key(s)" in done.stderr


def test_missing_params_file_names_it(tmp_path):
    done = mer("prepare", "--params", str(tmp_path / "nope.yaml"), *path_args("prepare", tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'nope.yaml'}: no such params file" in done.stderr


def test_every_user_facing_error_has_one_root():
    from pipeline.config import ConfigError
    from pipeline.datasets.prepare import TooManyRejects
    from pipeline.errors import MerError, StoreLocked
    from pipeline.failures import TooManyFailures
    from pipeline.media.decode import MediaError
    from pipeline.registry import Unavailable
    from pipeline.reporting.diff import UnknownRevision
    from pipeline.training.checkpoint import FeatureMismatch

    for cls in (ConfigError, TooManyRejects, Unavailable, StoreLocked, TooManyFailures, MediaError,
                UnknownRevision, FeatureMismatch):
        assert issubclass(cls, MerError), cls
    assert issubclass(ConfigError, ValueError) and issubclass(TooManyFailures, RuntimeError)  # old catches hold


# --- one writer per store -----------------------------------------------------------------------------

HOLD = """
import sys, time
from pipeline.store.lock import store_lock
with store_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(600)
"""


def hold_lock(store: Path) -> subprocess.Popen:
    """Another process holding the store's writer lock."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_writer_fails_at_once_naming_store_and_holder(tmp_path):
    store = tmp_path / "media.zarr"
    holder = hold_lock(store)
    try:
        params = params_file(tmp_path / "params.yaml", {"prepare": {"root": str(tmp_path)}})
        start = time.monotonic()
        done = mer("extract", "--params", str(params), "--manifest", str(tmp_path / "none.parquet"),
                   "--store", str(store), "--failures", str(tmp_path / "f.jsonl"), "--faces", str(tmp_path / "faces.json"))
        assert time.monotonic() - start < 30          # it does not wait for the holder
        assert done.returncode == 75, done.stderr
        assert "Traceback" not in done.stderr
        assert str(store) in done.stderr and f"PID {holder.pid}" in done.stderr
        assert not store.exists()                     # the refused writer touched nothing
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_writer_is_taken_over(tmp_path):
    store = tmp_path / "media.zarr"
    holder = hold_lock(store)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock_paths(store)[1].exists()              # its holder file is left behind, as after kill -9
    with store_lock(store):
        assert json.loads(lock_paths(store)[1].read_text())["pid"] == os.getpid()
    assert not lock_paths(store)[1].exists()


# --- workers die with their parent --------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """Eight generated talking-face clips and their manifest from the real prepare stage."""
    from pipeline.config import DemoConfig, PrepareConfig
    from pipeline.datasets.prepare import prepare
    from pipeline.demo import generate_corpus

    root = tmp_path_factory.mktemp("demo")
    spec = DemoConfig(n_train=8, n_test1=0, n_test2=0, n_test3_labelled=0, n_unlabelled=0)
    generate_corpus(root, spec, progress=False, workers=1)
    prepare(PrepareConfig(root=str(root)), root / "manifest.parquet", root / "rejects.csv")
    return root


def pool_workers(parent) -> list:
    """The pool's worker processes (multiprocessing's resource tracker is not one)."""
    return [p for p in parent.children(recursive=True)
            if "spawn_main" in " ".join(p.cmdline()) and "resource_tracker" not in " ".join(p.cmdline())]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_workers_do_not_outlive_a_killed_extract(demo, tmp_path, sig):
    import psutil

    params = params_file(tmp_path / "params.yaml", {"prepare": {"root": str(demo)},
                                                    "extract": {"workers": 2, "clips_per_part": 1}})
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.Popen([str(BIN / "mer"), "extract", "--params", str(params), "--manifest",
                            str(demo / "manifest.parquet"), "--store", str(tmp_path / "media.zarr"),
                            "--failures", str(tmp_path / "f.jsonl"), "--faces", str(tmp_path / "faces.json")], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(run.pid)
    deadline = time.monotonic() + 120
    while len(workers := pool_workers(parent)) < 2:
        assert run.poll() is None and time.monotonic() < deadline, "the pool never started two workers"
        time.sleep(0.05)
    run.send_signal(sig)           # the parent only, not its process group
    run.wait(timeout=60)
    gone, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == [], f"workers outlived their parent: {[p.pid for p in alive]}"
    assert len(gone) == 2


# --- content checked where it is read -----------------------------------------------------------------

def csv_corpus(root: Path, rows: list[dict], text: str | None = None) -> Path:
    """A corpus for the csv adapter: its manifest.csv from rows (or raw text) and the params to prepare it."""
    root.mkdir(parents=True, exist_ok=True)
    if text is None:
        pd.DataFrame(rows).to_csv(root / "manifest.csv", index=False)
    else:
        (root / "manifest.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    return params_file(root / "params.yaml", {"prepare": {"adapter": "csv", "root": str(root),
                                                          "options": {"manifest": "manifest.csv"}, "max_reject_rate": 1.0}})


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, bytes]:
    """Two short clips with different content."""
    folder = tmp_path_factory.mktemp("clips")
    return {name: write_clip(folder / f"{name}.mp4", seconds=seconds, fps=5, size=64).read_bytes()
            for name, seconds in (("a", 0.4), ("b", 0.6))}


def test_clip_changed_after_prepare_is_refused_not_cached(tmp_path, clips):
    from pipeline.config import ExtractConfig, load_section
    from pipeline.datasets.prepare import prepare
    from pipeline.extract import extract

    root = tmp_path / "corpus"
    root.mkdir()
    for name, data in clips.items():
        (root / f"{name}.mp4").write_bytes(data)
    params = csv_corpus(root, [{"path": f"{n}.mp4", "split": "train", "label": "happy"} for n in clips])
    manifest = prepare(load_section("prepare", params), tmp_path / "m.parquet", tmp_path / "r.csv").manifest
    (root / "a.mp4").write_bytes(clips["b"])                  # replaced after prepare
    cfg, store = ExtractConfig(workers=1), tmp_path / "media.zarr"
    summary, failures = extract(manifest, root, store, cfg)
    assert [(f["sample_id"], f["step"]) for f in failures] == [("a", "changed")]
    assert "a.mp4 changed since prepare" in failures[0]["message"] and "re-run prepare" in failures[0]["message"]
    assert list(MediaStore(store).index()["sample_id"]) == ["b"]   # nothing cached under a's old hash
    (root / "a.mp4").write_bytes(clips["a"])                  # restored: extracted as the original
    summary, failures = extract(manifest, root, store, cfg)
    assert failures == [] and summary["processed"] == 1
    a = MediaStore(store).index().set_index("sample_id")
    assert a.loc["a", "audio_len"] != a.loc["b", "audio_len"]      # its own content, not b's


# --- bad text is a row-level reject -------------------------------------------------------------------

def prepare_cli(params: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return mer("prepare", "--params", str(params), "--manifest", str(tmp_path / "out" / "manifest.parquet"),
               "--rejects", str(tmp_path / "out" / "rejects.csv"))


def corpus_with(tmp_path: Path, clips: dict[str, bytes], text: bytes) -> Path:
    root = tmp_path / "corpus"
    root.mkdir()
    for name, data in clips.items():
        (root / f"{name}.mp4").write_bytes(data)
    return csv_corpus(root, [], text=text)


def test_non_utf8_bytes_in_the_manifest_reject_that_row_only(tmp_path, clips):
    params = corpus_with(tmp_path, clips, b"path,split,label,transcript\na.mp4,train,happy,hello\n"
                                          b"b.mp4,train,sad,caf\xe9 cr\xe8me\n")
    done = prepare_cli(params, tmp_path)
    assert done.returncode == 0, done.stderr
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert list(manifest["sample_id"]) == ["a"] and manifest["transcript"].iloc[0] == "hello"
    assert rejects["reason"].tolist() == ["line 3: not valid UTF-8 (another encoding?): save manifest.csv as UTF-8"]


def test_non_utf8_header_is_an_error_naming_the_file(tmp_path, clips):
    params = corpus_with(tmp_path, clips, b"path,split,label,r\xe9sum\xe9\na.mp4,train,happy,x\n")
    done = prepare_cli(params, tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "manifest.csv: line 1 (the header) is not valid UTF-8" in done.stderr


def test_trailing_comma_rows_are_rejected_not_shifted(tmp_path, clips):
    params = corpus_with(tmp_path, clips, b"path,split,label\na.mp4,train,happy,\nb.mp4,train,sad,extra\n")
    done = prepare_cli(params, tmp_path)
    assert done.returncode == 0, done.stderr
    rejects = pd.read_csv(tmp_path / "out" / "rejects.csv")
    assert rejects["reason"].tolist() == ["line 3: 4 fields but the header has 3 (a trailing comma or an "
                                          "unquoted comma in a value?)"]
    manifest = pd.read_parquet(tmp_path / "out" / "manifest.parquet")
    assert manifest[["sample_id", "split", "label"]].values.tolist() == [["a", "train", "happy"]]  # trailing empty: no field


def test_header_only_manifest_says_so_and_writes_no_manifest(tmp_path, clips):
    params = corpus_with(tmp_path, clips, b"path,split,label\n")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "manifest.parquet").write_bytes(b"an older run's manifest")
    done = prepare_cli(params, tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "found no items" in done.stderr and "manifest.csv has no data rows" in done.stderr
    assert not (tmp_path / "out" / "manifest.parquet").exists()


def test_manifest_is_written_only_after_the_reject_gate(tmp_path, clips):
    params = corpus_with(tmp_path, clips, b"path,split,label\na.mp4,train,happy\nnope.mp4,train,sad\n")
    raw = yaml.safe_load(params.read_text())
    raw["prepare"]["max_reject_rate"] = 0.1
    params.write_text(yaml.safe_dump(raw))
    done = prepare_cli(params, tmp_path)
    assert done.returncode == 1 and "1 of 2 rows rejected (50.0% > prepare.max_reject_rate 10.0%)" in done.stderr
    assert not (tmp_path / "out" / "manifest.parquet").exists()
    assert pd.read_csv(tmp_path / "out" / "rejects.csv")["reason"].tolist() == ["missing file: nope.mp4"]


def test_non_utf8_file_name_is_a_reject(tmp_path, clips):
    from pipeline.datasets import Candidate, validate

    name = os.fsdecode(b"caf\xe9.mp4")              # how Python lists a Latin-1 file name
    (tmp_path / name).write_bytes(clips["a"])
    (tmp_path / "a.mp4").write_bytes(clips["a"])
    manifest, rejects = validate([Candidate("cafe", "test1", name), Candidate("a", "test1", "a.mp4")],
                                 tmp_path, ("happy",), {})
    assert list(manifest["sample_id"]) == ["a"]
    assert rejects["reason"].tolist() == ["file name is not valid UTF-8: caf\\xe9.mp4; rename it"]
    rejects.to_csv(tmp_path / "rejects.csv", index=False)   # what prepare writes next must not crash


# --- import-features is safe --------------------------------------------------------------------------

def npy_folder(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(path / f"{name}.npy", np.asarray(array, np.float32))
    return path


def encoder_store(path: Path) -> FeatureStore:
    """A store as `mer encode` writes it: an encoder's identity, 3-d vectors keyed by content."""
    store = FeatureStore(path).create(Identity("egemaps", "1", "audio", {}, {}), 3)
    store.write(["k1"], [np.ones(3, np.float32)], [""], 3)
    return store


def test_import_never_writes_into_an_encoder_store_without_replace(tmp_path):
    store = encoder_store(tmp_path / "features" / "egemaps.zarr")
    before = store.meta()
    folder = npy_folder(tmp_path / "mine" / "egemaps", {"s1": [1.0, 2.0]})
    done = mer("import-features", str(folder), "--modality", "audio", "--out", str(store.root))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "holds audio features of 'egemaps'" in done.stderr and "--replace" in done.stderr
    assert store.meta() == before and len(store.index()) == 1          # untouched
    done = mer("import-features", str(folder), "--modality", "visual", "--out", str(store.root), "--replace")
    assert done.returncode == 0, done.stderr
    assert store.identity().encoder == "imported" and store.meta()["dim"] == 2
    assert mer("import-features", str(folder), "--modality", "audio", "--out", str(store.root)).returncode == 1


def test_reimport_replaces_changed_values(tmp_path):
    from pipeline.store.exchange import import_npy
    folder = npy_folder(tmp_path / "f", {"s1": [1.0, 1.0], "s2": [2.0, 2.0], "s3": [3.0, 3.0]})
    out = tmp_path / "f.zarr"
    import_npy(folder, "audio", out, items_per_part=2)
    npy_folder(folder, {"s1": [9.0, 9.0]})                               # fixed after the first import
    (folder / "s3.npy").unlink()
    import_npy(folder, "audio", out, items_per_part=3)
    entries = {e.name: e.utt.tolist() for e in FeatureStore(out).entries()}
    assert entries == {"s1": [9.0, 9.0], "s2": [2.0, 2.0]}                # one row per key, the newest
    assert len(FeatureStore(out).parts.committed()) == 1                  # old parts are gone


def test_failed_import_leaves_nothing_behind(tmp_path):
    from pipeline.errors import InputError
    from pipeline.store.exchange import import_npy
    out = tmp_path / "f.zarr"
    folder = npy_folder(tmp_path / "f", {"s1": [1.0, 1.0], "s2": [2.0, 2.0]})
    with pytest.raises(InputError, match="s3.npy: shape"):
        import_npy(npy_folder(tmp_path / "g" / "f", {"s1": [1.0, 1.0], "s3": [1.0, 2.0, 3.0]}), "audio", out)
    left = sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock")   # the lock file is no data
    assert left == ["f", "g"]                                             # no store, no temporary one
    import_npy(folder, "audio", out)
    with pytest.raises(InputError):
        import_npy(npy_folder(folder, {"s3": [1.0, 2.0, 3.0]}), "audio", out)
    assert {e.name for e in FeatureStore(out).entries()} == {"s1", "s2"}  # the earlier import, intact


def test_train_refuses_a_configured_modality_without_features(tmp_path):
    from pipeline.errors import InputError
    from pipeline.store.media import MediaItem
    from pipeline.training.run import Views, load_tables

    media = MediaStore(tmp_path / "media.zarr").create()
    items = [MediaItem(f"s{i}", "h", "p", audio=np.full(1600, 0.1 * (i + 1), np.float32), transcript=f"t{i}")
             for i in range(4)]
    media.write(items)
    media.write_view(media.index())
    manifest = pd.DataFrame({"sample_id": [i.sample_id for i in items], "split": "train", "label": "happy",
                             "valence": 0.0})
    FeatureStore(tmp_path / "empty.zarr").create(Identity("imported", "1", "audio", {"source": "x"}, {},
                                                          keyed_by="sample_id"), 2)   # what a failed import left
    with pytest.raises(InputError, match="train.features.audio: .*empty.zarr has features for none of the 4 items"):
        load_tables(manifest, Views(media.root, {}), {"audio": tmp_path / "empty.zarr"}, "none", ("happy",))


# --- no silent wrong state -----------------------------------------------------------------------------

def test_encode_refuses_a_store_of_vectors_of_another_size_naming_the_option(tmp_path):
    from encode_fixtures import media_item, media_view

    view = media_view(tmp_path / "media.zarr", [media_item(f"s{i}", seconds=1.0) for i in range(3)])
    store = tmp_path / "features" / "egemaps.zarr"
    args = ["encode", "egemaps", "--clean", str(view), "--corrupted", str(tmp_path / "corrupted"), "--out", str(store)]
    spec = {"egemaps": {"encoder": "egemaps", "options": {}}}
    assert mer(*args, "--params", str(params_file(tmp_path / "p1.yaml", {"encode": {"features": spec}}))).returncode == 0
    spec["egemaps"]["options"] = {"feature_set": "emobase"}
    done = mer(*args, "--params", str(params_file(tmp_path / "p2.yaml", {"encode": {"features": spec}})))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (f"{store} holds 88-d vectors of encoder 'egemaps', but this configuration gives 988-d vectors (option "
            f"feature_set 'default' -> 'emobase'), and one store holds one size: delete it (rm -r {store})") in done.stderr
    X, present = FeatureStore(store).load(MediaStore(view).view())       # the store is as it was
    assert X.shape == (3, 88) and present.all()


def test_a_store_of_mixed_sizes_names_itself_and_the_fix(tmp_path):
    from pipeline.errors import InputError

    store = FeatureStore(tmp_path / "mixed.zarr").create(Identity("egemaps", "1", "audio", {}, {}), 3)
    store.write(["a"], [np.zeros(3, np.float32)], [""], 3)
    store.write(["b"], [np.zeros(5, np.float32)], [""], 5)     # what encode wrote before it refused other sizes
    with pytest.raises(InputError, match=f"{store.root} holds 3-d vectors and vectors of size \\[5\\] from an "
                                         f"earlier encoder configuration: delete it"):
        store.matrix()


def test_encode_refuses_a_store_of_imported_features(tmp_path):
    from encode_fixtures import media_item, media_view

    from pipeline.config import EncoderSpec
    from pipeline.encode import encode_feature
    from pipeline.errors import InputError
    from pipeline.store.exchange import import_npy

    view = media_view(tmp_path / "media.zarr", [media_item(f"s{i}", seconds=1.0) for i in range(3)])
    folder = tmp_path / "features" / "egemaps"
    folder.mkdir(parents=True)
    for i in range(3):
        np.save(folder / f"s{i}.npy", np.full(88, i, np.float32))     # the size egemaps gives, too
    store = tmp_path / "egemaps.zarr"
    import_npy(folder, "audio", store)
    with pytest.raises(InputError, match=f"{store} holds features imported from 'egemaps' \\(mer import-features\\), "
                                         f"not encoder 'egemaps''s: import them into another store"):
        encode_feature(EncoderSpec("egemaps"), [view], store, device="cpu")
    assert FeatureStore(store).identity().keyed_by == "sample_id"           # still the import


# --- bounded memory per item --------------------------------------------------------------------------

def test_image_bomb_is_refused_from_its_header(tmp_path):
    import cv2

    from pipeline.config import ExtractConfig
    from pipeline.extract import extract

    cv2.imwrite(str(tmp_path / "bomb.png"), np.zeros((12000, 12000, 3), np.uint8))
    assert (tmp_path / "bomb.png").stat().st_size < 1_000_000                 # 436 KB that decode to 432 MB
    manifest = pd.DataFrame({"sample_id": ["bomb"], "path": ["bomb.png"], "media_hash": [None],
                             "transcript": [None]})
    summary, failures = extract(manifest, tmp_path, tmp_path / "media.zarr", ExtractConfig(workers=1))
    assert [(f["step"], f["error"]) for f in failures] == [("open", "MediaError")]
    assert "12000 x 12000 pixels (144 MP) is more than the 40 MP" in failures[0]["message"]


def test_video_of_huge_frames_is_refused_from_its_stream_header(tmp_path):
    import av

    from pipeline.config import ExtractConfig
    from pipeline.extract import extract

    side = 6400                                          # 41 MP per frame, over the 40 MP cap
    with av.open(str(tmp_path / "huge.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=1, options={"preset": "ultrafast"})
        stream.width = stream.height = side
        flat = av.VideoFrame.from_ndarray(np.full((side * 3 // 2, side), 128, np.uint8), format="yuv420p")
        out.mux(stream.encode(flat))
        out.mux(stream.encode(None))
    assert (tmp_path / "huge.mp4").stat().st_size < 200_000        # a small file whose frames decode to 61 MB
    manifest = pd.DataFrame({"sample_id": ["huge"], "path": ["huge.mp4"], "media_hash": [None],
                             "transcript": [None]})
    summary, failures = extract(manifest, tmp_path, tmp_path / "media.zarr", ExtractConfig(workers=1))
    assert summary["failed"] == 1 and [(f["step"], f["error"]) for f in failures] == [("open", "MediaError")]
    assert "6400 x 6400 pixels (41 MP) is more than the 40 MP a video frame may have here" in failures[0]["message"]


def test_large_frames_are_downscaled_on_decode(tmp_path):
    import cv2

    from pipeline.media.decode import MAX_FRAME_SIDE, decode_clip, read_frames, read_image

    cv2.imwrite(str(tmp_path / "4k.png"), np.zeros((2160, 3840, 3), np.uint8))
    assert read_image(tmp_path / "4k.png").shape == (1, 1080, 1920, 3)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"frame_{i}.png"), np.zeros((2160, 3840, 3), np.uint8))
    assert read_frames(folder, 5.0, 8)[0].shape == (3, 1080, 1920, 3)
    clip = decode_clip(write_clip(tmp_path / "4k.mp4", seconds=0.4, fps=5, size=(3840, 2160)), 5.0, 8, 16000)
    assert max(clip.frames.shape[1:3]) == MAX_FRAME_SIDE
    small = decode_clip(write_clip(tmp_path / "s.mp4", seconds=0.4, fps=5, size=160), 5.0, 8, 16000)
    assert small.frames.shape[1:3] == (160, 160)                            # below the cap: untouched


# --- param ranges checked at load ---------------------------------------------------------------------

@pytest.mark.parametrize("section, raw, message", [
    ("train", {"fusion": {"lr": -1}}, "train.fusion.lr: -1.0 is out of range; allowed: > 0"),
    ("train", {"folds": 1}, "train.folds: 1 is out of range; allowed: >= 2"),
    ("train", {"fusion": {"hidden": []}}, "train.fusion.hidden: () is out of range; allowed: a non-empty list of values >= 1"),
    ("train", {"seeds": []}, "train.seeds: () is out of range; allowed: a non-empty list"),
    ("train", {"model": "lgbm"}, "train.model: unknown model family 'lgbm'; known: fusion, lightgbm"),
    ("train", {"lightgbm": {"subsample": 0}}, "train.lightgbm.subsample: 0.0 is out of range; allowed: in (0, 1]"),
    ("extract", {"fps": 0}, "extract.fps: 0.0 is out of range; allowed: > 0"),
    ("extract", {"clips_per_part": 0}, "extract.clips_per_part: 0 is out of range; allowed: >= 1"),
    ("extract", {"max_failure_rate": 1.5}, "extract.max_failure_rate: 1.5 is out of range; allowed: in [0, 1]"),
    ("encode", {"batch_size": 0}, "encode.batch_size: 0 is out of range; allowed: >= 1"),
    ("pseudolabel", {"eta": 2}, "pseudolabel.eta: 2.0 is out of range; allowed: in [0, 1]"),
    ("train", {"feature_norm": "zscore"}, "train.feature_norm: 'zscore' is out of range; allowed: one of 'none', 'standard'"),
    ("train", {"ablation": ["AX"]}, "train.ablation: ('AX',) is out of range; allowed: a list of values made "
                                    "of A, V, T (audio, visual, text), each at most once"),
    ("corrupt", {"robustness_blur": [3]}, "corrupt.robustness_blur: (3,) is out of range; allowed: a list of values a "
                                          "power of two"),
    ("demo", {"fps": 0}, "demo.fps: 0 is out of range; allowed: > 0"),
])
def test_out_of_range_param_fails_at_load(tmp_path, section, raw, message):
    from pipeline.config import ConfigError, load_section

    params = params_file(tmp_path / "params.yaml", {section: raw})
    with pytest.raises(ConfigError) as err:
        load_section(section, params)
    assert str(err.value) == message


@pytest.mark.parametrize("labels, shown", [(None, "()"), ([], "()"), (["happy"], "('happy',)"),
                                           (["happy", ""], "('happy', '')"), (["happy", " "], "('happy', ' ')"),
                                           (["happy", "sad", "happy"], "('happy', 'sad', 'happy')")])
def test_label_set_needs_two_different_non_empty_labels(tmp_path, labels, shown):
    from pipeline.config import ConfigError, load_section

    params = params_file(tmp_path / "params.yaml", {"prepare": {"labels": labels}})
    with pytest.raises(ConfigError) as err:
        load_section("prepare", params)
    assert str(err.value) == (f"prepare.labels: {shown} is out of range; allowed: a list of two or more different, "
                              f"non-empty labels")


def test_label_map_onto_an_unknown_label_fails_at_load(tmp_path):
    from pipeline.config import ConfigError, load_section

    params = params_file(tmp_path / "params.yaml", {"prepare": {"labels": ["happy", "sad"],
                                                                "label_map": {"joy": "happy", "calm": "neutral"}}})
    with pytest.raises(ConfigError, match=r"prepare.label_map maps onto labels outside prepare.labels "
                                          r"\['happy', 'sad'\]: \{'calm': 'neutral'\}"):
        load_section("prepare", params)


@pytest.mark.parametrize("raw, message", [
    ({"fusion": {"lr": -1}}, "train.fusion.lr: -1.0 is out of range; allowed: > 0"),
    ({"model": "lgbm"}, "train.model: unknown model family 'lgbm'; known: fusion, lightgbm"),
    ({"folds": 1}, "train.folds: 1 is out of range; allowed: >= 2"),
    ({"lr": 0.01}, "train.lr is now train.fusion.lr: move its value there in your params.yaml"),  # an old shape
])
def test_out_of_range_param_stops_the_command_with_key_and_range(tmp_path, raw, message):
    done = mer("train", "--params", str(params_file(tmp_path / "params.yaml", {"train": raw})),
               *path_args("train", tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert message in done.stderr


def test_missing_manifest_names_the_stage_that_makes_it(tmp_path):
    done = mer("train", "--params", str(params_file(tmp_path / "params.yaml", {})),
               *path_args("train", tmp_path, manifest=tmp_path / "manifest.parquet"))
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"{tmp_path / 'manifest.parquet'} does not exist: run `mer prepare`" in done.stderr


def test_project_params_are_in_range():
    from pipeline.config import SECTIONS, load_section

    for section in SECTIONS:
        load_section(section, Path(__file__).resolve().parents[1] / "params.yaml")


def start_extract(demo: Path, tmp_path: Path, store: Path, **extract) -> subprocess.Popen:
    params = params_file(tmp_path / f"params-{store.name}-{len(extract)}.yaml",
                         {"prepare": {"root": str(demo)}, "extract": {"workers": 1, "clips_per_part": 1} | extract})
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen([str(BIN / "mer"), "extract", "--params", str(params), "--manifest",
                             str(demo / "manifest.parquet"), "--store", str(store),
                             "--failures", str(tmp_path / "f.jsonl"), "--faces", str(tmp_path / "faces.json")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_extracts_on_one_store_one_waits_out(demo, tmp_path):
    """The race the lock closes: two `mer extract` on one store. One runs, the other stops at once, and
    the store is whole: a re-run reuses every item."""
    store = tmp_path / "media.zarr"
    first = start_extract(demo, tmp_path, store)
    while not lock_paths(store)[1].exists():
        assert first.poll() is None, first.communicate()[1][-2000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGSTOP)   # paused mid-run, so the second surely meets it
    second = start_extract(demo, tmp_path, store)
    _, err = second.communicate(timeout=120)
    first.send_signal(signal.SIGCONT)
    assert second.returncode == 75 and f"PID {first.pid}" in err
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    again = start_extract(demo, tmp_path, store)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-2000:]
    assert json.loads(out)["reused"] == 8


@pytest.mark.slow
def test_ctrl_c_says_what_was_interrupted_and_leaves_no_worker(demo, tmp_path):
    import psutil

    run = start_extract(demo, tmp_path, tmp_path / "media.zarr", workers=2)
    parent = psutil.Process(run.pid)
    deadline = time.monotonic() + 120
    while len(workers := pool_workers(parent)) < 2:
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err[-2000:]
    assert "mer extract: interrupted" in err and "run the same command again to resume" in err
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(workers, timeout=20)
    assert alive == []


def test_checkpoint_from_other_library_versions_warns(tmp_path):
    from pipeline.training.checkpoint import library_versions, warn_library_changes

    here = library_versions()
    with pytest.warns(UserWarning, match=r"numpy 1\.0\.0 -> " + re.escape(here["numpy"])):
        warn_library_changes(tmp_path, here | {"numpy": "1.0.0"})
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warn_library_changes(tmp_path, here)                # the same versions: silent


# --- one error boundary: a cause a user can make names the file, line or key and the fix -----------------

def user_error(done: subprocess.CompletedProcess, *needles: str) -> None:
    """Failed as an expected error does: exit 1, the message, no traceback and no bug report line."""
    assert done.returncode == 1, done.stderr[-3000:]
    assert "Traceback" not in done.stderr and "this is a bug" not in done.stderr, done.stderr[-3000:]
    for needle in needles:
        assert needle in done.stderr, done.stderr[-3000:]


BUG = """
import sys
from pipeline.cli import app

@app.command("boom")
def boom():
    {}["no such key"]

sys.argv = ["mer", "boom"]
app()
"""


def test_a_bug_keeps_its_traceback_and_asks_to_be_reported():
    done = subprocess.run([sys.executable, "-c", BUG], capture_output=True, text=True, timeout=120)
    assert done.returncode == 70, done.stderr                      # EX_SOFTWARE, not an input error's 1
    assert "Traceback" in done.stderr and "KeyError: 'no such key'" in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("mer boom: this is a bug in mer") and "report it" in last


def test_a_path_the_file_system_refuses_is_named_without_a_traceback(tmp_path):
    (tmp_path / "corpus").write_text("a file where the corpus folder goes")
    done = mer("demo-corpus", "--out", str(tmp_path / "corpus"), "--params", str(params_file(tmp_path / "p.yaml", {})))
    assert done.returncode == 74, done.stderr[-3000:]                  # EX_IOERR
    assert "Traceback" not in done.stderr and "this is a bug" not in done.stderr
    assert f"{tmp_path / 'corpus' / 'clips'}: Not a directory: check that path" in done.stderr


def mer2023_release(root: Path, clip: bytes, sentence: str = "hello") -> Path:
    """A one-clip MER 2023 release folder and the params that prepare it."""
    (root / "train").mkdir(parents=True)
    (root / "train" / "sample_00000001.mp4").write_bytes(clip)
    (root / "train-label.csv").write_text("name,discrete,valence\nsample_00000001,happy,1.5\n")
    pd.DataFrame({"name": ["sample_00000001"], "sentence": [sentence]}).to_csv(root / "transcription.csv", index=False)
    return params_file(root / "params.yaml", {"prepare": {"adapter": "mer2023", "root": str(root)}})


def test_transcripts_longer_than_the_csv_field_limit_are_read(tmp_path, clips):
    sentence = "很长的句子。" * 40_000                                  # 240 000 characters, past csv's 128 KiB
    done = prepare_cli(mer2023_release(tmp_path / "mer", clips["a"], sentence), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert pd.read_parquet(tmp_path / "out" / "manifest.parquet")["transcript"].tolist() == [sentence]


def test_unclosed_quote_is_named_with_file_and_line(tmp_path, clips):
    from pipeline.datasets.base import MAX_FIELD

    text = b'path,split,label,transcript\na.mp4,train,happy,hi\nb.mp4,train,sad,"never closed\n' + b"x" * MAX_FIELD
    done = prepare_cli(corpus_with(tmp_path, clips, text), tmp_path)
    user_error(done, f"{tmp_path / 'corpus' / 'manifest.csv'}: line 3: field larger than field limit",
               "an unclosed quote?")


def test_label_csv_without_its_columns_names_them(tmp_path, clips):
    params = mer2023_release(tmp_path / "mer", clips["a"])
    (tmp_path / "mer" / "train-label.csv").write_text("name,emotion\nsample_00000001,happy\n")
    user_error(prepare_cli(params, tmp_path), f"{tmp_path / 'mer' / 'train-label.csv'}: no column discrete")


@pytest.mark.parametrize("content, says", [
    (b"a text file, not a zip archive", "not a readable .npz (zip) archive"),
    ("numbers", "train_corpus.npy: holds an array of int64 and shape (3,), not a pickled dict"),
])
def test_label_npz_that_is_not_labels_names_the_file(tmp_path, clips, content, says):
    params = mer2023_release(tmp_path / "mer", clips["a"])
    npz = tmp_path / "mer" / "label-6way.npz"
    if content == "numbers":
        np.savez(npz, train_corpus=np.arange(3))
    else:
        npz.write_bytes(content)
    user_error(prepare_cli(params, tmp_path), str(npz), says, "expected the MER 2023 baseline's label file")


@pytest.mark.parametrize("write, says", [
    (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), "Object arrays cannot be loaded"),
    (lambda p: p.write_text("0.1 0.2 0.3\n"), "not a NumPy .npy file (a text or other file named .npy?)"),
    (lambda p: np.save(p, np.array(["happy", "sad"])), "holds <U5 values, not numbers"),
], ids=["object-array", "text-file", "string-array"])
def test_import_of_a_file_that_is_no_feature_array_names_it(tmp_path, write, says):
    folder = npy_folder(tmp_path / "feats", {"s1": [1.0, 2.0]})
    write(folder / "s2.npy")
    done = mer("import-features", str(folder), "--modality", "audio", "--out", str(tmp_path / "f.zarr"))
    user_error(done, f"{folder / 's2.npy'}: {says}", "expected a float (or int) array saved with numpy.save")
    assert not (tmp_path / "f.zarr").exists()


def labelled_table(labels: list[str]):
    from pipeline.labels import MER_LABELS
    from pipeline.training.data import Table

    n = len(labels)
    rows = pd.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "split": "train", "label": labels, "valence": 0.0})
    return {"train": Table(rows, {"audio": np.ones((n, 2), np.float32)}, {"audio": np.ones(n, bool)},
                           labels=tuple(MER_LABELS))}


@pytest.mark.parametrize("labels, says", [
    (["happy", "sad", "angry"], "subset A has 3 labelled items, at most 1 of a class"),
    (["happy", "sad", "angry"] * 3, "subset A has 9 labelled items, at most 3 of a class"),
], ids=["fewer-items", "small-classes"])
def test_more_folds_than_the_items_allow_names_train_folds(labels, says):
    from pipeline.config import ConfigError, FusionParams, TrainConfig
    from pipeline.training.run import run_subset

    cfg = TrainConfig(features={"audio": "egemaps"}, folds=5, fusion=FusionParams(epochs=1, hidden=(4,)))
    with pytest.raises(ConfigError) as err:
        run_subset(labelled_table(labels), "A", cfg, seed=0)
    assert str(err.value).startswith("train.folds: 5 folds need at least 5 labelled training items of one class")
    assert says in str(err.value) and "lower train.folds" in str(err.value)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """A small trained checkpoint of each model family."""
    from pipeline.config import FusionParams, LightGBMParams, TrainConfig
    from pipeline.training import checkpoint
    from pipeline.training.run import run_subset

    root = tmp_path_factory.mktemp("checkpoints")
    FeatureStore(root / "egemaps.zarr").create(Identity("egemaps", "1", "audio", {}, {}), 2)
    record = {"audio": checkpoint.feature_record("egemaps", root / "egemaps.zarr")}
    tables = labelled_table(["happy", "sad"] * 6)
    out = {}
    for model in ("fusion", "lightgbm"):
        cfg = TrainConfig(model=model, features={"audio": "egemaps"}, folds=2,
                          fusion=FusionParams(epochs=2, hidden=(4,)),
                          lightgbm=LightGBMParams(n_estimators=2, min_child_samples=1))
        result, _ = run_subset(tables, "A", cfg, seed=0)
        out[model] = checkpoint.save(root / model, result, record, None, tables["train"].labels)
    return out


@pytest.mark.parametrize("model, file", [("fusion", "weights.safetensors"), ("fusion", "checkpoint.json"),
                                         ("lightgbm", "lightgbm.json")])
def test_truncated_checkpoint_names_the_file_and_says_to_retrain(checkpoints, tmp_path, model, file):
    import shutil

    ckpt = Path(shutil.copytree(checkpoints[model], tmp_path / "ckpt"))
    (ckpt / file).write_bytes((ckpt / file).read_bytes()[: (ckpt / file).stat().st_size // 2])
    done = mer("predict", str(tmp_path / "clip.mp4"), "--checkpoint", str(ckpt))
    user_error(done, str(ckpt), file, "the checkpoint is damaged or incomplete: train it again")


def test_evaluate_without_predictions_names_the_path(tmp_path):
    pd.DataFrame({"sample_id": ["a"], "split": ["test1"], "label": ["happy"], "valence": [0.0],
                  "true_label": [None]}).to_parquet(tmp_path / "manifest.parquet")
    (tmp_path / "cv.json").write_text(json.dumps({"main_subset": "A", "over_seeds": {}, "runs": []}))
    done = mer("evaluate", "--params", str(params_file(tmp_path / "params.yaml", {})),
               *path_args("evaluate", tmp_path, manifest=tmp_path / "manifest.parquet", cv_metrics=tmp_path / "cv.json"))
    user_error(done, f"{tmp_path / 'predictions'} does not exist: run `mer train`")


def test_predict_without_the_transcripts_file_names_it(tmp_path):
    done = mer("predict", str(tmp_path / "clip.mp4"), "--transcripts", str(tmp_path / "nope.csv"))
    user_error(done, f"--transcripts {tmp_path / 'nope.csv'}: no such file")


def test_report_without_a_metrics_folder_fails(tmp_path):
    done = mer("report", "--params", str(params_file(tmp_path / "params.yaml", {})),
               *path_args("report", tmp_path, metrics=tmp_path / "nowhere"))
    user_error(done, f"--metrics {tmp_path / 'nowhere'}: no such folder")
    assert not (tmp_path / "html").exists()


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.write_text("not parquet"), "not a readable Parquet table"),
    (lambda p: pd.DataFrame({"sample_id": ["a"]}).to_parquet(p), "no column 'split', so not what `mer prepare`"),
], ids=["not-parquet", "foreign-table"])
def test_damaged_manifest_names_it_and_the_stage_that_writes_it(tmp_path, damage, says):
    damage(tmp_path / "manifest.parquet")
    done = mer("train", "--params", str(params_file(tmp_path / "params.yaml", {})),
               *path_args("train", tmp_path, manifest=tmp_path / "manifest.parquet"))
    user_error(done, f"{tmp_path / 'manifest.parquet'}: {says}")


def test_damaged_cv_metrics_names_the_file(tmp_path):
    pd.DataFrame({"sample_id": ["a"], "split": ["test1"]}).to_parquet(tmp_path / "manifest.parquet")
    (tmp_path / "cv.json").write_text('{"main_subset": "A", "over')
    done = mer("evaluate", "--params", str(params_file(tmp_path / "params.yaml", {})),
               *path_args("evaluate", tmp_path, manifest=tmp_path / "manifest.parquet", cv_metrics=tmp_path / "cv.json"))
    user_error(done, f"{tmp_path / 'cv.json'}: not readable JSON", "run `mer train`")


@pytest.mark.parametrize("command", [("exps",), ("semi-study", "--out", "study.csv"), ("diff-report", "HEAD")])
def test_experiment_tables_outside_a_dvc_project_say_so(tmp_path, command):
    done = mer(*command, "--repo", str(tmp_path), cwd=tmp_path)
    user_error(done, "not inside of a DVC repository", "pass --repo with the project's root")


def test_checkpoint_from_before_digests_still_loads(checkpoints, tmp_path):
    import shutil

    from pipeline.training import checkpoint

    ckpt = Path(shutil.copytree(checkpoints["lightgbm"], tmp_path / "ckpt"))
    meta = json.loads((ckpt / "checkpoint.json").read_text())
    assert meta.pop("sha256") == {"lightgbm.json": file_sha256(ckpt / "lightgbm.json")}
    (ckpt / "checkpoint.json").write_text(json.dumps(meta))
    assert checkpoint.load(ckpt).labels == checkpoint.load(checkpoints["lightgbm"]).labels


# --- causes the fuzz tests (test_fuzz_readers.py) found, each as its smallest input ---------------------

def test_npy_with_a_damaged_header_names_the_file(tmp_path):
    from pipeline.errors import InputError
    from pipeline.store.exchange import import_npy

    folder = npy_folder(tmp_path / "feats", {"s1": [[1.0, 2.0, 3.0]]})
    data = bytearray((folder / "s1.npy").read_bytes())
    data[8] = 1                                          # header length 1: numpy's ast parse sees "{"
    (folder / "s1.npy").write_bytes(bytes(data))
    with pytest.raises(InputError, match=re.escape(f"{folder / 's1.npy'}: ")):
        import_npy(folder, "audio", tmp_path / "f.zarr")


def test_label_npz_with_shifted_zip_offsets_names_the_file(tmp_path):
    from pipeline.datasets.mer2023 import read_label_npz
    from pipeline.errors import InputError

    path = tmp_path / "label-6way.npz"
    np.savez(path, train_corpus=np.array({"a": {"emo": "happy", "val": 1.0}}, dtype=object))
    path.write_bytes(path.read_bytes()[1:])            # every offset one byte off: a seek before the start
    with pytest.raises(InputError, match=re.escape(f"{path}: not a readable .npz (zip) archive")):
        read_label_npz(path)


def test_nul_byte_in_a_manifest_path_rejects_that_row(tmp_path):
    from pipeline.datasets import Candidate, validate

    manifest, rejects = validate([Candidate("x", "train", "\x00.mp4")], tmp_path, ("happy",), {})
    assert manifest.empty and rejects["reason"].tolist() == ["unusable path '\\x00.mp4': embedded null byte"]


def test_a_stage_under_dvc_repro_fails_with_the_message_and_no_traceback(tmp_path, clips):
    from dvc_project import project_copy, run

    project = project_copy(tmp_path, {"prepare": {"adapter": "mer2023", "root": "mer"}})
    mer2023_release(project / "mer", clips["a"])
    (project / "mer" / "label-6way.npz").write_bytes(b"not a zip archive")
    done = run(["dvc", "repro", "prepare"], project, check=False)
    assert done.returncode != 0
    out = done.stdout + done.stderr
    assert "mer prepare: error: mer/label-6way.npz: not a readable .npz (zip) archive" in out, out[-3000:]
    assert "Traceback" not in out
