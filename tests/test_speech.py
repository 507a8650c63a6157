"""Real speech through the offline Whisper weights: ASR engines and the whisper audio encoder.

Speech is synthesised by espeak-ng (Debian package `espeak-ng`); the tests skip where it is absent.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import ConfigError
from pipeline.media.asr import ASR_ENGINES, make_config, transcribe, word_error_rate
from pipeline.media.decode import read_audio_file
from pipeline.media.whisper import model_available
from pipeline.registry import Unavailable

SENTENCE = "Kids are talking by the door and the dogs are sitting by the window"

needs_whisper = pytest.mark.skipif(not model_available("whisper-base")[0], reason=model_available("whisper-base")[1])
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng: apt-get install espeak-ng")


def speak(text: str, path: Path, voice: str = "en-us") -> np.ndarray:
    """16 kHz mono float32 speech of `text` (espeak-ng writes 22.05 kHz; the project's reader resamples)."""
    subprocess.run(["espeak-ng", "-v", voice, "-s", "140", "-w", str(path), text], check=True)
    return read_audio_file(path, 16000)


def test_word_error_rate_counts_edits_per_reference_word():
    assert word_error_rate("Kids are talking by the door.", "kids are talking by the door") == 0
    assert word_error_rate("kids are talking by the door", "kids talking by a door now") == pytest.approx(3 / 6)


def test_unknown_asr_engine_names_the_known_ones():
    with pytest.raises(ConfigError, match=r"extract.asr: unknown ASR engine 'vosk'; known: faster-whisper, none, whisper"):
        make_config("vosk")
    assert set(ASR_ENGINES) == {"none", "faster-whisper", "whisper"}


def test_missing_weights_say_how_to_get_them(tmp_path):
    ok, why = model_available(str(tmp_path))
    assert not ok and "CTranslate2 Whisper conversion" in why
    with pytest.raises(Unavailable, match="neither a packaged model"):
        transcribe(np.zeros(16000, np.float32), "faster-whisper", str(tmp_path))


@needs_whisper
@needs_espeak
@pytest.mark.parametrize("model", ["whisper-base", "whisper-tiny.en"])
def test_packaged_whisper_transcribes_real_speech(model, tmp_path):
    text, source = transcribe(speak(SENTENCE, tmp_path / "s.wav"), "faster-whisper", model)
    assert source == f"asr:faster-whisper:{model}"
    assert word_error_rate(SENTENCE, text) <= 0.2, text


@needs_whisper
@needs_espeak
def test_language_is_set_or_detected(tmp_path):
    """whisper-base is multilingual: German speech is recognised as German when detected, and a set
    language forces the decoder's language token."""
    from pipeline.media.whisper import load

    audio = speak("Guten Morgen, wie geht es dir heute", tmp_path / "de.wav", voice="de")
    _, info = load("whisper-base", "int8").transcribe(audio, beam_size=1)
    assert info.language == "de"
    text, _ = transcribe(audio, "faster-whisper", "whisper-base", "de")
    assert word_error_rate("guten morgen wie geht es dir heute", text) <= 0.3, text


@needs_whisper
@needs_espeak
def test_whisper_encoder_averages_only_frames_of_real_audio(tmp_path):
    from pipeline.encoders import make_encoder

    enc = make_encoder("whisper", {"compute_type": "int8"}, num_threads=1)
    speech = speak(SENTENCE, tmp_path / "s.wav")
    (frames,) = enc.encode_frames([speech])
    assert frames.shape == (math.ceil(len(speech) / 320), 512)   # 20 ms per frame, no padding frames
    vec, silent = enc.encode([speech, np.zeros(16000, np.float32)])
    np.testing.assert_allclose(vec, frames.mean(0), rtol=1e-5)
    assert silent is None and vec.shape == (512,) and np.isfinite(vec).all()
    # trailing silence adds frames to the mean: the vector moves, so padding cannot be in it
    (padded,) = enc.encode([np.concatenate([speech, np.zeros(16000 * 5, np.float32)])])
    assert np.linalg.norm(padded - vec) > 0.05 * np.linalg.norm(vec)


@needs_whisper
@pytest.mark.slow
def test_whisper_encoder_reads_long_audio_in_30s_windows():
    from pipeline.encoders import make_encoder

    enc = make_encoder("whisper", {"compute_type": "int8"}, num_threads=1)
    wave = np.random.default_rng(0).normal(0, 0.1, 16000 * 31).astype(np.float32)
    (frames,) = enc.encode_frames([wave])
    assert frames.shape == (1500 + 50, 512)


@needs_whisper
@needs_espeak
def test_audio_concat_joins_its_parts_and_checks_them(tmp_path):
    from pipeline.encoders import make_encoder

    speech = speak(SENTENCE, tmp_path / "s.wav")
    options = {"options": {"whisper": {"compute_type": "int8"}}}
    fused, silent = make_encoder("audio-concat", options, num_threads=1).encode([speech, np.zeros(16000, np.float32)])
    (egemaps,) = make_encoder("egemaps").encode([speech])
    (whisper,) = make_encoder("whisper", {"compute_type": "int8"}, num_threads=1).encode([speech])
    np.testing.assert_allclose(fused, np.concatenate([egemaps, whisper]), rtol=1e-5)
    assert silent is None
    with pytest.raises(ConfigError, match=r"part 'minilm' is not an audio encoder; known: \['egemaps', 'hf-audio', 'whisper'\]"):
        make_encoder("audio-concat", {"parts": ["egemaps", "minilm"]})
