"""Typed, frozen views of `params.yaml`, one dataclass per section.

DVC owns `params.yaml` (`dvc exp run -S` rewrites it), so the code only reads it: each stage loads
its own section, unknown keys are rejected with the key's name, and nothing is written back.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

from pipeline.errors import MerError
from pipeline.labels import MER_LABELS
from pipeline.modalities import ALL_SUBSETS, MODALITIES, SUBSET_RULE, is_subset_code


class ConfigError(MerError, ValueError):
    """params.yaml does not match what the code expects."""


class Choice(str):
    """A component's name as params.yaml gives it (records and hashes see that very string), resolved by
    its registry when the section is built: `cls`, the component's class, and `config`, its Config built
    from the options. Users of a section never look a name up again."""
    cls: type
    config: Any

    def make(self, **runtime):
        """An instance (Unavailable where it cannot run here); runtime knobs never shape an output."""
        return self.cls(self.config, **runtime)

    def library_versions(self) -> dict[str, str]:
        """The versions of the libraries this component runs with these options (its fingerprint's)."""
        return self.cls.library_versions(self.config)


def choice(registry: str, default: Any = dataclasses.MISSING) -> Any:
    """A field naming an entry of `registry` ("module:NAME"); its options are in the field the registry's
    options_key names. Module paths keep this module free of the components' imports."""
    return field(default=default, metadata={"registry": registry})


def device(key: str, default: str) -> Any:
    """A torch device field (params key `key`): auto | cpu | cuda | cuda:N, resolved when built."""
    return field(default=default, metadata={"device": key})


class Resolved:
    """Base of the configs with choice or device fields: each is checked and resolved once, when built."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if "registry" in f.metadata:
                object.__setattr__(self, f.name, self._resolve(f))
            elif "device" in f.metadata:
                object.__setattr__(self, f.name, resolve_device(getattr(self, f.name), f.metadata["device"]))

    def _resolve(self, f: dataclasses.Field) -> Choice:
        module, _, name = f.metadata["registry"].partition(":")
        registry = getattr(importlib.import_module(module), name)
        options = getattr(self, registry.options_key.rpartition(".")[2]) if registry.options_key else {}
        value = Choice(getattr(self, f.name))
        value.cls, value.config = registry.config(value, options)
        return value

    def choices(self) -> list[Choice]:
        """The Choice values of this config and of the configs it holds."""
        found = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            for v in value.values() if isinstance(value, dict) else [value]:
                found += [v] if isinstance(v, Choice) else v.choices() if isinstance(v, Resolved) else []
        return found


def resolve_device(value: str, key: str) -> str:
    """auto: cuda when torch sees a GPU, else cpu; cuda (or cuda:N) without one fails here, with the fix."""
    if value not in ("auto", "cpu", "cuda") and not (value.startswith("cuda:") and value[5:].isdigit()):
        raise ConfigError(f"{key}: {value!r} is not a device; allowed: auto, cpu, cuda, cuda:N")
    if value == "cpu":
        return value   # no torch import for the common case
    import torch

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available():
        raise ConfigError(f"{key}: {value!r}, but torch sees no CUDA device; install a CUDA build of torch "
                          f"(docs/gpu.md) or set {key}: cpu")
    return value


@dataclass(frozen=True)
class BaseConfig:
    seed: int = 0


@dataclass(frozen=True)
class DemoConfig:
    """The generated demo corpus (pipeline/demo): what `generate_corpus` makes."""
    seed: int = 0
    n_train: int = 120            # labelled training clips
    n_test1: int = 40             # labelled test clips (MER-MULTI)
    n_test2: int = 40             # labelled test clips (MER-NOISE; the pipeline corrupts them later)
    n_test3_labelled: int = 40    # MER-SEMI evaluated clips
    n_unlabelled: int = 120       # MER-SEMI unlabelled pool (true label kept in a separate column)
    seconds: float = 2.0
    fps: int = 15
    size: int = 160               # square frame side in pixels
    n_speakers: int = 8
    audio_strength: float = 0.6   # 0 = no emotion information in that modality, 1 = very clear
    visual_strength: float = 0.6
    text_strength: float = 0.6


@dataclass(frozen=True)
class PrepareConfig(Resolved):
    adapter: str = choice("pipeline.datasets:ADAPTERS", "demo")   # `mer doctor` lists the adapters
    root: str = "data/demo"          # corpus root; every media path must stay inside it
    options: dict[str, Any] = field(default_factory=dict)  # the adapter's Config options (`mer doctor` lists them)
    label_map: dict[str, str] = field(default_factory=dict)  # corpus label -> project label ("" = leave out)
    max_reject_rate: float = 0.05
    labels: tuple[str, ...] = MER_LABELS  # the project's label set, in model order

    def __post_init__(self):
        super().__post_init__()
        wrong = {k: v for k, v in self.label_map.items() if v != "" and v not in self.labels}
        if wrong:
            raise ConfigError(f"prepare.label_map maps onto labels outside prepare.labels {list(self.labels)}: {wrong}")


@dataclass(frozen=True)
class ExtractOutputs(Resolved):
    """The extract.* keys that shape what extraction produces: a store item's params hash, the params of
    the stages that extract in dvc.yaml and a checkpoint's record of how its clips were extracted (so
    `mer predict` extracts new clips the same way) all list exactly these."""
    fps: float = 5.0
    max_frames: int = 32
    face_size: int = 112
    face_quality: int = 92           # the stored crops: JPEG at this quality (1-100) | 0 = lossless (PNG)
    face_detector: str = choice("pipeline.media.faces:DETECTORS", "blazeface")  # `mer doctor` lists them
    face_options: dict[str, Any] = field(default_factory=dict)  # that detector's Config options
    face_source: str = "detect"      # detect (in the decoded frames) | shipped (the corpus's aligned faces, face_path)
    audio_source: str = "video"      # video (its decoded audio track) | shipped (the corpus's own audio, audio_path)
    asr: str = choice("pipeline.media.asr:ASR_ENGINES", "none")  # none | faster-whisper | whisper
    asr_options: dict[str, Any] = field(default_factory=dict)  # that engine's Config options: model, language, window


@dataclass(frozen=True)
class ExtractRuntime(Resolved):
    """The extract.* knobs of how extraction runs; no item depends on them."""
    workers: int = 0                 # local processes; 0 = all cores
    clips_per_part: int = 64
    max_failure_rate: float = 0.1    # whether the stage fails, not what it writes (dvc.yaml lists it too)


@dataclass(frozen=True)
class ExtractConfig(ExtractRuntime, ExtractOutputs):
    """params.yaml's extract section: ExtractOutputs and ExtractRuntime as one flat mapping."""
    OUTPUT_KEYS: ClassVar[tuple[str, ...]] = tuple(f.name for f in dataclasses.fields(ExtractOutputs))


