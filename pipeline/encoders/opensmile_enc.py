"""openSMILE utterance functionals: the offline acoustic encoder, any feature set as an option.

`egemaps` is the same encoder at its default feature set, under the name params.yaml has always used
(its features and cache keys are unchanged). openSMILE is free for research only (audEERING's
licence); docs/encoders.md says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .base import SAMPLE_RATE, Encoder, check_choice, finite_or_none, is_silent

# opensmile.FeatureSet's names (checked against the installed package by tests/test_encoders.py), here so
# that a params file is checked without importing openSMILE
FEATURE_SETS = ("ComParE_2016", "GeMAPS", "GeMAPSv01b", "eGeMAPS", "eGeMAPSv01b", "eGeMAPSv02", "emobase",
                "IS09", "IS10", "IS11", "IS12", "IS13")


@dataclass(frozen=True)
class OpenSmileConfig:
    feature_set: str = "eGeMAPSv02"   # eGeMAPSv02 (88-d), ComParE_2016 (6373), emobase (988), IS09, ...

    def __post_init__(self):
        check_choice("feature_set", self.feature_set, FEATURE_SETS)


class OpenSmileEncoder(Encoder):
    """openSMILE utterance functionals of any feature set (eGeMAPS by default; free for research only)."""

    name = "opensmile"
    family = "opensmile"
    version = "1"
    modality = "audio"
    Config = OpenSmileConfig
    packages = ("opensmile",)
    install = "pip install 'opensmile>=2.5,<3'"

    def __init__(self, config, **runtime):
        super().__init__(config, **runtime)
        import opensmile
        self.smile = opensmile.Smile(feature_set=opensmile.FeatureSet[config.feature_set],
                                     feature_level=opensmile.FeatureLevel.Functionals)

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


class EgemapsEncoder(OpenSmileEncoder):
    """openSMILE's eGeMAPS functionals (88-d): the default audio feature (free for research only)."""

    name = "egemaps"
