"""Who speaks in a stretch of video: the faces tracked through its frames, and the track whose mouth
moves with the speech.

Detections are linked frame to frame by box overlap into tracks. An open mouth shows the dark of the
mouth cavity: the darkness of the mouth region (the lower middle of the aligned crop) rises and falls
with the loudness of the speech for the face that talks, and not for a face that listens. The track
whose mouth darkness correlates best with the audio's loudness at the same instants speaks, when that
correlation is clear; otherwise the largest and steadiest face is taken, and the reason says the speaker
could not be told apart (two faces talking in turn within one segment, say).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.media.faces import Face, FaceTrack, align_face, iou

MIN_IOU = 0.3          # a detection continues a track when its box overlaps the track's last one this much
PATIENCE = 3           # frames a track may miss before it ends
MIN_R = 0.3            # a mouth-audio correlation this strong names the speaker ...
MIN_MARGIN = 0.15      # ... when it beats every other track's by this much
MIN_COVERAGE = 0.3     # tracks in fewer of the frames (a passer-by, a false detection) are no candidates
MOUTH_SIZE = 96        # side of the aligned crop the mouth is read from


@dataclass
class Track:
    faces: dict[int, Face] = field(default_factory=dict)   # frame index -> that frame's face

    @property
    def last(self) -> tuple[int, Face]:
        index = max(self.faces)
        return index, self.faces[index]

    def area(self) -> float:
        return float(np.mean([(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]) for f in self.faces.values()]))


@dataclass(frozen=True)
class Choice:
    track: int | None      # index into the tracks; None: no face at all
    reason: str


def link(detections: list[list[Face]]) -> list[Track]:
    """Tracks from per-frame detections: each detection joins the live track it overlaps most, or starts one."""
    tracks: list[Track] = []
    for i, faces in enumerate(detections):
        live = [t for t in tracks if i - t.last[0] <= PATIENCE]
        taken: set[int] = set()
        for face in sorted(faces, key=lambda f: -f.score):
            overlaps = [(iou(face.box, t.last[1].box), n) for n, t in enumerate(live) if n not in taken]
            best = max(overlaps, default=(0.0, -1))
            if best[0] >= MIN_IOU:
                live[best[1]].faces[i] = face
                taken.add(best[1])
            else:
                tracks.append(Track({i: face}))
    return tracks


def mouth_opening(frames: np.ndarray, track: Track) -> np.ndarray:
    """(T,) how dark the track's mouth region is in each frame (open: darker, higher); NaN where it is absent."""
    size = MOUTH_SIZE
    rows, cols = slice(int(0.62 * size), int(0.95 * size)), slice(int(0.2 * size), int(0.8 * size))
    opening = np.full(len(frames), np.nan)
    for i, face in track.faces.items():
        opening[i] = -float(align_face(frames[i], face, size)[rows, cols].mean())
    return opening


def loudness(audio: np.ndarray | None, times: np.ndarray, start: float, rate: int, window: float = 0.066) -> np.ndarray:
    """(T,) RMS of the audio within +-window/2 of each frame time (audio sample 0 is at `start` seconds)."""
    if audio is None or not len(audio):
        return np.zeros(len(times))
    half = int(window * rate / 2)
    centres = np.round((np.asarray(times) - start) * rate).astype(int)
    return np.array([np.sqrt(np.mean(np.square(audio[max(c - half, 0):max(c + half, 1)]))) if 0 <= c < len(audio) else 0.0
                     for c in centres])


def choose_speaker(tracks: list[Track], frames: np.ndarray, times: np.ndarray, audio: np.ndarray | None,
                   start: float, rate: int) -> Choice:
    """The track that speaks (index into `tracks`), and why it was chosen."""
    candidates = [n for n, t in enumerate(tracks) if len(t.faces) >= MIN_COVERAGE * len(frames)] or \
        list(range(len(tracks)))
    if not candidates:
        return Choice(None, "no face")
    if len(candidates) == 1:
        return Choice(candidates[0], "the only face" if len(tracks) == 1 else "the only face in most frames")
    loud = loudness(audio, times, start, rate)
    r = {n: _correlation(mouth_opening(frames, tracks[n]), loud) for n in candidates}
    best, second = sorted(candidates, key=lambda n: -r[n])[:2]
    if r[best] >= MIN_R and r[best] - r[second] >= MIN_MARGIN:
        return Choice(best, f"speaking: mouth opens with the speech (r={r[best]:.2f}, next {r[second]:.2f})")
    steady = max(candidates, key=lambda n: len(tracks[n].faces) * tracks[n].area())
    return Choice(steady, f"largest and steadiest of {len(candidates)} faces: the speaker could not be told apart "
                          f"(mouth-speech r={r[best]:.2f} at best)")


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    both = np.isfinite(a) & np.isfinite(b)
    if both.sum() < 4 or np.std(a[both]) == 0 or np.std(b[both]) == 0:
        return 0.0
    return float(np.corrcoef(a[both], b[both])[0, 1])


def track_crops(frames: np.ndarray, track: Track | None, size: int) -> FaceTrack:
    """The track's aligned crops (found where it has a face), as extract_faces returns the main face's."""
    out = FaceTrack(np.zeros((len(frames), size, size, 3), np.uint8), np.zeros(len(frames), bool),
                    np.full((len(frames), 4), np.nan, np.float32))
    for i, face in (track.faces.items() if track is not None else []):
        out.crops[i], out.found[i], out.boxes[i] = align_face(frames[i], face, size), True, face.box
    return out