@dataclass(frozen=True)
class CorruptConfig(Resolved):
    splits: tuple[str, ...] = ("test2",)
    snr_db: tuple[int, ...] = (5, 6, 7, 8, 9, 10)
    blur: tuple[int, ...] = (1, 2, 4)
    noise_source: str = choice("pipeline.corrupt:NOISE_SOURCES", "babble")  # babble | white | pink | folder
    noise_options: dict[str, Any] = field(default_factory=dict)  # that source's Config options, e.g. folder: {dir: ...}
    reencode: bool = False
    robustness_snr_db: tuple[float, ...] = ()   # extra fixed-SNR views for robustness curves
    robustness_blur: tuple[int, ...] = ()      # extra fixed-blur views (clean audio) for robustness curves
    max_failure_rate: float = 0.1    # fail above this share of corrupted items that could not be extracted


@dataclass(frozen=True)
class EncoderSpec(Resolved):
    encoder: str = choice("pipeline.encoders:ENCODERS")
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EncodeConfig(Resolved):
    features: dict[str, EncoderSpec] = field(default_factory=dict)  # feature name -> encoder
    batch_size: int = 16
    device: str = device("encode.device", "auto")   # auto | cpu | cuda | cuda:N
    max_failure_rate: float = 0.1
    items_per_part: int = 256        # items per task and per committed store part (the unit of resume)
    workers: int = 1                 # 1: one process, torch on all cores; N: N single-threaded processes (run.executor)


@dataclass(frozen=True)
class RunConfig(Resolved):
    """params.yaml's run section: where the stages that cut their items into store parts (extract, corrupt,
    encode) send their tasks; no output depends on it."""
    executor: str = choice("pipeline.executors:EXECUTORS", "local")  # local | dask
    executor_options: dict[str, Any] = field(default_factory=dict)  # that executor's Config options


@dataclass(frozen=True)
class FusionParams:
    """train.fusion: the attention fusion's hyperparameters."""
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    dropout: float = 0.3
    hidden: tuple[int, ...] = (256, 128)
    attention_norm: Literal["none", "softmax"] = "none"  # none (the baseline's code) | softmax (the paper's Eq. 5)
    precision: Literal["fp32", "bf16"] = "fp32"  # fp32 | bf16 (autocast matmuls, fp32 weights, loss and Adam)


