"""Speech recognition for items that come without a transcript.

Engines are registered by name; each loads its model by hub id (where cached) or local directory.
'whisper' runs a Whisper checkpoint through transformers' ASR pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np


def _whisper(model: str) -> Callable[[np.ndarray, int], str]:
    from transformers import pipeline

    if not model:
        raise ValueError("extract.asr_model must name a Whisper checkpoint (hub id or local directory)")
    try:
        asr = pipeline("automatic-speech-recognition", model=model, device="cpu")
    except OSError as err:
        raise OSError(f"Whisper model {model!r} is not available here: download it on a connected machine "
                      f"or set extract.asr_model to a local directory ({err})") from err
    return lambda audio, rate: asr({"raw": audio, "sampling_rate": rate})["text"].strip()


ASR_ENGINES: dict[str, Callable[[str], Callable[[np.ndarray, int], str]]] = {"whisper": _whisper}


@lru_cache(maxsize=2)
def _engine(name: str, model: str):
    if name not in ASR_ENGINES:
        raise ValueError(f"unknown ASR engine {name!r}; choices: none, {', '.join(ASR_ENGINES)}")
    return ASR_ENGINES[name](model)


def transcribe(audio: np.ndarray, sample_rate: int, engine: str, model: str) -> str:
    return _engine(engine, model)(audio, sample_rate)
