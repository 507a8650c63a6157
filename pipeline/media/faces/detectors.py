"""The other face detectors: OpenCV's Haar cascade (boxes only; the fallback), insightface's SCRFD
(5 landmarks), the whole frame (corpora of face crops) and `auto` (the whole frame for small stills,
BlazeFace for the rest)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import ConfigError
from pipeline.environment import folder_digest

from .base import Face, FaceDetector
from .blazeface import BlazeFaceConfig, BlazeFaceDetector


@dataclass(frozen=True)
class HaarConfig:
    cascade: str = "haarcascade_frontalface_default.xml"
    # smallest face searched, share of the frame's shorter side: 0.125 finds the faces of wide shots
    # (films, TV); 0.25 suits close-ups at about 0.6x the cost
    min_face: float = 0.125
    scale_factor: float = 1.1    # size step between searched face sizes (1.2 is faster but misses faces)
    min_neighbors: int = 5

    def __post_init__(self):
        if not 0 < self.min_face <= 1:
            raise ConfigError(f"min_face is a share of the frame's shorter side, in (0, 1]; got {self.min_face}")
        if self.scale_factor <= 1:
            raise ConfigError(f"haar scale_factor: {self.scale_factor} must be > 1")


class HaarDetector(FaceDetector):
    """OpenCV frontal-face cascade on an equalised, downscaled grey image; boxes only."""

    name = "haar"
    Config = HaarConfig
    packages = ("cv2",)
    install = "pip install 'opencv-python-headless<5'"

    def __init__(self, config):
        super().__init__(config)
        self.cascade = cv2.CascadeClassifier(str(self._path(config)))
        # Haar cost grows with pixels, so frames are shrunk until the smallest wanted face is this many
        # pixels. Not down to the cascade's 24 px window: a face that small overlaps too few window positions
        # to reach min_neighbors, and is lost.
        self.min_face_pixels = 2 * min(self.cascade.getOriginalWindowSize())

    @staticmethod
    def _path(config) -> Path:
        return Path(cv2.data.haarcascades) / config.cascade

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        if not hasattr(cv2, "CascadeClassifier"):
            return False, f"OpenCV {cv2.__version__} has no Haar cascades: {cls.install}"
        path = cls._path(config)
        if not path.is_file() or cv2.CascadeClassifier(str(path)).empty():
            return False, (f"OpenCV Haar cascade not found or unreadable: {path} "
                           "(needs opencv-python-headless < 5, which ships the cascades)")
        return True, ""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.min_face_pixels / (self.config.min_face * min(grey.shape)))
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        side = max(1, round(self.config.min_face * min(grey.shape)))
        boxes, _, weights = self.cascade.detectMultiScale3(
            grey, scaleFactor=self.config.scale_factor, minNeighbors=self.config.min_neighbors,
            minSize=(side, side), outputRejectLevels=True)
        return [Face(tuple(float(v) / scale for v in (x, y, x + w, y + h)), float(weight))
                for (x, y, w, h), weight in zip(boxes, np.ravel(weights))]


@dataclass(frozen=True)
class InsightFaceConfig:
    model_dir: str = ""          # a model pack directory holding det_*.onnx, e.g. ~/.insightface/models/buffalo_l
    input_size: int = 640
    threshold: float = 0.5


class InsightFaceDetector(FaceDetector):
    """SCRFD (or another insightface detection model) from a model pack such as buffalo_l/det_10g.onnx."""

    name = "insightface"
    Config = InsightFaceConfig
    packages = ("insightface", "onnxruntime")
    install = "pip install 'mer-pipeline[insightface]'"

    def __init__(self, config):
        super().__init__(config)
        from insightface.model_zoo import get_model

        model_file = _find_det_model(config.model_dir)
        self.model = get_model(str(model_file))
        if self.model is None or not hasattr(self.model, "detect"):
            raise ValueError(f"{model_file} is not an insightface detection model")
        self.input_size = (config.input_size, config.input_size)
        self.model.prepare(ctx_id=-1, input_size=self.input_size)

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        weights = folder_digest(Path(config.model_dir).expanduser()) if config.model_dir else "missing"
        return super().library_versions(config) | {"weights": weights}

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        ok, why = super().available(config)
        if not ok:
            return ok, why
        try:
            _find_det_model(config.model_dir)
        except FileNotFoundError as err:
            return False, str(err)
        return True, ""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        # insightface models take BGR; keyword arguments because detect()'s positional order changed across versions.
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        dets, kpss = self.model.detect(bgr, input_size=self.input_size)
        faces = []
        for i, (x0, y0, x1, y1, score) in enumerate(dets):
            if score >= self.config.threshold:
                landmarks = None if kpss is None else np.asarray(kpss[i], dtype=np.float32)
                faces.append(Face((float(x0), float(y0), float(x1), float(y1)), float(score), landmarks))
        return faces


def _find_det_model(model_dir: str | Path) -> Path:
    if not model_dir:
        raise FileNotFoundError("the insightface detector needs model_dir (extract.face_options.model_dir): "
                                "a model pack directory holding det_*.onnx, e.g. ~/.insightface/models/buffalo_l")
    directory = Path(model_dir).expanduser()
    found = sorted(directory.glob("det_*.onnx"))
    if not found:
        raise FileNotFoundError(f"no det_*.onnx in {directory}: point model_dir at an insightface model "
                                "pack (e.g. buffalo_l with det_10g.onnx)")
    return found[0]


@dataclass(frozen=True)
class WholeFrameConfig:
    pass


def whole_frame(rgb: np.ndarray) -> Face:
    """The frame itself as the face: its crop is the frame resized (longer side fitted), score 0."""
    h, w = rgb.shape[:2]
    return Face((0.0, 0.0, float(w), float(h)), 0.0, margin=1.0)


class WholeFrameDetector(FaceDetector):
    """No detection: every frame is taken as a face crop (FER-2013, AffectNet, RAF-DB, face-crop videos)."""

    name = "whole_frame"
    Config = WholeFrameConfig

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return [whole_frame(rgb)]


@dataclass(frozen=True)
class AutoConfig:
    # frames whose longer side is at most this are taken as crops of one face (FER-2013: 48 px,
    # AffectNet: 224 px); 0 = never
    crop_side: int = 256
    blazeface: BlazeFaceConfig = BlazeFaceConfig()

    def __post_init__(self):
        if self.crop_side < 0:
            raise ConfigError(f"auto crop_side: {self.crop_side} must be >= 0 (0 = never the whole frame)")


class AutoDetector(FaceDetector):
    """The whole frame for small stills (face crops: longer side <= crop_side), BlazeFace for the rest.

    A corpus's own crops keep the framing its expression models were trained on (on FER-2013 the `fer`
    encoder scores better on them than on re-aligned crops: benchmarks/results/real_data.md)."""

    name = "auto"
    Config = AutoConfig

    def __init__(self, config):
        super().__init__(config)
        self.blazeface = BlazeFaceDetector(config.blazeface)

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        return BlazeFaceDetector.available(config.blazeface)

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return BlazeFaceDetector.library_versions(config.blazeface)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        if max(rgb.shape[:2]) <= self.config.crop_side:
            return [whole_frame(rgb)]
        return self.blazeface.detect(rgb)
