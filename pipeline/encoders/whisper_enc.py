"""Whisper encoder states through CTranslate2: a deep audio encoder that runs offline.

The encoder's output has one frame per 20 ms; the utterance vector is the mean over the frames that cover
the clip's own audio, never its padding. `window` sets what the encoder reads:
- `clip` (default): each clip at its own length plus MARGIN of silence, rounded up to a whole second,
  clips of one input length in one batch. The encoder attends over what it reads, so its states differ
  from `padded`'s; with the silence after the speech they score as well (docs/whisper.md: RAVDESS dev,
  3-5 s clips, 7x faster, emotion F1 within 0.01; with no margin the F1 fell by 0.02-0.05).
- `padded`: Whisper's fixed 30 s window (3000 mel frames), zero-padded, as Whisper was trained.
Clips are never packed together into one window: the encoder's attention would mix them.
A clip longer than 30 s (the most the positional embedding covers) is read in consecutive 30 s windows
(`clip`: the last at its own length plus the margin) and the valid frames of all of them are averaged.
Weights: pipeline/media/whisper.py (packaged `whisper-base`, 512-d, or `whisper-tiny.en`, 384-d, or a
CTranslate2 folder).
"""

from __future__ import annotations

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
    window: str = "clip"                 # clip (own length, batched) | padded (Whisper's 30 s window)

    def __post_init__(self):
        if self.compute_type not in COMPUTE_TYPES:
            raise ConfigError(f"whisper: compute_type {self.compute_type!r} is not one of {list(COMPUTE_TYPES)}")
        if self.window not in whisper.WINDOWS:
            raise ConfigError(f"whisper: window {self.window!r} is not one of {list(whisper.WINDOWS)}")


class WhisperEncoder(Encoder):
    """Whisper encoder states (CTranslate2; base: multilingual, 512-d), mean over frames of real audio."""

    name = "whisper"
    family = "ctranslate2"
    version = "2"   # 2: the `window` option, `clip` by default
    modality = "audio"
    Config = WhisperEncoderConfig
    packages = whisper.PACKAGES   # and the weights: available() and library_versions() ask pipeline.media.whisper
    MARGIN = 300   # mel frames (3 s) of silence after a clip in the `clip` window

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        self.whisper = whisper.load(config.model, config.compute_type, self.num_threads or 0)

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        return whisper.model_available(config.model)

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return whisper.model_versions(config.model)

    def encode(self, batch) -> list[np.ndarray | None]:
        return [None if frames is None else finite_or_none(frames.mean(0)) for frames in self.encode_frames(batch)]

    def encode_frames(self, batch) -> list[np.ndarray | None]:
        """[valid frames, D] per item (None for silence): its 30 s pieces, batched by input length."""
        owners, pieces = [], []
        for i, wave in enumerate(batch):
            if not is_silent(wave):
                for piece in whisper.windows(np.asarray(wave, np.float32)):
                    owners.append(i)
                    pieces.append(piece)
        states: list[np.ndarray | None] = [None] * len(pieces)
        for members, mels in whisper.mel_batches(self.whisper, pieces, self.config.window, self.batch_size,
                                                     self.MARGIN):
            encoded = np.asarray(whisper.encode(self.whisper, mels))
            for row, i in enumerate(members):
                states[i] = encoded[row, :whisper.valid_frames(len(pieces[i]))]
        out: list[list[np.ndarray]] = [[] for _ in batch]
        for i, frames in zip(owners, states):
            out[i].append(frames)
        return [np.concatenate(frames).astype(np.float32) if frames else None for frames in out]

    def _dummy(self):
        return np.random.default_rng(0).normal(0, 0.1, SAMPLE_RATE).astype(np.float32)
