"""Find, track and align the main face in sampled frames.

Detectors live in a registry: 'haar' (OpenCV's shipped cascade, always offline) and 'insightface'
(SCRFD from a model pack directory, gives 5 landmarks). A crop is aligned to the ArcFace 5-point
template when landmarks are known, else it is a square around the box.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

# ArcFace 5-point template for a 112x112 crop: left eye, right eye, nose tip, left and right mouth corner.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
# Box-only crops: side = margin x the longer box side, so the crop covers about what the template does.
BOX_MARGIN = 1.2
# A new track starts on the largest, most central face among those scoring at least this share of the
# best score: Haar's weak false positives (e.g. on clothing) can be larger than the real face.
_CONFIDENT_SHARE = 0.5
# A face continues the track when it overlaps the last chosen box at least this much.
_MIN_TRACK_IOU = 0.1
# Sampled frames the tracked face may be missing before another face may take over: a detector miss
# on the main face must not hand the track to a bystander.
TRACK_PATIENCE = 2


@dataclass(frozen=True)
class Face:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 pixels
    score: float                            # detector-specific; higher is surer (Haar: cascade level weight)
    landmarks: np.ndarray | None = None     # (5, 2) x, y: eyes, nose, mouth corners, as in ARCFACE_TEMPLATE


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]: ...


class HaarDetector:
    """OpenCV frontal-face cascade on an equalised, downscaled grey image; boxes only."""

    name = "haar"

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 5, min_face: float = 1 / 8):
        path = Path(cv2.data.haarcascades) / cascade
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise FileNotFoundError(f"OpenCV Haar cascade not found or unreadable: {path} "
                                    "(needs opencv-python-headless < 5, which ships the cascades)")
        if not 0 < min_face <= 1:
            raise ValueError(f"min_face is a share of the frame's shorter side, in (0, 1]; got {min_face}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_face = min_face
        # Haar cost grows with pixels, so frames are shrunk until the smallest wanted face is this many
        # pixels. Not down to the cascade's 24 px window: a face that small overlaps too few window positions
        # to reach min_neighbors, and is lost.
        self.min_face_pixels = 2 * min(self.cascade.getOriginalWindowSize())

    def detect(self, rgb: np.ndarray) -> list[Face]:
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        scale = min(1.0, self.min_face_pixels / (self.min_face * min(grey.shape)))
        if scale < 1.0:
            grey = cv2.resize(grey, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        side = max(1, round(self.min_face * min(grey.shape)))
        boxes, _, weights = self.cascade.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(side, side), outputRejectLevels=True)
        return [Face(tuple(float(v) / scale for v in (x, y, x + w, y + h)), float(weight))
                for (x, y, w, h), weight in zip(boxes, np.ravel(weights))]


class InsightFaceDetector:
    """SCRFD (or another insightface detection model) from a model pack such as buffalo_l/det_10g.onnx."""

    name = "insightface"

    def __init__(self, model_dir: str | Path = "", input_size: int = 640, threshold: float = 0.5):
        missing = [m for m in ("insightface", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            raise RuntimeError(f"the insightface detector needs {', '.join(missing)}: "
                               "pip install 'mer-pipeline[insightface]'")
        model_file = _find_det_model(model_dir)
        from insightface.model_zoo import get_model

        self.model = get_model(str(model_file))
        if self.model is None or not hasattr(self.model, "detect"):
            raise ValueError(f"{model_file} is not an insightface detection model")
        self.model.prepare(ctx_id=-1, input_size=(input_size, input_size))
        self.input_size = (input_size, input_size)
        self.threshold = threshold

    def detect(self, rgb: np.ndarray) -> list[Face]:
        # insightface models take BGR; keyword arguments because detect()'s positional order changed across versions.
        bgr = np.ascontiguousarray(rgb[..., ::-1])
        dets, kpss = self.model.detect(bgr, input_size=self.input_size)
        faces = []
        for i, (x0, y0, x1, y1, score) in enumerate(dets):
            if score >= self.threshold:
                landmarks = None if kpss is None else np.asarray(kpss[i], dtype=np.float32)
                faces.append(Face((float(x0), float(y0), float(x1), float(y1)), float(score), landmarks))
        return faces


def _find_det_model(model_dir: str | Path) -> Path:
    if not model_dir:
        raise FileNotFoundError("the insightface detector needs model_dir (extract.face_model_dir): "
                                "a model pack directory holding det_*.onnx, e.g. ~/.insightface/models/buffalo_l")
    directory = Path(model_dir).expanduser()
    found = sorted(directory.glob("det_*.onnx"))
    if not found:
        raise FileNotFoundError(f"no det_*.onnx in {directory}: point model_dir at an insightface model "
                                "pack (e.g. buffalo_l with det_10g.onnx)")
    return found[0]


DETECTORS: dict[str, Callable[..., FaceDetector]] = {
    "haar": HaarDetector,
    "insightface": InsightFaceDetector,
}


def make_detector(name: str, **options) -> FaceDetector:
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    return DETECTORS[name](**options)


def detector_available(name: str, **options) -> tuple[bool, str]:
    """Whether make_detector(name, **options) works here, and if not, why (loads the model to be sure)."""
    try:
        detector = make_detector(name, **options)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError) as e:
        return False, str(e)
    return True, f"{detector.name} detector ready"


@dataclass
class FaceTrack:
    crops: np.ndarray  # (T, S, S, 3) uint8 RGB aligned crops; zeros where no face
    found: np.ndarray  # (T,) bool
    boxes: np.ndarray  # (T, 4) float32 x0, y0, x1, y1; NaN where no face


def extract_faces(frames: np.ndarray, detector: FaceDetector, size: int = 112) -> FaceTrack:
    """Main face of every frame, aligned to size x size; frames without a face keep found=False."""
    count = len(frames)
    track = FaceTrack(np.zeros((count, size, size, 3), np.uint8), np.zeros(count, bool),
                      np.full((count, 4), np.nan, np.float32))
    previous, misses = None, 0
    for i, rgb in enumerate(frames):
        face = choose_face(detector.detect(rgb), previous, rgb.shape, hold=misses < TRACK_PATIENCE)
        if face is None:
            misses += 1
            continue
        previous, misses = face.box, 0
        track.crops[i] = align_face(rgb, face, size)
        track.found[i] = True
        track.boxes[i] = face.box
    return track


def choose_face(faces: list[Face], previous: tuple | None, shape: tuple[int, ...], hold: bool = False) -> Face | None:
    """The face continuing the track (best overlap with the previous chosen box), else the largest and
    most central confident one; with `hold`, None instead of switching to a face off the track."""
    if not faces:
        return None
    if previous is not None:
        overlaps = [_iou(face.box, previous) for face in faces]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= _MIN_TRACK_IOU:
            return faces[best]
        if hold:
            return None
    best_score = max(face.score for face in faces)
    if best_score > 0:  # a share of a negative score means nothing (Haar weights can be negative)
        faces = [face for face in faces if face.score >= _CONFIDENT_SHARE * best_score]
    return max(faces, key=lambda face: _prominence(face.box, shape))


def _iou(a: tuple, b: tuple) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _prominence(box: tuple, shape: tuple[int, ...]) -> float:
    # Area minus twice the squared offset from the frame centre, as insightface ranks faces.
    area = (box[2] - box[0]) * (box[3] - box[1])
    dx = (box[0] + box[2]) / 2 - shape[1] / 2
    dy = (box[1] + box[3]) / 2 - shape[0] / 2
    return area - 2.0 * (dx * dx + dy * dy)


def align_face(rgb: np.ndarray, face: Face, size: int = 112) -> np.ndarray:
    """size x size RGB crop: similarity-aligned to the ArcFace template, or a square around the box.
    Parts outside the frame are black."""
    matrix = _landmark_transform(face.landmarks, size) if face.landmarks is not None else None
    if matrix is None:
        matrix = _box_transform(face.box, size)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _landmark_transform(landmarks: np.ndarray, size: int) -> np.ndarray | None:
    template = ARCFACE_TEMPLATE * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), template, method=cv2.LMEDS)
    return matrix  # None when the points are degenerate; the caller falls back to the box


def _box_transform(box: tuple, size: int) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    scale = size / (BOX_MARGIN * max(box[2] - box[0], box[3] - box[1]))
    return np.array([[scale, 0.0, size / 2 - scale * cx],
                     [0.0, scale, size / 2 - scale * cy]], dtype=np.float64)
