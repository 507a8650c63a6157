"""Follow the main face through sampled frames: the face continuing the track, else the largest and most
central confident one."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .align import align_face
from .base import Face, FaceDetector, iou

# A new track starts on the largest, most central face among those scoring at least this share of the
# best score: Haar's weak false positives (e.g. on clothing) can be larger than the real face.
_CONFIDENT_SHARE = 0.5
# A face continues the track when it overlaps the last chosen box at least this much.
_MIN_TRACK_IOU = 0.1
# Sampled frames the tracked face may be missing before another face may take over: a detector miss
# on the main face must not hand the track to a bystander.
TRACK_PATIENCE = 2


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


def _prominence(box: tuple, shape: tuple[int, ...]) -> float:
    # Area minus twice the squared offset from the frame centre, as insightface ranks faces.
    area = (box[2] - box[0]) * (box[3] - box[1])
    dx = (box[0] + box[2]) / 2 - shape[1] / 2
    dy = (box[1] + box[3]) / 2 - shape[0] / 2
    return area - 2.0 * (dx * dx + dy * dy)
