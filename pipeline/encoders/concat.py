"""Early fusion of audio encoders: one feature that concatenates several encoders' utterance vectors.

On the RAVDESS dev actors (benchmarks/real/audio.py), eGeMAPS functionals and Whisper encoder states
concatenated beat either alone: prosody and voice quality on one side, a learned speech representation
on the other. The fusion model z-scores every dimension with training statistics, so the parts' scales
need no matching here. An item is None when any part has nothing for it (e.g. silent audio).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipeline.config import ConfigError

from .base import SAMPLE_RATE, Encoder, finite_or_none


@dataclass(frozen=True)
class AudioConcatConfig:
    parts: tuple[str, ...] = ("egemaps", "whisper")           # registered audio encoders, in output order
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # part -> its options

    def __post_init__(self):
        from . import ENCODERS

        if len(self.parts) < 2 or len(set(self.parts)) != len(self.parts):
            raise ConfigError(f"audio-concat: parts must name two or more different encoders, got {list(self.parts)}")
        for part in self.parts:
            if part not in ENCODERS or ENCODERS[part].modality != "audio" or part == "audio-concat":
                audio = sorted(n for n, c in ENCODERS.items() if c.modality == "audio" and n != "audio-concat")
                raise ConfigError(f"audio-concat: part {part!r} is not an audio encoder; known: {audio}")
        unknown = sorted(set(self.options) - set(self.parts))
        if unknown:
            raise ConfigError(f"audio-concat: options for {unknown}, which are not among parts {list(self.parts)}")


class AudioConcatEncoder(Encoder):
    """Concatenated audio encoders (default eGeMAPS + Whisper base): early fusion as one audio feature."""

    name = "audio-concat"
    family = "concat"
    version = "1"
    modality = "audio"
    Config = AudioConcatConfig

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        from . import make_encoder

        runtime.pop("progress", None)   # one bar, this encoder's
        self.encoders = [make_encoder(p, config.options.get(p), **runtime) for p in config.parts]

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        from . import make_config

        for part in config.parts:
            part_cls, part_config, _ = make_config(part, config.options.get(part))
            ok, why = part_cls.available(part_config)
            if not ok:
                return False, f"part {part}: {why}"
        return True, ""

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        """The configured parts' libraries, and each part's code version (which its own key holds)."""
        from . import make_config

        found = {}
        for part in config.parts:
            part_cls, part_config, _ = make_config(part, config.options.get(part))
            found |= part_cls.library_versions(part_config) | {f"encoder {part}": part_cls.version}
        return found

    def encode(self, batch) -> list[np.ndarray | None]:
        outputs = [enc.encode(batch) for enc in self.encoders]
        return [None if any(v is None for v in vecs) else finite_or_none(np.concatenate(vecs))
                for vecs in zip(*outputs)]

    def _dummy(self):
        t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
        return 0.1 * np.sin(2 * np.pi * 220 * t)
