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


BAD_CHOICES = [   # (params.yaml text, what the error must say: the key, and the known choices where it lists them)
    ("prepare:\n  adapter: nope\n", r"prepare.adapter: unknown corpus adapter 'nope'; known: .*csv.*demo"),
    ("prepare:\n  adapter: csv\n  options: {manifset: a.csv}\n", r"prepare.options: unknown key\(s\) \['manifset'\]"),
    ("extract:\n  face_detector: nope\n", r"extract.face_detector: unknown face detector 'nope'; known: .*blazeface"),
    ("extract:\n  face_options: {min_score: high}\n", r"extract.face_options.min_score: expected float, got 'high'"),
    ("extract:\n  asr: vosk\n", r"extract.asr: unknown ASR engine 'vosk'; known: faster-whisper, none, whisper"),
    ("extract:\n  asr: faster-whisper\n  asr_options: {window: full}\n", r"extract.asr_options.*'full'"),
    ("run:\n  executor: slurm\n", r"run.executor: unknown executor 'slurm'; known: dask, local"),
    ("run:\n  executor_options: {host: a}\n", r"run.executor_options: unknown key\(s\) \['host'\]"),
    ("corrupt:\n  noise_source: rain\n", r"corrupt.noise_source: unknown noise source 'rain'; known: babble, folder"),
    ("corrupt:\n  noise_source: folder\n  noise_options: {dir: 3}\n", r"corrupt.noise_options.dir: expected str"),
    ("encode:\n  features:\n    a: {encoder: nope}\n", r"encode.features.<name>.encoder: unknown encoder 'nope'; known: "),
    ("encode:\n  features:\n    a: {encoder: hf-text, options: {layer: 2}}\n",
     r"encode.features.<name>.options: unknown key\(s\) \['layer'\]"),
    ("encode:\n  features:\n    a: {options: {}}\n", r"encode.features.a: missing key\(s\) \['encoder'\]; add them"),
    ("encode:\n  device: gpu\n", r"encode.device: 'gpu' is not a device; allowed: auto, cpu, cuda, cuda:N"),
    ("train:\n  device: tpu\n", r"train.device: 'tpu' is not a device"),
    ("train:\n  model: svm\n", r"train.model: unknown model family 'svm'; known: fusion, lightgbm"),
    ("train:\n  fusion: {precision: fp16}\n", r"train.fusion.precision: 'fp16' is out of range; allowed: one of 'fp32', 'bf16'"),
    ("train:\n  feature_norm: minmax\n", r"train.feature_norm: 'minmax' is out of range"),
    ("train:\n  fusion: {attention_norm: sparsemax}\n", r"train.fusion.attention_norm: 'sparsemax' is out of range"),
    ("pseudolabel:\n  eta: 1.5\n", r"pseudolabel.eta: 1.5 is out of range; allowed: in \[0, 1\]"),
    ("evaluate:\n  protocol: mer2030\n", r"evaluate.protocol: unknown evaluation protocol 'mer2030'; known: fg, mer2023"),
]


@pytest.mark.parametrize(("text", "message"), BAD_CHOICES, ids=[t.split(":")[0] + ":" + t.split()[1] for t, _ in BAD_CHOICES])
def test_each_bad_choice_fails_at_load_naming_its_key(tmp_path, text, message):
    (tmp_path / "p.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_section(text.split(":")[0], tmp_path / "p.yaml")


def test_a_choice_carries_its_class_and_built_options(tmp_path):
    from pipeline.media.faces import HaarDetector

    (tmp_path / "p.yaml").write_text("extract:\n  face_detector: haar\n  face_options: {min_face: 0.2}\n")
    cfg = load_section("extract", tmp_path / "p.yaml")
    assert cfg.face_detector == "haar" and cfg.face_detector.cls is HaarDetector
    assert cfg.face_detector.config == HaarDetector.Config(min_face=0.2)
    assert dataclasses.asdict(cfg)["face_detector"] == "haar"   # what records and params hashes see
    assert dataclasses.replace(cfg, face_detector="blazeface", face_options={}).face_detector.cls.name == "blazeface"


def test_availability_is_checked_by_the_stage_that_runs_the_component(tmp_path):
    from pipeline.registry import Unavailable, check_available

    (tmp_path / "p.yaml").write_text(f"corrupt:\n  noise_source: folder\n  noise_options: {{dir: {tmp_path / 'none'}}}\n")
    cfg = load_section("corrupt", tmp_path / "p.yaml")   # another stage may load it: nothing needs installing
    with pytest.raises(Unavailable, match="noise source folder: .*does not exist"):
        check_available(cfg)


def test_the_device_is_resolved_once_when_params_load(tmp_path, monkeypatch):
    import torch

    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: asked.append(1) or False)
    (tmp_path / "p.yaml").write_text("encode:\n  device: auto\ntrain:\n  device: cuda\n")
    encode = load_section("encode", tmp_path / "p.yaml")
    assert encode.device == "cpu" and len(asked) == 1
    assert dataclasses.replace(encode, batch_size=2).device == "cpu" and len(asked) == 1   # never asked again
    with pytest.raises(ConfigError, match="train.device: 'cuda', but torch sees no CUDA device; install a CUDA build"):
        load_section("train", tmp_path / "p.yaml")
