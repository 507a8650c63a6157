"""params.yaml loading: typed, frozen, defaults filled, unknown keys named."""

import dataclasses
from pathlib import Path

import pytest

from pipeline.config import SECTIONS, ConfigError, load_section

REPO_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


@pytest.mark.parametrize("section", SECTIONS)
def test_every_section_of_the_shipped_params_loads(section):
    cfg = load_section(section, REPO_PARAMS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, dataclasses.fields(cfg)[0].name, None)


def test_unknown_key_is_named(tmp_path):
    (tmp_path / "p.yaml").write_text("train:\n  folds: 3\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['learning_rate'\]"):
        load_section("train", tmp_path / "p.yaml")


@pytest.mark.parametrize("section, old, new", [
    ("extract", "asr_model: whisper-tiny.en", "extract.asr_model is now extract.asr_options.model"),
    ("extract", "asr_language: en", "extract.asr_language is now extract.asr_options.language"),
    ("extract", "asr_window: padded", "extract.asr_window is now extract.asr_options.window"),
    ("extract", "executor: dask", "extract.executor is now run.executor"),
    ("extract", "executor_options: {}", "extract.executor_options is now run.executor_options"),
    ("train", "epochs: 3", "train.epochs is now train.fusion.epochs"),
    ("train", "precision: bf16", "train.precision is now train.fusion.precision"),
])
def test_a_moved_key_names_where_it_went(tmp_path, section, old, new):
    (tmp_path / "p.yaml").write_text(f"{section}:\n  {old}\n")
    with pytest.raises(ConfigError) as err:
        load_section(section, tmp_path / "p.yaml")
    assert str(err.value) == f"{new}: move its value there in your params.yaml"


def test_unknown_section_and_wrong_type_are_rejected(tmp_path):
    (tmp_path / "a.yaml").write_text("trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_section("train", tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("train:\n  fusion:\n    epochs: many\n")
    with pytest.raises(ConfigError, match="train.fusion.epochs: expected int"):
        load_section("train", tmp_path / "b.yaml")


def test_nested_values_are_typed_and_defaults_filled(tmp_path):
    (tmp_path / "p.yaml").write_text("encode:\n  features:\n    hub: {encoder: hf-audio, options: {layers: [-1]}}\n"
                                     "train:\n  fusion: {hidden: [64, 32], lr: 1}\n")
    encode = load_section("encode", tmp_path / "p.yaml")
    train = load_section("train", tmp_path / "p.yaml")
    assert encode.features["hub"].encoder == "hf-audio" and encode.batch_size == 16
    assert train.fusion.hidden == (64, 32) and isinstance(train.fusion.lr, float) and train.fusion.epochs == 100
