"""Speech recognition for items that come without a transcript: a registry of ASR engines.

extract.asr names an engine here and extract.asr_options its options (ASRConfig: the model, the spoken
language, "" = detected, and the window). Audio comes at the pipeline's one rate, SAMPLE_RATE. Engines:
- `none`: no recognition; an item without a transcript stays without one.
- `faster-whisper`: Whisper in CTranslate2 format (pipeline/media/whisper.py); offline by default with
  the packaged multilingual `whisper-base`, or `whisper-tiny.en`, or a converted folder. Clips are
  transcribed several at a time (`transcribe_batch`); its `window` option says what its encoder reads.
- `whisper`: a transformers Whisper checkpoint by hub id (where cached) or local directory.
A transcript made here is stored with its source `asr:<engine>:<model>` (extract's `transcript_source`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from pipeline.config import ConfigError
from pipeline.environment import folder_digest
from pipeline.registry import Component, Registry

from . import whisper
from .decode import SAMPLE_RATE


@dataclass(frozen=True)
class ASRConfig:
    model: str = ""          # "" = the engine's default model
    language: str = ""       # ISO code, e.g. en, zh; "" = detected per clip (multilingual models)
    window: str = "clip"     # what a Whisper encoder reads (engines with reads_window): clip | padded

    def __post_init__(self):
        if self.window not in whisper.WINDOWS:
            raise ConfigError(f"extract.asr_options.window: {self.window!r} is not one of {list(whisper.WINDOWS)}")


class ASREngine(Component):
    kind = "ASR engine"
    default_model: ClassVar[str]
    reads_window: ClassVar[bool] = False   # whether config.window shapes its transcripts
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

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[str | None]:
        """The transcripts of several clips; engines that batch across clips override it."""
        return [self(audio) for audio in audios]


class NoASR(ASREngine):
    """No speech recognition: an item without a transcript stays without one."""

    name = "none"
    default_model = ""
    source = "missing"

    def __call__(self, audio: np.ndarray) -> None:
        return None


class FasterWhisperASR(ASREngine):
    """Whisper in CTranslate2 format: the packaged whisper-base (multilingual) or whisper-tiny.en, or a folder.

    Clips up to 30 s are transcribed BATCH at a time: one encoder pass over clips of one input length
    (pipeline.media.whisper.mel_batches) and one beam search (beam 5, no temperature fallback) for all
    of them; a clip with a high no-speech probability and a low log-probability gives "". The decoder
    writes timestamped segments, and a segment that starts at or after the end of the clip's own audio
    is dropped, as is one that runs past that end repeating the segment before it: both were heard in the
    padding. Without that, a decoder that reads a clip at its own length
    repeats the sentence into the padding (RAVDESS dev, whisper-base, no timestamps: WER 0.52 with 2 s
    of silence after each clip, 0.12 with 5 s; docs/whisper.md). Window `clip` reads each clip plus
    MARGIN of silence. A clip over 30 s goes through faster-whisper's own long-form transcription."""

    name = "faster-whisper"
    default_model = whisper.DEFAULT_MODEL
    reads_window = True
    packages = whisper.PACKAGES   # and the weights: available() and library_versions() ask pipeline.media.whisper
    BATCH = 8
    MARGIN = 300   # mel frames (3 s) of silence after a clip in the `clip` window
    NO_SPEECH, MIN_LOGPROB = 0.6, -1.0   # faster-whisper's silence rule (no_speech_threshold, log_prob_threshold)

    def __init__(self, config: ASRConfig):
        super().__init__(config)
        # int8 decodes ~2x faster than float32 on CPU at the same word error on clean speech
        self.whisper = whisper.load(self.model, "int8")

    @classmethod
    def available(cls, config: ASRConfig) -> tuple[bool, str]:
        return whisper.model_available(config.model or cls.default_model)

    @classmethod
    def library_versions(cls, config: ASRConfig) -> dict[str, str]:
        return whisper.model_versions(config.model or cls.default_model)

    def __call__(self, audio: np.ndarray) -> str:
        return self.transcribe_batch([audio])[0]

    def transcribe_batch(self, audios: list[np.ndarray]) -> list[str]:
        audios = [np.asarray(audio, np.float32) for audio in audios]
        out = ["" if len(audio) == 0 else None for audio in audios]
        short = [i for i, audio in enumerate(audios) if 0 < len(audio) <= whisper.WINDOW_SAMPLES]
        for members, mels in whisper.mel_batches(self.whisper, [audios[i] for i in short], self.config.window,
                                                 self.BATCH, self.MARGIN):
            seconds = [len(audios[short[i]]) / SAMPLE_RATE for i in members]
            for i, text in zip(members, self._decode(whisper.encode(self.whisper, mels), seconds), strict=True):
                out[short[i]] = text
        for i, audio in enumerate(audios):
            if out[i] is None:   # over 30 s
                segments, _ = self.whisper.transcribe(audio, language=self.config.language or None, beam_size=5,
                                                      condition_on_previous_text=False)
                out[i] = " ".join(s.text.strip() for s in segments).strip()
        return out

    def _decode(self, encoded, seconds: list[float]) -> list[str]:
        """Beam search over a batch of encoder states, each clip in its set or detected language; the text
        of the segments that start within each clip's `seconds`."""
        from faster_whisper.tokenizer import Tokenizer

        model = self.whisper
        if self.config.language or not model.model.is_multilingual:
            languages = [self.config.language or "en"] * encoded.shape[0]
        else:
            languages = [found[0][0][2:-2] for found in model.model.detect_language(encoded)]  # "<|de|>" -> "de"
        tokenizers = {lang: Tokenizer(model.hf_tokenizer, model.model.is_multilingual, "transcribe", lang)
                      for lang in set(languages)}
        prompts = [model.get_prompt(tokenizers[lang], []) for lang in languages]
        results = model.model.generate(encoded, prompts, beam_size=5, max_length=model.max_length,
                                       return_scores=True, return_no_speech_prob=True, suppress_blank=True)
        texts = []
        for lang, result, end in zip(languages, results, seconds, strict=True):
            if result.no_speech_prob > self.NO_SPEECH and result.scores[0] < self.MIN_LOGPROB:
                texts.append("")
                continue
            segments = self._segments(result.sequences_ids[0], tokenizers[lang])
            texts.append(" ".join(self._heard(segments, end)).strip())
        return texts

    @staticmethod
    def _heard(segments: list[tuple[float, float, str]], end: float) -> list[str]:
        """The texts of the segments heard in the clip's own `end` seconds: not one that starts after it, nor
        one that runs past it repeating the segment before it (the decoder's other way into the padding:
        RAVDESS 03-01-08-02-01-01-03, 3.3 s, came out as the sentence at 0-2 s and again at 2-4 s)."""
        kept: list[str] = []
        for start, stop, text in segments:
            again = bool(kept) and _words(text) == _words(kept[-1])
            if start < end and not (again and stop > end):
                kept.append(text.strip())
        return kept

    def _segments(self, tokens: list[int], tokenizer) -> list[tuple[float, float, str]]:
        """(start, end in seconds, text) of each segment of a timestamped token sequence (end = start when the
        decoder stopped before closing it)."""
        segments, text, start = [], [], 0.0
        for token in tokens:
            if token < tokenizer.timestamp_begin:
                text.append(token)
                continue
            at = (token - tokenizer.timestamp_begin) * self.whisper.time_precision
            if text:   # a closing timestamp
                segments.append((start, at, tokenizer.decode(text)))
                text = []
            start = at   # an opening timestamp, or a closing one: no later segment starts before it
        if text:
            segments.append((start, start, tokenizer.decode(text)))
        return segments


