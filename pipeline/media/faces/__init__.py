"""Find, track and align the main face in sampled frames, one module per job:
- base.py: what a detector gives (`Face`) and the `FaceDetector` kind;
- blazeface.py: MediaPipe's BlazeFace through LiteRT, 6 landmarks (the default);
- detectors.py: 'haar' (OpenCV's shipped cascade, boxes only; the fallback), 'insightface' (SCRFD from a model
  pack directory, 5 landmarks), 'whole_frame' (the frame is the face: corpora of face crops) and 'auto' (the
  whole frame for small stills, BlazeFace for the rest);
- align.py: a crop aligned to the ArcFace template by a similarity transform when landmarks are known, else
  a square around the box;
- tracking.py: the main face followed from frame to frame.
The detectors' registry is here; `mer doctor` and docs/components.md list them.
"""

from pipeline.registry import Registry

from .align import ARCFACE_TEMPLATE, TEMPLATE_4, align_face
from .base import BOX_MARGIN, Face, FaceDetector, iou
from .blazeface import BlazeFaceDetector
from .detectors import AutoDetector, HaarDetector, InsightFaceDetector, WholeFrameDetector, whole_frame
from .tracking import TRACK_PATIENCE, FaceTrack, choose_face, extract_faces

DETECTORS = Registry("extract.face_detector",
                     BlazeFaceDetector, HaarDetector, InsightFaceDetector, WholeFrameDetector, AutoDetector,
                     options_key="extract.face_options")


def make_detector(name: str, **options) -> FaceDetector:
    return DETECTORS.make(name, options)


__all__ = ["ARCFACE_TEMPLATE", "BOX_MARGIN", "DETECTORS", "TEMPLATE_4", "TRACK_PATIENCE", "Face", "FaceDetector",
           "FaceTrack", "align_face", "choose_face", "extract_faces", "iou", "make_detector", "whole_frame"]
