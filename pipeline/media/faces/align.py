"""Align a face crop: a similarity transform to the ArcFace template when landmarks are known, else a
square around the box."""

from __future__ import annotations

import cv2
import numpy as np

from .base import BOX_MARGIN, Face

# ArcFace 5-point template for a 112x112 crop: left eye, right eye, nose tip, left and right mouth corner.
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)
# The same template for detectors giving one mouth point (BlazeFace): eyes, nose tip, mouth centre.
TEMPLATE_4 = np.vstack([ARCFACE_TEMPLATE[:3], ARCFACE_TEMPLATE[3:].mean(0)])
TEMPLATES = {5: ARCFACE_TEMPLATE, 4: TEMPLATE_4}

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