@dataclass(frozen=True)
class LightGBMParams:
    """train.lightgbm: the LightGBM early-fusion baseline's hyperparameters."""
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    colsample_bytree: float = 0.5
    subsample: float = 1.0
    reg_lambda: float = 0.0


@dataclass(frozen=True)
class FineGrainedParams:
    """train.fine_grained: the label-list model (MER-FG), trained when the corpus has label lists."""
    wheel: str = ""                  # an emotion-wheel folder whose format.csv folds word forms; "" = suffix fold
    min_count: int = 1               # words in fewer training lists are left out of the vocabulary
    max_labels: int = 5              # the most words a predicted list holds


@dataclass(frozen=True)
class TrainConfig(Resolved):
    model: str = choice("pipeline.training.families:FAMILIES", "fusion")  # fusion | lightgbm
    features: dict[str, str] = field(default_factory=dict)  # modality -> feature name
    folds: int = 5
    group_by: Literal["", "speaker"] = ""
    feature_norm: Literal["none", "standard"] = "none"  # none (MER 2023) | standard (z-score with training statistics)
    fusion: FusionParams = field(default_factory=FusionParams)
    lightgbm: LightGBMParams = field(default_factory=LightGBMParams)
    fine_grained: FineGrainedParams = field(default_factory=FineGrainedParams)
    seeds: tuple[int, ...] = (0,)
    ablation: tuple[str, ...] = ALL_SUBSETS
    # what only steers the run:
    device: str = device("train.device", "cpu")     # auto | cpu | cuda | cuda:N: where the fusion trains


@dataclass(frozen=True)
class PseudolabelConfig:
    eta: float = 0.5
    max_per_class: int = 0           # 0 = no cap
    max_per_labelled: float = 2.0    # per class, at most this many per labelled item of the class; 0 = no cap
    weight: float = 1.0              # loss weight of a pseudo-labelled item
    rounds: dict[str, str] = field(default_factory=dict)  # round name -> the predictions it starts from

    @property
    def final_round(self) -> str:
        """The last round: MER-SEMI is scored on its predictions."""
        if not self.rounds:
            raise ConfigError("pseudolabel.rounds is empty: MER-SEMI needs at least one round")
        return list(self.rounds)[-1]


@dataclass(frozen=True)
class EvaluateConfig(Resolved):
    protocol: str = choice("pipeline.protocols:PROTOCOLS", "mer2023")  # mer2023 | semi | fg
    wheel: str = ""                  # fg: the folder of the organisers' emotion-wheel files
    noise_view: str = "noisy"        # the view MER-NOISE (test2) is scored on: a corrupt view, or "clean"
                                     # (test2 as the corpus has it)


def above(lo: float):
    return (lambda v: v > lo), f"> {lo}"


def at_least(lo: float):
    return (lambda v: v >= lo), f">= {lo}"


def within(lo: float, hi: float):
    return (lambda v: lo <= v <= hi), f"in [{lo}, {hi}]"


def one_of(*choices: str):
    return (lambda v: v in choices), f"one of {', '.join(map(repr, choices))}"


def listed(check=None):
    """A non-empty list, each value passing `check`."""
    ok, text = check or ((lambda v: True), "")
    return (lambda v: len(v) > 0 and all(ok(x) for x in v)), "a non-empty list" + (f" of values {text}" if text else "")


def label_set():
    """Two or more labels (one class is no classification), none empty, none repeated."""
    return ((lambda v: len(v) >= 2 and len(set(v)) == len(v) and all(x.strip() for x in v)),
            "a list of two or more different, non-empty labels")


def each(check):
    """A list (maybe empty), each value passing `check`."""
    ok, text = check
    return (lambda v: all(ok(x) for x in v)), f"a list of values {text}"


