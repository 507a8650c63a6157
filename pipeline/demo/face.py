"""Talking-face frames from one real photo: scikit-image's astronaut, animated by smooth local warps.

Each frame resamples the photo once, through a similarity transform (the speaker's framing plus small
head motion) composed with a displacement field made of Gaussian bumps on facial landmarks (the
expression, the speaker's resting face, the mouth opening with the speech). Displacements stay a few pixels,
so OpenCV's Haar cascade keeps finding the face.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import skimage.data

# Part of astronaut() around the head, in its own pixel coordinates: head motion and zoom never look
# past it (border reflection covers the rest).
WINDOW_ROWS = slice(0, 300)
WINDOW_COLS = slice(72, 376)
FACE_CENTRE = (224.0, 122.0)  # x, y of the Haar box centre in astronaut()
FACE_WIDTH = 95.0             # Haar box side in astronaut() pixels

# Landmarks (x, y) in astronaut() pixels, read off the photo.
LANDMARKS = {
    "brow_l_out": (191, 92), "brow_l_in": (213, 91), "brow_r_in": (236, 92), "brow_r_out": (259, 94),
    "lid_l_up": (203, 96), "lid_r_up": (247, 98), "lid_l_low": (203, 105), "lid_r_low": (247, 107),
    "cheek_l": (207, 128), "cheek_r": (241, 128),
    "mouth_l": (203, 142), "mouth_r": (246, 141), "lip_up": (224, 140), "lip_low": (224, 151),
    "chin": (224, 172),
}


@dataclass(frozen=True)
class Bump:
    """Content near a landmark moves by (dx, dy) pixels, fading as a Gaussian of width sigma."""
    at: str
    dx: float
    dy: float
    sigma: float = 7.0


# Facial action cues at full intensity, after FACS-like prototypes: the photo already smiles, so each
# class is a displacement from that face.
EXPRESSIONS: dict[str, tuple[Bump, ...]] = {
    "neutral": (Bump("mouth_l", 1, 2.5), Bump("mouth_r", -1, 2.5)),
    "angry": (Bump("brow_l_in", 3, 5.5, 8), Bump("brow_r_in", -3, 5.5, 8), Bump("brow_l_out", 0, 2.5),
              Bump("brow_r_out", 0, 2.5), Bump("lid_l_up", 0, 2.5, 4), Bump("lid_r_up", 0, 2.5, 4),
              Bump("mouth_l", 3, 1.5), Bump("mouth_r", -3, 1.5), Bump("lip_low", 0, -2.5, 6)),
    "happy": (Bump("mouth_l", -3, -5), Bump("mouth_r", 3, -5), Bump("cheek_l", 0, -2.5, 9),
              Bump("cheek_r", 0, -2.5, 9), Bump("lid_l_low", 0, -1.5, 4), Bump("lid_r_low", 0, -1.5, 4)),
    "sad": (Bump("mouth_l", 1, 6.5), Bump("mouth_r", -1, 6.5), Bump("brow_l_in", 0, -5, 6),
            Bump("brow_r_in", 0, -5, 6), Bump("brow_l_out", 0, 2.5), Bump("brow_r_out", 0, 2.5),
            Bump("lid_l_up", 0, 1.5, 4), Bump("lid_r_up", 0, 1.5, 4)),
    "worried": (Bump("brow_l_in", 2.5, -5, 6), Bump("brow_r_in", -2.5, -5, 6), Bump("lid_l_up", 0, -2.5, 4),
                Bump("lid_r_up", 0, -2.5, 4), Bump("mouth_l", -2.5, 3), Bump("mouth_r", 2.5, 3)),
    "surprise": (Bump("brow_l_in", 0, -6.5, 9), Bump("brow_r_in", 0, -6.5, 9), Bump("brow_l_out", 0, -6.5, 9),
                 Bump("brow_r_out", 0, -6.5, 9), Bump("lid_l_up", 0, -2.5, 4), Bump("lid_r_up", 0, -2.5, 4),
                 Bump("lid_l_low", 0, 1.5, 4), Bump("lid_r_low", 0, 1.5, 4), Bump("lip_low", 0, 7, 10),
                 Bump("chin", 0, 5.5, 14), Bump("mouth_l", 2.5, 1.5), Bump("mouth_r", -2.5, 1.5)),
}
# Mouth corners per unit of valence above the class mean: a weak cue for valence regression.
VALENCE_SMILE = (Bump("mouth_l", -0.6, -1.2), Bump("mouth_r", 0.6, -1.2))
# Jaw opening at full speech loudness.
MOUTH_OPEN = (Bump("lip_low", 0, 5, 8), Bump("chin", 0, 3, 12))
# Landmarks a speaker's resting face may shift (idiosyncratic expression, a nuisance for the classifier).
REST_LANDMARKS = ("brow_l_in", "brow_r_in", "mouth_l", "mouth_r", "lid_l_up", "lid_r_up")


@dataclass(frozen=True)
class Look:
    """How one speaker appears: framing, mirroring, colour, resting face."""
    face_fraction: float            # Haar-box width / frame side
    offset: tuple[float, float]     # face centre offset, fraction of the frame side
    mirror: bool
    gains: tuple[float, float, float]
    rest: tuple[Bump, ...]


def speaker_look(rng: np.random.Generator) -> Look:
    rest = tuple(Bump(name, *rng.normal(0, 1.5, 2)) for name in REST_LANDMARKS)
    return Look(face_fraction=float(rng.uniform(0.5, 0.62)), offset=tuple(rng.uniform(-0.05, 0.05, 2)),
                mirror=bool(rng.random() < 0.5), gains=tuple(rng.uniform(0.82, 1.15, 3)), rest=rest)


@lru_cache(maxsize=1)
def _photo() -> np.ndarray:
    return np.ascontiguousarray(skimage.data.astronaut()[WINDOW_ROWS, WINDOW_COLS])


def _displacement(bumps: tuple[Bump, ...] | list[Bump], scale: float = 1.0) -> np.ndarray:
    """(H, W, 2) forward displacement over the window; each Gaussian is separable, so an outer product."""
    ys = np.arange(WINDOW_ROWS.start, WINDOW_ROWS.stop, dtype=np.float32)
    xs = np.arange(WINDOW_COLS.start, WINDOW_COLS.stop, dtype=np.float32)
    field = np.zeros((len(ys), len(xs), 2), np.float32)
    for b in bumps:
        x, y = LANDMARKS[b.at]
        bump = np.outer(np.exp(-0.5 * ((ys - y) / b.sigma) ** 2), np.exp(-0.5 * ((xs - x) / b.sigma) ** 2))
        field[..., 0] += scale * b.dx * bump
        field[..., 1] += scale * b.dy * bump
    return field


def _framing(look: Look, size: int, motion: np.ndarray) -> np.ndarray:
    """2x3 affine from window pixels to frame pixels: the look's framing plus (dx, dy, log-zoom, angle)."""
    dx, dy, log_zoom, angle = motion
    scale = size * look.face_fraction / FACE_WIDTH * np.exp(log_zoom)
    centre = np.array([FACE_CENTRE[0] - WINDOW_COLS.start, FACE_CENTRE[1] - WINDOW_ROWS.start])
    linear = cv2.getRotationMatrix2D((0.0, 0.0), float(angle), float(scale))[:, :2]
    if look.mirror:
        linear[0] = -linear[0]
    target = np.array([size * (0.5 + look.offset[0] + dx), size * (0.5 + look.offset[1] + dy)])
    return np.hstack([linear, (target - linear @ centre)[:, None]])


