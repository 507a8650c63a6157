"""Whisper encoder states through CTranslate2: a deep audio encoder that runs offline.

Whisper's encoder always reads a 30 s window (3000 mel frames, zero-padded); its output has one frame per
20 ms. The utterance vector is the mean over the frames that cover real audio only, so that a short clip
is not averaged with the states of its padding. Audio longer than 30 s is read in consecutive windows
and all their valid frames are averaged. Weights: pipeline/media/whisper.py (packaged `whisper-base`,
512-d, or `whisper-tiny.en`, 384-d, or a CTranslate2 folder).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipeline.config import ConfigError
from pipeline.media import whisper

from .base import SAMPLE_RATE, Encoder, finite_or_none, is_silent

COMPUTE_TYPES = ("float32", "int8")


@dataclass(frozen=True)
class WhisperEncoderConfig:
    model: str = whisper.DEFAULT_MODEL   # packaged name or CTranslate2 folder
    compute_type: str = "float32"        # float32 (exact) | int8 (~2x faster, quantised weights)

    def __post_init__(self):
        if self.compute_type not in COMPUTE_TYPES:
            raise ConfigError(f"whisper: compute_type {self.compute_type!r} is not one of {list(COMPUTE_TYPES)}")


class WhisperEncoder(Encoder):
    """Whisper encoder states (CTranslate2; base: multilingual, 512-d), mean over frames of real audio."""

    name = "whisper"
    family = "ctranslate2"
    version = "1"
    modality = "audio"
    Config = WhisperEncoderConfig

    def __init__(self, config, device="cpu", batch_size=8, num_threads=None, progress=False):
        super().__init__(config, device, batch_size, num_threads, progress)
        self.whisper = whisper.load(config.model, config.compute_type, num_threads or 0)

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        return whisper.model_available(config.model)

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return whisper.model_versions(config.model)

    def encode(self, batch) -> list[np.ndarray | None]:
        return [None if is_silent(wave) else self._embed(np.asarray(wave, np.float32)) for wave in batch]

    def encode_frames(self, batch) -> list[np.ndarray | None]:
        return [None if is_silent(wave) else self._frames(np.asarray(wave, np.float32)) for wave in batch]

    def _embed(self, wave: np.ndarray) -> np.ndarray | None:
        return finite_or_none(self._frames(wave).mean(0))

    def _frames(self, wave: np.ndarray) -> np.ndarray:
        """[valid frames, D] encoder states over consecutive 30 s windows."""
        import ctranslate2

        out = []
        for start in range(0, len(wave), whisper.WINDOW_SAMPLES):
            window = wave[start:start + whisper.WINDOW_SAMPLES]
            mel = self.whisper.feature_extractor(window, padding=whisper.WINDOW_SAMPLES - len(window))[:, :3000]
            states = self.whisper.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None])),
                                               to_cpu=True)
            valid = max(1, math.ceil(len(window) / whisper.SAMPLES_PER_FRAME))
            out.append(np.asarray(states)[0, :valid])
        return np.concatenate(out).astype(np.float32)

    def _dummy(self):
        return np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