def _words(text: str) -> list[str]:
    """A transcript's words, lower-cased, without punctuation: what a repeat is compared on."""
    return re.findall(r"\w+", text.lower())


class TransformersWhisperASR(ASREngine):
    """A transformers Whisper checkpoint named by extract.asr_options.model (hub id where cached, or a local folder)."""

    name = "whisper"
    default_model = ""
    packages = ("transformers", "torch")
    install = "pip install transformers torch"

    def __init__(self, config: ASRConfig):
        super().__init__(config)
        from transformers import pipeline

        try:
            self.pipe = pipeline("automatic-speech-recognition", model=self.model, device="cpu")
        except OSError as err:
            raise OSError(f"Whisper model {self.model!r} is not available here: download it on a connected "
                          f"machine or set extract.asr_options.model to a local directory ({err})") from err

    @classmethod
    def available(cls, config: ASRConfig) -> tuple[bool, str]:
        if not config.model:
            return False, "needs extract.asr_options.model: a Whisper checkpoint (hub id or local directory)"
        return super().available(config)

    @classmethod
    def library_versions(cls, config: ASRConfig) -> dict[str, str]:
        """The libraries, and a local folder's weights (a hub id's are named by the id)."""
        local = Path(config.model).is_dir() if config.model else False
        return super().library_versions(config) | ({"weights": folder_digest(config.model)} if local else {})

    def __call__(self, audio: np.ndarray) -> str:
        kwargs = {"generate_kwargs": {"language": self.config.language}} if self.config.language else {}
        return self.pipe({"raw": audio, "sampling_rate": SAMPLE_RATE}, **kwargs)["text"].strip()


ASR_ENGINES = Registry("extract.asr", NoASR, FasterWhisperASR, TransformersWhisperASR,
                       options_key="extract.asr_options")


def make_engine(engine: str, options: dict | None = None) -> ASREngine:
    """The engine, built once per process for each engine and options (extract.asr, extract.asr_options)."""
    return _engine(*ASR_ENGINES.config(engine, options))


@lru_cache(maxsize=2)
def _engine(cls: type[ASREngine], config: ASRConfig) -> ASREngine:
    return cls(config)


def transcribe(audio: np.ndarray, engine: str, options: dict | None = None) -> tuple[str | None, str]:
    """(transcript, its source `asr:<engine>:<model>`) of audio at SAMPLE_RATE; (None, "missing") for `none`."""
    asr = make_engine(engine, options)
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
