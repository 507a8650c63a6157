"""The encode stage over real media stores with tiny local models: the cache-key rules (one test per
rule), missing-modality records for empty inputs and NaN outputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from encode_fixtures import media_item, media_view, save_bert, save_wav2vec2, transcript

from pipeline.config import EncoderSpec, RunConfig
from pipeline.encode import build_encoder, encode_feature, identity_of
from pipeline.failures import TooManyFailures
from pipeline.store.features import FeatureStore
from pipeline.store.media import MediaStore
from stages import encode as encode_stage


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {"bert": save_bert(root / "bert"), "bert2": save_bert(root / "bert2", seed=1),
            "w2v": save_wav2vec2(root / "w2v"), "nan": save_bert(root / "nan", nan_word="angry")}


def items(n: int, start: int = 0):
    return [media_item(f"s{i:03d}", seconds=0.3 + 0.1 * (i % 4), transcript=transcript(i) + f" {i}")
            for i in range(start, start + n)]


@pytest.fixture
def view(tmp_path):
    return media_view(tmp_path / "media.zarr", items(6), parts=2)


def text(models, **options) -> EncoderSpec:
    return EncoderSpec("hf-text", {"model_path": models["bert"]} | options)


def audio(models) -> EncoderSpec:
    return EncoderSpec("hf-audio", {"model_path": models["w2v"]})


def encode(spec, view, store, **runtime) -> dict:
    return encode_feature(spec, [view], store, **({"device": "cpu", "items_per_part": 4} | runtime))


def store_files(store: Path) -> dict[str, float]:
    return {str(p.relative_to(store)): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}


# ---------------------------------------------------------------- cache-key rules

def test_batch_size_device_and_workers_never_invalidate(models, view, tmp_path):
    store = tmp_path / "text.zarr"
    assert encode(text(models), view, store, batch_size=2)["encoded"] == 6
    again = encode(text(models), view, store, batch_size=5, device="auto", workers=2)
    assert again["encoded"] == 0
    a = build_encoder(text(models), {"batch_size": 1, "device": "cpu"})
    b = build_encoder(EncoderSpec("hf-text", {"model_path": models["bert"], "batch_size": 9}), {"device": "cpu"})
    assert identity_of(a).key == identity_of(b).key


@pytest.mark.parametrize("change", [{"layers": [-1]}, {"pooling": "max"}, {"checkpoint": "bert2"}])
def test_layer_pooling_or_checkpoint_change_reencodes_that_encoder_only(models, view, tmp_path, change):
    text_store, audio_store = tmp_path / "text.zarr", tmp_path / "audio.zarr"
    encode(text(models), view, text_store)
    encode(audio(models), view, audio_store)
    options = {"model_path": models[change["checkpoint"]]} if "checkpoint" in change else change
    changed = text(models, **options)
    assert encode(changed, view, text_store)["encoded"] == 6
    assert encode(audio(models), view, audio_store)["encoded"] == 0
    X_old = FeatureStore(text_store).load(MediaStore(view).view())[0]
    assert encode(text(models), view, text_store)["encoded"] == 0   # the old entries are still there
    assert not np.allclose(X_old, FeatureStore(text_store).load(MediaStore(view).view())[0])


def test_weights_replaced_at_the_same_model_path_are_encoded_anew(view, tmp_path):
    spec = EncoderSpec("hf-text", {"model_path": save_bert(tmp_path / "bert")})
    store = tmp_path / "text.zarr"
    assert encode(spec, view, store)["encoded"] == 6
    X_old = FeatureStore(store).load(MediaStore(view).view())[0]
    save_bert(tmp_path / "bert", seed=1)              # retrained into the same folder
    assert encode(spec, view, store)["encoded"] == 6
    X_new = FeatureStore(store).load(MediaStore(view).view())[0]
    assert not np.allclose(X_old, X_new)               # the new weights ran, not the model loaded before
    assert encode(spec, view, store)["encoded"] == 0


def test_unhashable_config_raises(models):
    encoder = build_encoder(text(models), {"device": "cpu"})
    encoder = dataclasses.replace(encoder.config, model_path=Path(models["bert"]))
    holder = build_encoder(text(models, layers=[-2]), {"device": "cpu"})
    holder.config = encoder
    with pytest.raises(TypeError, match="model_path=PosixPath"):
        identity_of(holder)


def test_noop_rerun_computes_nothing_and_writes_nothing(models, view, tmp_path):
    store = tmp_path / "audio.zarr"
    first = encode(audio(models), view, store)
    assert first["encoded"] == 6 and first["missing"] == 0
    before = store_files(store)
    assert encode(audio(models), view, store) == {**first, "encoded": 0}
    after = store_files(store)
    assert {k: v for k, v in after.items() if k != "feature.json"} == \
        {k: v for k, v in before.items() if k != "feature.json"}


def test_adding_clips_computes_only_theirs(models, view, tmp_path):
    store = tmp_path / "text.zarr"
    encode(text(models), view, store)
    by_id = lambda: MediaStore(view).view().sort_values("sample_id")  # noqa: E731
    X_before = FeatureStore(store).load(by_id())[0]
    media = MediaStore(view)
    media.write(items(3, start=6))
    media = MediaStore(view)
    media.write_view(media.index())
    assert encode(text(models), view, store)["encoded"] == 3
    X_after, present = FeatureStore(store).load(by_id())
    assert present.all()
    np.testing.assert_array_equal(X_after[:6], X_before)


# ---------------------------------------------------------------- missing modalities

def test_empty_inputs_are_recorded_missing_not_zeros(models, tmp_path):
    clips = [media_item("ok"), media_item("silent", silent=True), media_item("mute_text", transcript=""),
             media_item("no_face", found=False)]
    view = media_view(tmp_path / "media.zarr", clips)
    rows = MediaStore(view).view().set_index("sample_id").loc[["ok", "silent", "mute_text", "no_face"]]
    present = {}
    for name, spec in {"audio": audio(models), "text": text(models),
                       "visual": EncoderSpec("fer", {})}.items():
        result = encode(spec, view, tmp_path / f"{name}.zarr")
        X, present[name] = FeatureStore(tmp_path / f"{name}.zarr").load(rows)
        assert np.isnan(X[~present[name]]).all() and np.isfinite(X[present[name]]).all()
        if name == "audio":
            assert result["missing"] == 1
            _, _, missing = FeatureStore(tmp_path / "audio.zarr").matrix()
            assert list(missing.values()) == ["silent or empty audio"]
    assert present["audio"].tolist() == [True, False, True, True]
    assert present["text"].tolist() == [True, True, False, True]
    assert present["visual"].tolist() == [True, True, True, False]


def test_nan_outputs_are_recorded_missing(models, tmp_path):
    clips = [media_item("calm", transcript="the man is happy"), media_item("nan", transcript="a very angry man")]
    view = media_view(tmp_path / "media.zarr", clips)
    store = tmp_path / "nan.zarr"
    result = encode(EncoderSpec("hf-text", {"model_path": models["nan"]}), view, store)
    assert result == {"encoded": 2, "missing": 1, "failed": 1, "dim": 32}
    rows = MediaStore(view).view().set_index("sample_id").loc[["calm", "nan"]]
    X, present = FeatureStore(store).load(rows)
    assert present.tolist() == [True, False] and np.isnan(X[1]).all()
    _, _, missing = FeatureStore(store).matrix()
    assert list(missing.values()) == ["NaN/inf output, or input too short for the encoder"]


def test_encode_stage_fails_above_its_failure_rate(models, tmp_path):
    """NaN outputs count as encoder failures; an empty transcript is no input at all and counts in
    neither total: 1 failure of 2 encoded items is within a 50% limit and over 25%."""
    clips = [media_item("calm", transcript="the man is happy"), media_item("nan", transcript="a very angry man"),
             media_item("mute", transcript="")]
    view = media_view(tmp_path / "media.zarr", clips)
    params = tmp_path / "params.yaml"
    for limit, store in ((0.5, "ok.zarr"), (0.25, "over.zarr")):
        params.write_text(yaml.safe_dump({"encode": {"features": {"nan": {"encoder": "hf-text", "options": {
            "model_path": str(models["nan"])}}}, "device": "cpu", "max_failure_rate": limit}}))
        run_stage = lambda store=store: encode_stage.run(  # noqa: E731
            params, feature="nan", clean=view, corrupted=None, out=tmp_path / store)
        if limit == 0.5:
            assert run_stage() == {"encoded": 2, "missing": 1, "failed": 1, "dim": 32}
        else:
            with pytest.raises(TooManyFailures, match=r"encode: 1 of 2 items failed .*encode.max_failure_rate"):
                run_stage()


# ---------------------------------------------------------------- interruption and scale-out

def write_params(path: Path, spec: EncoderSpec, items_per_part: int) -> Path:
    import yaml
    path.write_text(yaml.safe_dump({"encode": {
        "features": {"feat": {"encoder": str(spec.encoder), "options": spec.options}},  # the name, not its Choice
        "batch_size": 2, "device": "cpu", "items_per_part": items_per_part}}))
    return path


def loaded(store: Path, view: Path) -> np.ndarray:
    X, present = FeatureStore(store).load(MediaStore(view).view().sort_values("sample_id"))
    assert present.all()
    return X


@pytest.mark.slow
def test_killed_encode_resumes_to_the_same_store(models, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    n = 24
    view = media_view(tmp_path / "media.zarr", [media_item(f"k{i:02d}", seconds=1.5) for i in range(n)])
    params = write_params(tmp_path / "params.yaml", audio(models), items_per_part=1)
    store = tmp_path / "feat.zarr"
    cmd = [sys.executable, "-c", "from pipeline.cli import main; main()", "encode", "feat", "--params",
           str(params), "--clean", str(view), "--corrupted", str(tmp_path / "none"), "--out", str(store)]
    proc = subprocess.Popen(cmd, env=os.environ | {"PYTHONPATH": str(Path.cwd())},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    committed = lambda: list((store / "index").glob("*.parquet")) if (store / "index").is_dir() else []  # noqa: E731
    deadline = time.monotonic() + 120
    while len(committed()) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(committed())
    assert 2 <= done < n, f"the run was not killed mid-way ({done} of {n} parts committed)"

    resumed = encode(audio(models), view, store, items_per_part=1, batch_size=2)
    assert resumed["encoded"] == n - done
    index = FeatureStore(store).index()
    assert len(index) == n and index["cache_key"].is_unique
    assert {p.name for p in (store / "parts").iterdir() if p.is_dir()} == set(index["part"])
    fresh = tmp_path / "fresh.zarr"
    encode(audio(models), view, fresh, items_per_part=1, batch_size=2)
    np.testing.assert_array_equal(loaded(store, view), loaded(fresh, view))


@pytest.mark.slow
def test_dask_local_cluster_store_equals_local_store(models, tmp_path):
    from distributed import LocalCluster

    view = media_view(tmp_path / "media.zarr", items(10), parts=2)
    local, dask = tmp_path / "local.zarr", tmp_path / "dask.zarr"
    encode(text(models), view, local, items_per_part=3)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        executor = RunConfig(executor="dask", executor_options={"address": cluster.scheduler_address}).executor
        result = encode(text(models), view, dask, items_per_part=3, executor=executor)
    assert result["encoded"] == 10
    parts = lambda s: sorted(p.name for p in (s / "parts").iterdir() if p.is_dir())  # noqa: E731
    assert parts(local) == parts(dask) and len(parts(local)) == 4
    cols = ["cache_key", "row", "status", "part"]
    by_key = lambda s: FeatureStore(s).index()[cols].sort_values("cache_key").reset_index(drop=True)  # noqa: E731
    pd.testing.assert_frame_equal(by_key(local), by_key(dask))
    # workers run torch on one thread, the local run on all cores: float sums differ in the last bit
    np.testing.assert_allclose(loaded(local, view), loaded(dask, view), rtol=1e-6, atol=1e-6)


def test_export_of_an_encoded_store_names_files_by_sample_id(models, tmp_path):
    from pipeline.store.exchange import export_hdf5, export_npy, import_npy
    clips = items(4) + [media_item("quiet", transcript="")]
    view = media_view(tmp_path / "media.zarr", clips)
    store = tmp_path / "text.zarr"
    encode(text(models), view, store)
    rows = MediaStore(view).view().sort_values("sample_id")
    X, present = FeatureStore(store).load(rows)
    folder = export_npy(FeatureStore(store), tmp_path / "out", view=view)
    assert sorted(p.stem for p in folder.glob("*.npy")) == sorted(rows["sample_id"][present])
    for sample, x in zip(rows["sample_id"][present], X[present]):
        np.testing.assert_array_equal(np.load(folder / f"{sample}.npy"), x)
    import_npy(folder, "text", tmp_path / "back.zarr")   # and back in, keyed by sample id
    X_back, present_back = FeatureStore(tmp_path / "back.zarr").load(rows)
    assert present_back.tolist() == present.tolist()
    np.testing.assert_array_equal(X_back[present], X[present])
    import h5py
    with h5py.File(export_hdf5(FeatureStore(store), tmp_path / "t.h5", view=view)) as h5:
        np.testing.assert_array_equal(h5["utterance"][...], X[present])
        assert "frames" not in h5
