"""Speech recognition for items that come without a transcript: a registry of ASR engines.

extract.asr names an engine here, extract.asr_model its model and extract.asr_language the spoken
language ("" = detected). Audio comes at the pipeline's one rate, SAMPLE_RATE. Engines:
- `none`: no recognition; an item without a transcript stays without one.
- `faster-whisper`: Whisper in CTranslate2 format (pipeline/media/whisper.py); offline by default with
  the packaged multilingual `whisper-base`, or `whisper-tiny.en`, or a converted folder.
- `whisper`: a transformers Whisper checkpoint by hub id (where cached) or local directory.
A transcript made here is stored with its source `asr:<engine>:<model>` (extract's `transcript_source`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipeline.environment import missing_packages
from pipeline.registry import Component, Registry

from . import whisper
from .decode import SAMPLE_RATE


@dataclass(frozen=True)
class ASRConfig:
    model: str = ""          # "" = the engine's default model
    language: str = ""       # ISO code, e.g. en, zh; "" = detected per clip (multilingual models)


class ASREngine(Component):
    kind = "ASR engine"
    default_model: ClassVar[str]
    Config = ASRConfig

    @property
    def model(self) -> str:
        return self.config.model or self.default_model

    @property
    def source(self) -> str:
        """The transcript_source of what this engine writes."""
        return f"asr:{self.name}:{Path(self.model).name}"

    def __call__(self, audio: np.ndarray) -> str | None:
        """The transcript of float32 mono audio at SAMPLE_RATE."""
        raise NotImplementedError


class NoASR(ASREngine):
    """No speech recognition: an item without a transcript stays without one."""

    name = "none"
    default_model = ""
    source = "missing"

    def __call__(self, audio: np.ndarray) -> None:
        return None


class FasterWhisperASR(ASREngine):
    """Whisper in CTranslate2 format: the packaged whisper-base (multilingual) or whisper-tiny.en, or a folder."""

    name = "faster-whisper"
    default_model = whisper.DEFAULT_MODEL

    def __init__(self, config: ASRConfig):
        super().__init__(config)
        # int8 decodes ~2x faster than float32 on CPU at the same word error on clean speech
        self.whisper = whisper.load(self.model, "int8")

    @classmethod
    def available(cls, config: ASRConfig) -> tuple[bool, str]:
        return whisper.model_available(config.model or cls.default_model)

    def __call__(self, audio: np.ndarray) -> str:
        segments, _ = self.whisper.transcribe(np.asarray(audio, np.float32), language=self.config.language or None,
                                              beam_size=5, condition_on_previous_text=False)
        return " ".join(s.text.strip() for s in segments).strip()


class TransformersWhisperASR(ASREngine):
    """A transformers Whisper checkpoint named by extract.asr_model (hub id where cached, or a local folder)."""

    name = "whisper"
    default_model = ""

    def __init__(self, config: ASRConfig):
        super().__init__(config)
        from transformers import pipeline

        try:
            self.pipe = pipeline("automatic-speech-recognition", model=self.model, device="cpu")
        except OSError as err:
            raise OSError(f"Whisper model {self.model!r} is not available here: download it on a connected "
                          f"machine or set extract.asr_model to a local directory ({err})") from err

    @classmethod
    def available(cls, config: ASRConfig) -> tuple[bool, str]:
        if missing_packages("transformers", "torch"):
            return False, "needs transformers and torch: pip install transformers torch"
        if not config.model:
            return False, "needs extract.asr_model: a Whisper checkpoint (hub id or local directory)"
        return True, ""

    def __call__(self, audio: np.ndarray) -> str:
        kwargs = {"generate_kwargs": {"language": self.config.language}} if self.config.language else {}
        return self.pipe({"raw": audio, "sampling_rate": SAMPLE_RATE}, **kwargs)["text"].strip()


ASR_ENGINES = Registry("extract.asr", NoASR, FasterWhisperASR, TransformersWhisperASR,
                       options_key="extract.asr_options")


def make_config(engine: str, model: str = "", language: str = "") -> tuple[type[ASREngine], ASRConfig]:
    return ASR_ENGINES.config(engine, {"model": model, "language": language})


@lru_cache(maxsize=2)
def make_engine(engine: str, model: str = "", language: str = "") -> ASREngine:
    """The engine, built once per process for each (engine, model, language)."""
    return ASR_ENGINES.make(engine, {"model": model, "language": language})


def transcribe(audio: np.ndarray, engine: str, model: str = "", language: str = "") -> tuple[str | None, str]:
    """(transcript, its source `asr:<engine>:<model>`) of audio at SAMPLE_RATE; (None, "missing") for `none`."""
    asr = make_engine(engine, model, language)
    return asr(audio), asr.source


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance / reference words, after lower-casing and dropping punctuation."""
    ref, hyp = _words(reference), _words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


def _words(text: str) -> list[str]:
    import re
    return re.sub(r"[^\w\s']", " ", text.lower()).split()
