"""A component of any kind is one class plus one registration line: a throwaway one of each kind, defined
here and registered with `Registry.add`, is listed by `mer doctor`, accepted by the params checks with its
options, and run by the code that uses its kind, with no edit anywhere else."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from media_fixtures import write_clip
from typer.testing import CliRunner

from pipeline import doctor
from pipeline.cli import app
from pipeline.config import ConfigError, CorruptConfig, EncoderSpec, ExtractConfig, PrepareConfig, RunConfig
from pipeline.corrupt import NOISE_SOURCES, CorruptedView, NoiseSource, corrupt_audio, make_source
from pipeline.datasets import ADAPTERS, Adapter, Candidate
from pipeline.encoders import ENCODERS, Encoder
from pipeline.executors import EXECUTORS, Executor
from pipeline.media.asr import ASR_ENGINES, ASREngine
from pipeline.media.faces import DETECTORS, Face, FaceDetector
from pipeline.registry import summary
from pipeline.training.families import FAMILIES, Fusion

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ClipsConfig:
    label: str = "happy"


class Clips(Adapter):
    """Every .mp4 under the root, one training item each, all with one label."""

    name = "clips"
    Config = ClipsConfig

    def read(self, root):
        for path in sorted(root.glob("*.mp4")):
            yield Candidate(path.stem, "train", path.name, label=self.config.label, speaker=path.stem)


@dataclass(frozen=True)
class CentreConfig:
    share: float = 0.5   # box side, share of the frame's shorter side


class Centre(FaceDetector):
    """A square in the middle of the frame."""

    name = "centre"
    Config = CentreConfig

    def detect(self, rgb):
        h, w = rgb.shape[:2]
        half = self.config.share * min(h, w) / 2
        return [Face((w / 2 - half, h / 2 - half, w / 2 + half, h / 2 + half), 1.0)]


class Samples(ASREngine):
    """Says how many samples it heard."""

    name = "samples"
    default_model = "counter"

    def __call__(self, audio):
        return f"{len(audio)} samples"


@dataclass(frozen=True)
class InOrderConfig:
    pass


class InOrder(Executor):
    """Each task in turn, in this process."""

    name = "in-order"
    Config = InOrderConfig

    def map(self, fn, tasks, workers):
        return map(fn, tasks)


@dataclass(frozen=True)
class HumConfig:
    hz: float = 50.0


class Hum(NoiseSource):
    """Mains hum: a sine at `hz`."""

    name = "hum"
    Config = HumConfig

    def pick(self, rng):
        t = np.arange(16000) / 16000
        return "hum", np.sin(2 * np.pi * self.config.hz * t + rng.uniform(0, 2 * np.pi)).astype(np.float32)


@dataclass(frozen=True)
class LoudnessConfig:
    scale: float = 1.0


class Loudness(Encoder):
    """The clip's RMS level and peak, scaled."""

    name = "loudness"
    family = "test"
    version = "1"
    modality = "audio"
    Config = LoudnessConfig
    packages = ("numpy",)

    def encode(self, batch):
        return [np.array([np.sqrt(np.mean(w * w)), np.abs(w).max()], np.float32) * self.config.scale
                if len(w) else None for w in batch]

    def _dummy(self):
        return np.ones(100, np.float32)


class Boosted(Fusion):
    """The attention fusion under another name."""

    name = "boosted"


KINDS = [(ADAPTERS, Clips, {"label": "sad"}), (DETECTORS, Centre, {"share": 0.8}), (ASR_ENGINES, Samples, None),
         (NOISE_SOURCES, Hum, {"hz": 60.0}), (EXECUTORS, InOrder, {}), (ENCODERS, Loudness, {"scale": 2.0}),
         (FAMILIES, Boosted, None)]


@pytest.fixture
def registered():
    for registry, cls, _ in KINDS:
        registry.add(cls)   # the one line that registers a component
    yield
    for registry, cls, _ in KINDS:
        del registry[cls.name]


def params_choosing_them(tmp_path: Path, **bad) -> Path:
    raw = {"prepare": {"adapter": "clips", "options": {"label": "sad"}},
           "extract": {"face_detector": "centre", "face_options": {"share": 0.8}, "asr": "samples"},
           "run": {"executor": "in-order"},
           "corrupt": {"noise_source": "hum", "noise_options": {"hz": 60.0}},
           "encode": {"features": {"loud": {"encoder": "loudness", "options": {"scale": 2.0}}}},
           "train": {"model": "boosted"}}
    for key, value in bad.items():
        section, name = key.split("__")
        raw[section][name] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path / "params.yaml"


def test_mer_doctor_lists_each_and_checks_the_chosen_one_with_its_options(registered, tmp_path):
    sections = doctor.load_sections(params_choosing_them(tmp_path), True)
    rows = {label: (ok, why) for label, ok, why in doctor.registry_rows(sections) + doctor.encoder_rows(sections["encode"])}
    for registry, cls, _ in KINDS:
        chosen = registry is not ENCODERS   # encode.features.<name>.encoder names no one entry
        label = f"{registry.kind} {cls.name}" + (f" ({registry.key})" if chosen else "")
        assert rows[label] == (True, summary(cls)), label
    assert rows["feature loud: loudness"] == (True, summary(Loudness))


@pytest.mark.parametrize("registry, cls, options", [k for k in KINDS if k[2]], ids=[k[1].name for k in KINDS if k[2]])
def test_the_params_checks_take_its_options_and_refuse_an_unknown_one(registered, registry, cls, options):
    assert registry.config(cls.name, options)[1] == cls.Config(**options)
    with pytest.raises(ConfigError, match="nope"):
        registry.config(cls.name, {"nope": 1})


