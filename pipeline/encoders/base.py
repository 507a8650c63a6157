"""The interface every encoder implements, and the small helpers they share.

An encoder turns a batch of items of one modality into one utterance-level float32 vector per item,
or None where there is nothing to encode (silent audio, empty text, no face frames) or the output is
not finite: a missing feature is never passed off as a vector of zeros.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import ClassVar

import numpy as np

from pipeline import interrupts
from pipeline.config import ConfigError
from pipeline.environment import folder_digest, missing_packages, versions  # noqa: F401 - the encoders' import point
from pipeline.media.decode import SAMPLE_RATE  # noqa: F401 - the rate of every audio input
from pipeline.modalities import has_text, is_silent  # noqa: F401 - the encoders' import point
from pipeline.registry import Component, Unavailable  # noqa: F401 - Unavailable: what an encoder that cannot run raises


class Encoder(Component, ABC):
    kind = "encoder"
    family: ClassVar[str]
    version: ClassVar[str]       # bump when the code's output changes: it is part of the cache key
    modality: ClassVar[str]      # a name in pipeline.modalities.MODALITIES: "audio" | "visual" | "text"
    languages: ClassVar[str] = ""  # text encoders: the languages it reads ("" = not language-specific)
    # items per forward pass (face frames for visual encoders), torch device, CPU threads, a progress bar
    RUNTIME: ClassVar[dict] = {"device": "cpu", "batch_size": 8, "num_threads": None, "progress": False}

    def __init__(self, config, **runtime):
        if not isinstance(config, self.Config):
            raise TypeError(f"{self.name}: expected {self.Config.__name__}, got {type(config).__name__}")
        if runtime.get("batch_size", 1) < 1:
            raise ValueError(f"{self.name}: batch_size must be >= 1, got {runtime['batch_size']}")
        super().__init__(config, **runtime)
        self._dim: int | None = None

    @abstractmethod
    def encode(self, batch: Sequence) -> list[np.ndarray | None]:
        """One 1-D float32 vector per item, or None for an empty item or a non-finite output."""

    def encode_frames(self, batch: Sequence) -> list[np.ndarray | None]:
        """Frame-level [T, D] arrays; only some encoders have them."""
        raise NotImplementedError(f"encoder {self.name!r} has no frame-level output")

    @classmethod
    def summary(cls) -> str:
        """What `mer doctor` says of it: modality, languages read, the first line of its docstring."""
        reads = f"; reads {cls.languages}" if cls.languages else ""
        return f"{cls.modality}{reads}: " + (cls.__doc__ or "").strip().split("\n")[0]

    @abstractmethod
    def _dummy(self):
        """One non-empty input item, for probe_dim."""

    def probe_dim(self) -> int:
        """The output dim, measured on a dummy input so that no config ever states it."""
        if self._dim is None:
            (vec,) = self.encode([self._dummy()])
            if vec is None:
                raise RuntimeError(f"{self.name}: the probe input gave no output")
            self._dim = int(vec.shape[0])
        return self._dim

    def _chunks(self, items: Sequence, size: int | None = None) -> Iterator[Sequence]:
        """Consecutive slices of `items`, with a progress bar when asked for; stops between slices once a
        Ctrl-C came (one swallowed by a library's callback included, see pipeline.interrupts)."""
        size = size or self.batch_size
        starts = range(0, len(items), size)
        if self.progress:
            from pipeline.progress import tracked
            starts = tracked(starts, self.name, "batch")
        for start in starts:
            interrupts.check()
            yield items[start:start + size]

    def _run_sorted(self, batch: Sequence, usable, length, forward, size: int | None = None) -> list:
        """forward() over the usable items, shortest first so that each chunk pads little; None
        for the rest. forward maps a list of items to one vector-or-None per item."""
        out: list[np.ndarray | None] = [None] * len(batch)
        order = sorted((i for i, item in enumerate(batch) if usable(item)), key=lambda i: length(batch[i]))
        for chunk in self._chunks(order, size):
            for i, vec in zip(chunk, halving_on_oom(forward, [batch[i] for i in chunk]), strict=True):
                out[i] = vec
        return out


class VisualEncoder(Encoder):
    """Embeds every face frame of an item, batch_size frames per call; the item's vector is the
    mean over its frames (as MER 2023 averages frame features), None when it has no frames."""

    modality = "visual"

    @abstractmethod
    def embed_frames(self, frames: list[np.ndarray]) -> np.ndarray:
        """[n, D] float32 for n uint8 RGB frames."""

    def encode_frames(self, batch: Sequence) -> list[np.ndarray | None]:
        counts = [_frame_count(item) for item in batch]
        frames = [frame for item in batch for frame in item]
        chunks = [np.stack(halving_on_oom(lambda fr: list(self.embed_frames(fr)), list(chunk)))
                  for chunk in self._chunks(frames)]
        embedded = np.concatenate(chunks) if chunks else np.empty((0, 0), np.float32)
        bounds = np.cumsum([0, *counts])
        return [finite_or_none(embedded[a:b]) if b > a else None for a, b in zip(bounds, bounds[1:])]

    def encode(self, batch: Sequence) -> list[np.ndarray | None]:
        return [None if f is None else finite_or_none(f.mean(0)) for f in self.encode_frames(batch)]

    def _dummy(self):
        return np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    """For a Config's __post_init__: a ConfigError naming the option and its choices."""
    if value not in choices:
        raise ConfigError(f"{key}: {value!r} is not one of {list(choices)}")


def halving_on_oom(forward, items: list) -> list:
    """forward(items); on a CUDA out-of-memory error, the same items again in two halves (down to one
    item, where the error stands), so a batch too big for the GPU slows the stage instead of failing it.
    forward maps a list of items to a list with one entry per item."""
    try:
        return forward(items)
    except RuntimeError as error:  # torch.OutOfMemoryError, without importing torch here
        if type(error).__name__ != "OutOfMemoryError" or len(items) < 2:
            raise
    import torch

    torch.cuda.empty_cache()
    half = len(items) // 2
    return [*halving_on_oom(forward, items[:half]), *halving_on_oom(forward, items[half:])]


def finite_or_none(vec) -> np.ndarray | None:
    """A float32 copy of `vec`, or None if any value is NaN or inf."""
    vec = np.asarray(vec, dtype=np.float32)
    return vec if np.isfinite(vec).all() else None


def _frame_count(item) -> int:
    """Frames in a visual item, checking it is uint8 (T, H, W, 3) RGB unless empty."""
    if len(item) and (item.dtype != np.uint8 or item.ndim != 4 or item.shape[-1] != 3):
        raise ValueError(f"visual items must be uint8 (T, H, W, 3) RGB arrays, got "
                         f"{item.dtype} {item.shape}")
    return len(item)