@lru_cache(maxsize=4)
def _pixels(size: int) -> np.ndarray:
    """(2, size * size) x, y of every frame pixel."""
    return np.mgrid[0:size, 0:size][::-1].reshape(2, -1).astype(np.float32)


def _frame(fields: np.ndarray, weights: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """One frame: each output pixel looks up its window point q, then the photo at q - d(q).

    Sampling at q - d(q) moves the content at q by about d. fields is (H, W, 2k): k displacement
    fields, summed with this frame's k weights.
    """
    inverse = cv2.invertAffineTransform(affine)
    q = (inverse[:, :2] @ _pixels(size) + inverse[:, 2:]).astype(np.float32).reshape(2, size, size)
    d = cv2.remap(fields, q[0], q[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    d = np.einsum("hwkc,k->hwc", d.reshape(size, size, -1, 2), weights.astype(np.float32))
    return cv2.remap(_photo(), q[0] - d[..., 0], q[1] - d[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REFLECT)


def _head_motion(n: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) smooth drift: x, y (frame fractions), log-zoom, angle (degrees); two slow sinusoids each."""
    t = np.arange(n)[:, None] / fps
    amplitude = np.array([0.025, 0.02, 0.03, 3.0])
    motion = np.zeros((n, 4))
    for _ in range(2):
        freq = rng.uniform(0.2, 0.9, 4)
        phase = rng.uniform(0, 2 * np.pi, 4)
        motion += 0.5 * amplitude * np.sin(2 * np.pi * freq * t + phase)
    return motion


def render(look: Look, expression: str, intensity: float, valence_shift: float, opening: np.ndarray,
           size: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """(T, size, size, 3) uint8 RGB frames; `opening` (T,) in [0, 1] is the jaw opening per frame.

    The expression sets in over the first ~0.4 s and then wavers a little, as a held expression does.
    """
    n = len(opening)
    # Three fields: the expression (weighted by its onset), the constant resting face and valence
    # smile, the jaw (weighted by the speech).
    fields = np.concatenate([_displacement(EXPRESSIONS[expression], intensity),
                             _displacement(look.rest) + _displacement(VALENCE_SMILE, valence_shift),
                             _displacement(MOUTH_OPEN)], axis=2)
    t = np.arange(n) / fps
    onset = (1 - np.exp(-t / 0.15)) * (1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.3, 1.0) * t))
    weights = np.stack([onset, np.ones(n), opening], axis=1)
    motion = _head_motion(n, fps, rng)
    gains = (np.asarray(look.gains) * rng.uniform(0.9, 1.1)).astype(np.float32)  # per-clip lighting
    frames = np.empty((n, size, size, 3), np.uint8)
    for i in range(n):
        frame = _frame(fields, weights[i], _framing(look, size, motion[i]), size)
        frames[i] = np.clip(frame * gains, 0, 255).astype(np.uint8)
    return frames
