"""Debug encoders, one per modality: a seeded random projection of a few cheap statistics of the input.

Not emotion features and never a default: they run in milliseconds with numpy alone, so tests and the
worked examples of CONTRIBUTING.md exercise the whole encode path (registry, cache keys, store, training)
without a model. The same item, `dim` and `seed` give the same vector on any machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import ConfigError

from .base import SAMPLE_RATE, Encoder, VisualEncoder, finite_or_none, has_text, is_silent


@dataclass(frozen=True)
class ProjectionConfig:
    dim: int = 16     # output size
    seed: int = 0     # of the projection matrix

    def __post_init__(self):
        if self.dim < 1:
            raise ConfigError(f"dim: {self.dim} must be >= 1")


class Projection:
    """What the debug encoders share: their Config, library and projection."""

    family = "debug-projection"
    version = "1"
    Config = ProjectionConfig
    packages = ("numpy",)
    install = "pip install numpy"

    def project(self, stats: np.ndarray) -> np.ndarray:
        """stats [..., S] -> [..., dim] through an S x dim Gaussian matrix drawn from `seed`."""
        matrix = np.random.default_rng(self.config.seed).standard_normal((stats.shape[-1], self.config.dim))
        return np.tanh(stats @ matrix).astype(np.float32)


class AudioProjection(Projection, Encoder):
    """Debug only, not a real encoder: a random projection of loudness, zero crossings and length."""

    name = "debug-audio"
    modality = "audio"

    def encode(self, batch) -> list[np.ndarray | None]:
        return [None if is_silent(wave) else finite_or_none(self.project(audio_stats(wave))) for wave in batch]

    def _dummy(self):
        return np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)


class TextProjection(Projection, Encoder):
    """Debug only, not a real encoder: a random projection of character and word counts."""

    name = "debug-text"
    modality = "text"

    def encode(self, batch) -> list[np.ndarray | None]:
        return [finite_or_none(self.project(text_stats(text))) if has_text(text) else None for text in batch]

    def _dummy(self):
        return "hello world"


class VisualProjection(Projection, VisualEncoder):
    """Debug only, not a real encoder: a random projection of each face frame's mean and spread of colour."""

    name = "debug-visual"

    def embed_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        pixels = np.stack(frames).reshape(len(frames), -1, 3).astype(np.float64) / 255.0
        return self.project(np.concatenate([pixels.mean(1), pixels.std(1)], axis=1))


def audio_stats(wave: np.ndarray) -> np.ndarray:
    wave = np.asarray(wave, np.float64)
    crossings = np.mean(np.abs(np.diff(np.sign(wave)))) / 2 if len(wave) > 1 else 0.0
    return np.array([np.log(np.sqrt(np.mean(wave * wave))), crossings, np.log(len(wave) / SAMPLE_RATE)])


def text_stats(text: str) -> np.ndarray:
    words = text.split()
    return np.array([np.log(len(text)), np.log(len(words) + 1), np.mean([len(w) for w in words] or [0]) / 10,
                     sum(c.isalpha() for c in text) / len(text)])