def test_params_can_choose_a_new_model_family(registered, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {"model": "boosted"}}))
    rows = {label: ok for label, ok, _ in doctor.registry_rows(doctor.load_sections(tmp_path / "params.yaml", True))}
    assert rows["model family boosted (train.model)"]


def test_a_bad_option_stops_params_loading_naming_it(registered, tmp_path):
    with pytest.raises(ConfigError, match="size"):
        doctor.load_sections(params_choosing_them(tmp_path, extract__face_options={"size": 3}), True)


def test_help_lists_a_new_asr_engine(registered):
    result = CliRunner().invoke(app, ["predict", "--help"])
    assert "samples" in result.output and "faster-whisper" in result.output


def test_each_runs_through_the_code_that_uses_its_kind(registered, tmp_path):
    from pipeline.datasets.prepare import prepare
    from pipeline.encode import encode_feature
    from pipeline.extract import extract
    from pipeline.store.features import FeatureStore
    from pipeline.store.media import MediaStore
    from pipeline.training.families import family

    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(3):
        write_clip(root / f"clip{i}.mp4", seconds=1.0 + 0.5 * i, fps=10, size=96)   # three different audio tracks
    prepared = prepare(PrepareConfig(adapter="clips", root=str(root), options={"label": "sad"}),
                       tmp_path / "manifest.parquet", tmp_path / "rejects.csv")
    assert list(prepared.manifest["label"]) == ["sad"] * 3

    run = RunConfig(executor="in-order")
    cfg = ExtractConfig(face_detector="centre", face_options={"share": 0.8}, asr="samples")
    summary, failures = extract(prepared.manifest, root, tmp_path / "media.zarr", cfg, run=run)
    view = MediaStore(tmp_path / "media.zarr").view()
    assert not failures and summary["no_face"] == 0
    assert view["transcript"].str.endswith(" samples").all() and (view["transcript_source"] == "asr:samples:counter").all()

    source = make_source(CorruptedView(cfg=CorruptConfig(noise_source="hum", noise_options={"hz": 60.0})))
    speech = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)
    _, info = corrupt_audio(speech, source, 5.0, np.random.default_rng(1))
    assert isinstance(source, Hum) and set(info["noise"]) == {"hum"}
    assert info["measured_snr_db"] == pytest.approx(5.0, abs=0.01)

    done = encode_feature(EncoderSpec("loudness", {"scale": 2.0}), [tmp_path / "media.zarr"], tmp_path / "loud.zarr",
                          executor=run.executor, workers=2)
    assert done == {"encoded": 3, "missing": 0, "failed": 0, "dim": 2}
    assert FeatureStore(tmp_path / "loud.zarr").meta()["identity"]["encoder"] == "loudness"

    assert family("boosted") is Boosted   # training looks the family up by train.model


def test_the_components_doc_is_the_registries_as_they_are():
    """Regenerate with `python -m pipeline.doctor > docs/components.md`."""
    assert (REPO / "docs" / "components.md").read_text() == doctor.components_markdown()


def test_a_name_registered_twice_or_of_another_kind_is_refused():
    with pytest.raises(ValueError, match="the name is taken"):
        ENCODERS.add(ENCODERS["egemaps"])
    with pytest.raises(ValueError, match="it is a face detector"):
        ENCODERS.add(Centre)



def python_blocks(path: Path) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", path.read_text(), flags=re.S | re.M)


def test_contributing_examples_run(tmp_path):
    """Each kind's worked example in CONTRIBUTING.md registers one component that then works."""
    registries = [ADAPTERS, DETECTORS, ASR_ENGINES, NOISE_SOURCES, EXECUTORS, ENCODERS, FAMILIES]
    before = {id(r): set(r) for r in registries}
    blocks = python_blocks(REPO / "CONTRIBUTING.md")
    try:
        for block in blocks:
            exec(compile(block, "CONTRIBUTING.md", "exec"), {})
        added = {r.kind: set(r) - before[id(r)] for r in registries}
        assert added == {"corpus adapter": {"folder-per-label"}, "face detector": {"centre"}, "ASR engine": {"silence"},
                         "noise source": {"hum"}, "executor": {"serial"}, "encoder": {"levels"},
                         "model family": {"wide-fusion"}}
        (vec,) = ENCODERS.make("levels", {"frames": 3}).encode([np.linspace(-1, 1, 900, dtype=np.float32)])
        assert vec.shape == (3,)
        (face,) = DETECTORS.make("centre").detect(np.zeros((100, 200, 3), np.uint8))
        assert face.box == (70.0, 20.0, 130.0, 80.0)
        (tmp_path / "happy").mkdir()
        write_clip(tmp_path / "happy" / "001.wav", seconds=0.5, with_video=False)
        (candidate,) = ADAPTERS.make("folder-per-label").read(tmp_path)
        assert (candidate.sample_id, candidate.path, candidate.label) == ("happy-001", "happy/001.wav", "happy")
        assert ASR_ENGINES.make("silence")(np.zeros(100, np.float32)) == ""
        assert NOISE_SOURCES.make("hum", {"hz": 60}).pick(np.random.default_rng(0))[0] == "hum"
        assert list(EXECUTORS.make("serial").map(abs, [-1, -2], 1)) == [1, 2]
        assert FAMILIES.lookup("wide-fusion").section is not None
    finally:
        for registry in registries:
            for name in set(registry) - before[id(registry)]:
                del registry[name]