RATE = within(0, 1)
POWER_OF_TWO = (lambda v: v >= 1 and v & (v - 1) == 0, "a power of two")
MODALITY_FEATURES = (lambda v: set(v) <= set(MODALITIES), f"a mapping from {', '.join(MODALITIES)} to feature names")
# Allowed values per key, checked when params load: a bad value fails there, naming key, value and range,
# instead of surfacing later as a ZeroDivisionError or a model trained with a negative learning rate.
RANGES: dict[str, tuple] = {
    "demo.n_train": at_least(0), "demo.n_test1": at_least(0), "demo.n_test2": at_least(0),
    "demo.n_test3_labelled": at_least(0), "demo.n_unlabelled": at_least(0), "demo.seconds": above(0),
    "demo.fps": above(0), "demo.size": at_least(32), "demo.n_speakers": at_least(1),
    "demo.audio_strength": RATE, "demo.visual_strength": RATE, "demo.text_strength": RATE,
    "prepare.max_reject_rate": RATE, "prepare.labels": label_set(),
    "extract.fps": above(0), "extract.max_frames": at_least(1), "extract.face_size": at_least(8),
    "extract.face_quality": within(0, 100),
    "extract.face_source": one_of("detect", "shipped"), "extract.audio_source": one_of("video", "shipped"),
    "extract.workers": at_least(0), "extract.clips_per_part": at_least(1), "extract.max_failure_rate": RATE,
    "corrupt.snr_db": listed(), "corrupt.blur": listed(POWER_OF_TWO), "corrupt.robustness_blur": each(POWER_OF_TWO),
    "corrupt.max_failure_rate": RATE,
    "encode.batch_size": at_least(1), "encode.max_failure_rate": RATE, "encode.items_per_part": at_least(1),
    "encode.workers": at_least(1),
    "train.fusion.epochs": at_least(1), "train.fusion.batch_size": at_least(1), "train.fusion.lr": above(0),
    "train.fusion.weight_decay": at_least(0), "train.fusion.dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.fusion.hidden": listed(at_least(1)), "train.folds": at_least(2),
    "train.seeds": listed(), "train.ablation": each((is_subset_code, SUBSET_RULE)),
    "train.features": MODALITY_FEATURES,
    "train.lightgbm.n_estimators": at_least(1), "train.lightgbm.learning_rate": above(0),
    "train.lightgbm.num_leaves": at_least(2), "train.lightgbm.min_child_samples": at_least(1),
    "train.lightgbm.colsample_bytree": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "train.lightgbm.subsample": (lambda v: 0 < v <= 1, "in (0, 1]"), "train.lightgbm.reg_lambda": at_least(0),
    "train.fine_grained.min_count": at_least(1), "train.fine_grained.max_labels": at_least(1),
    "pseudolabel.eta": RATE, "pseudolabel.max_per_class": at_least(0), "pseudolabel.max_per_labelled": at_least(0),
    "pseudolabel.weight": at_least(0),
}


# Keys that moved, old -> new: a params.yaml still using one fails naming where it went.
MOVED: dict[str, str] = {
    "extract.asr_model": "extract.asr_options.model", "extract.asr_language": "extract.asr_options.language",
    "extract.asr_window": "extract.asr_options.window",
    "extract.executor": "run.executor", "extract.executor_options": "run.executor_options",
    **{f"train.{f.name}": f"train.fusion.{f.name}" for f in dataclasses.fields(FusionParams)},
}


def check_ranges(values: dict[str, Any], where: str) -> None:
    for key, value in values.items():
        ok, allowed = RANGES.get(f"{where}.{key}", (None, ""))
        if ok is not None and not ok(value):
            raise ConfigError(f"{where}.{key}: {value!r} is out of range; allowed: {allowed}")


SECTIONS: dict[str, type] = {
    "base": BaseConfig,
    "demo": DemoConfig,
    "prepare": PrepareConfig,
    "extract": ExtractConfig,
    "corrupt": CorruptConfig,
    "encode": EncodeConfig,
    "run": RunConfig,
    "train": TrainConfig,
    "pseudolabel": PseudolabelConfig,
    "evaluate": EvaluateConfig,
}


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such params file; pass --params with the project's params.yaml") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid YAML ({err}); fix the file") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return raw


def load_section(name: str, path: str | Path = "params.yaml"):
    """The typed, frozen config of one params.yaml section (defaults where a key is absent)."""
    raw = load_params(path).get(name) or {}
    return build(SECTIONS[name], raw, where=name)


def build(cls: type, raw: dict[str, Any], where: str):
    """Build dataclass `cls` from a mapping, converting nested types and rejecting unknown keys."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    moved = [f"{where}.{k}" for k in unknown if f"{where}.{k}" in MOVED]
    if moved:
        raise ConfigError(f"{moved[0]} is now {MOVED[moved[0]]}: move its value there in your params.yaml")
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    required = [name for name, f in fields.items() if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and name not in raw]
    if required:
        raise ConfigError(f"{where}: missing key(s) {required}; add them to this section of your params.yaml")
    hints = typing.get_type_hints(cls)
    values = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in raw.items()}
    check_ranges(values, where)
    return cls(**values)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin is tuple:
        if value is None:   # an empty YAML value: no items (not one empty item)
            value = []
        if not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_convert(args[0], v, where) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is out of range; allowed: one of {', '.join(map(repr, args))}")
        return value
    if origin in (typing.Union, types.UnionType):
        return value
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and value is None:
        return ""
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value
