"""openSMILE utterance functionals (eGeMAPS by default): the offline acoustic encoder.

openSMILE is free for research only (audEERING's licence); docs/encoders.md says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.config import ConfigError

from .base import SAMPLE_RATE, Encoder, finite_or_none, is_silent, missing_packages, versions


@dataclass(frozen=True)
class OpenSmileConfig:
    # any opensmile.FeatureSet name: eGeMAPSv02 (88-d), ComParE_2016 (6373), emobase, IS09, IS10, ...
    feature_set: str = "eGeMAPSv02"


class OpenSmileEncoder(Encoder):
    """openSMILE utterance functionals (eGeMAPS by default; free for research only)."""

    name = "egemaps"
    family = "opensmile"
    version = "1"
    modality = "audio"
    Config = OpenSmileConfig

    def __init__(self, config, device="cpu", batch_size=8, num_threads=None, progress=False):
        super().__init__(config, device, batch_size, num_threads, progress)
        import opensmile
        valid = [s.name for s in opensmile.FeatureSet]
        if config.feature_set not in valid:
            raise ConfigError(f"{self.name}: feature_set {config.feature_set!r} is not one of {valid}")
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[config.feature_set],
                                     feature_level=opensmile.FeatureLevel.Functionals)

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        if missing_packages("opensmile"):
            return False, "egemaps needs openSMILE's Python package: pip install 'opensmile>=2.5,<3'"
        return True, ""

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return versions("opensmile")

    def encode(self, batch) -> list[np.ndarray | None]:
        out = []
        for chunk in self._chunks(batch):
            out.extend(None if is_silent(wave) else self._functionals(wave) for wave in chunk)
        return out

    def _functionals(self, wave: np.ndarray) -> np.ndarray | None:
        table = self.smile.process_signal(np.asarray(wave, dtype=np.float32), SAMPLE_RATE)
        return finite_or_none(table.to_numpy()[0])

    def _dummy(self):
        t = np.arange(SAMPLE_RATE, dtype=np.float32) / SAMPLE_RATE
        return 0.1 * np.sin(2 * np.pi * 220 * t)
