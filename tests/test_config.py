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
    (tmp_path / "p.yaml").write_text("train:\n  epochs: 3\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"train: unknown key\(s\) \['learning_rate'\]"):
        load_section("train", tmp_path / "p.yaml")


def test_unknown_section_and_wrong_type_are_rejected(tmp_path):
    (tmp_path / "a.yaml").write_text("trian:\n  epochs: 3\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_section("train", tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("train:\n  epochs: many\n")
    with pytest.raises(ConfigError, match="train.epochs: expected int"):
        load_section("train", tmp_path / "b.yaml")


def test_nested_values_are_typed_and_defaults_filled(tmp_path):
    (tmp_path / "p.yaml").write_text("encode:\n  features:\n    hub: {encoder: hf-audio, options: {layers: [-1]}}\n"
                                     "train:\n  hidden: [64, 32]\n  lr: 1\n")
    encode = load_section("encode", tmp_path / "p.yaml")
    train = load_section("train", tmp_path / "p.yaml")
    assert encode.features["hub"].encoder == "hf-audio" and encode.batch_size == 16
    assert train.hidden == (64, 32) and isinstance(train.lr, float) and train.epochs == 100
