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
from pipeline.media.asr import ASR_ENGINES, transcribe, word_error_rate
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
        ASR_ENGINES.config("vosk")
    assert set(ASR_ENGINES) == {"none", "faster-whisper", "whisper"}


def test_missing_weights_say_how_to_get_them(tmp_path):
    ok, why = model_available(str(tmp_path))
    assert not ok and "CTranslate2 Whisper conversion" in why
    with pytest.raises(Unavailable, match="neither a packaged model"):
        transcribe(np.zeros(16000, np.float32), "faster-whisper", {"model": str(tmp_path)})


@needs_whisper
@needs_espeak
@pytest.mark.parametrize("model", ["whisper-base", "whisper-tiny.en"])
def test_packaged_whisper_transcribes_real_speech(model, tmp_path):
    text, source = transcribe(speak(SENTENCE, tmp_path / "s.wav"), "faster-whisper", {"model": model})
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
    text, _ = transcribe(audio, "faster-whisper", {"model": "whisper-base", "language": "de"})
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


needs_tiny = pytest.mark.skipif(not model_available("whisper-tiny.en")[0],
                                reason=model_available("whisper-tiny.en")[1])


def voiced(seconds: float, seed: int = 0) -> np.ndarray:
    """A voice-like test signal: a 150 Hz harmonic series with a syllable-rate envelope, plus noise."""
    t = np.arange(int(16000 * seconds)) / 16000
    harmonics = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (0.1 * envelope * harmonics + noise).astype(np.float32)


def tiny(window: str, **runtime):
    from pipeline.encoders import make_encoder

    return make_encoder("whisper", {"model": "whisper-tiny.en", "window": window}, num_threads=1, **runtime)


@needs_tiny
def test_whisper_clip_window_reads_each_clip_at_its_own_length():
    """clip: shape and determinism; a vector depends on its clip only, not on its batch-mates (which
    share its input length or not); and it differs from padded, whose encoder attends over 30 s."""
    clips = [voiced(3.2, 0), voiced(3.7, 1), voiced(0.05, 2), voiced(6.1, 3)]
    enc = tiny("clip", batch_size=3)
    frames = enc.encode_frames(clips)
    assert [f.shape for f in frames] == [(160, 384), (185, 384), (3, 384), (305, 384)]
    together = enc.encode(clips)
    np.testing.assert_array_equal(np.stack(together), np.stack(enc.encode(clips)))
    for clip, vec, f in zip(clips, together, frames, strict=True):
        (alone,) = enc.encode([clip])
        np.testing.assert_allclose(alone, vec, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(vec, f.mean(0), rtol=1e-5, atol=1e-6)
    (padded,) = tiny("padded").encode(clips[:1])
    assert np.abs(padded - together[0]).max() > 1e-2


@needs_tiny
def test_whisper_padded_window_is_whisper_30s_input():
    """padded: the clip zero-padded to 30 s, log-mel by faster-whisper's extractor, the mean over the
    encoder frames of the clip's own audio (as before the window option existed)."""
    import ctranslate2

    from pipeline.media.whisper import load

    clip = voiced(3.3)
    (vec,) = tiny("padded").encode([clip])
    model = load("whisper-tiny.en", "float32", 1)
    mel = model.feature_extractor(np.pad(clip, (0, 480000 - clip.size)), padding=0)[:, :3000]
    states = np.asarray(model.model.encode(ctranslate2.StorageView.from_array(mel[None]), to_cpu=True))
    np.testing.assert_allclose(vec, states[0, :math.ceil(clip.size / 320)].mean(0), rtol=1e-5, atol=1e-6)


@needs_tiny
def test_whisper_window_is_part_of_the_cache_key():
    from pipeline.encode import identity_for
    from pipeline.encoders import make_config

    keys = {window: identity_for(*make_config("whisper", {"window": window})[:2]).key for window in ("clip", "padded")}
    assert keys["clip"] != keys["padded"]
    with pytest.raises(ConfigError, match=r"whisper: window 'full' is not one of \['clip', 'padded'\]"):
        make_config("whisper", {"window": "full"})
    concat = {window: identity_for(*make_config("audio-concat", {"options": {"whisper": {"window": window}}})[:2]).key
              for window in ("clip", "padded")}
    assert concat["clip"] != concat["padded"]


@needs_tiny
@pytest.mark.slow
@pytest.mark.parametrize("window", ["clip", "padded"])
def test_whisper_reads_a_clip_over_30s_in_30s_windows(window):
    """Over 30 s (the positional embedding's reach) a clip is split: a full 30 s window, then the rest
    (clip: at its own length); the frames are those of each piece encoded alone, all averaged."""
    wave = voiced(31.0)
    enc = tiny(window)
    (frames,) = enc.encode_frames([wave])
    assert frames.shape == (1500 + 50, 384)
    (head,), (tail,) = enc.encode_frames([wave[:480000]]), enc.encode_frames([wave[480000:]])
    np.testing.assert_allclose(frames, np.concatenate([head, tail]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(enc.encode([wave])[0], frames.mean(0), rtol=1e-5, atol=1e-6)


@needs_tiny
@needs_espeak
def test_faster_whisper_batches_clips_and_each_transcript_is_its_own(tmp_path):
    """Clips transcribed together give what each gives alone, whatever its batch-mates; in extraction a
    part's clips go to the engine in one call, a given transcript stays and an empty clip gives ''."""
    from pipeline.config import ExtractConfig
    from pipeline.extract import transcribe_items
    from pipeline.store.media import MediaItem

    sentences = [SENTENCE, "The weather is nice today", "Please close the window before you leave"]
    audios = [speak(text, tmp_path / f"{i}.wav") for i, text in enumerate(sentences)]

    def items() -> list[MediaItem]:
        made = [MediaItem(f"s{i}", "", "", audio=audio) for i, audio in enumerate(audios)]
        return [*made, MediaItem("given", "", "", audio=audios[0], transcript="as given", transcript_source="given")]

    cfg = ExtractConfig(asr="faster-whisper", asr_options={"model": "whisper-tiny.en", "window": "padded"})
    batched, failures = transcribe_items(items(), cfg)
    alone = [transcribe_items([item], cfg)[0][0] for item in items()]
    assert failures == [] and [i.transcript for i in batched] == [i.transcript for i in alone]
    assert [i.transcript_source for i in batched] == ["asr:faster-whisper:whisper-tiny.en"] * 3 + ["given"]
    assert batched[3].transcript == "as given"
    assert word_error_rate(SENTENCE, batched[0].transcript) <= 0.2 and all(i.transcript for i in batched)
    engine = ASR_ENGINES.make("faster-whisper", {"model": "whisper-tiny.en", "window": "padded"})
    assert engine.transcribe_batch([np.zeros(0, np.float32), audios[1]]) == ["", alone[1].transcript]


def test_asr_window_shapes_the_extract_hash_only_where_the_engine_reads_it():
    from pipeline.config import ExtractConfig
    from pipeline.extract import output_params

    assert "asr_window" not in output_params(ExtractConfig(asr="none", asr_options={"window": "clip"}))
    whisper_params = {w: output_params(ExtractConfig(asr="faster-whisper", asr_options={"window": w}))
                      for w in ("clip", "padded")}
    assert whisper_params["clip"]["asr_window"] == "clip" and whisper_params["padded"]["asr_window"] == "padded"
    with pytest.raises(ConfigError, match=r"extract.asr_options.window: 'full' is not one of \['clip', 'padded'\]"):
        ASR_ENGINES.config("faster-whisper", {"window": "full"})


def test_asr_options_shape_an_item_as_the_flat_asr_keys_they_replace():
    """The options shape an item's key as the flat keys did (asr_model always, asr_language when set,
    asr_window where the engine reads it): output_params is what the item fingerprint digests."""
    from pipeline.config import ExtractConfig
    from pipeline.extract import output_params

    flat = {"fps": 5.0, "max_frames": 32, "face_size": 112, "face_detector": "blazeface", "face_options": {},
            "asr": "faster-whisper", "asr_model": "whisper-tiny.en", "asr_language": "en", "asr_window": "clip",
            "face_quality": 92, "sample_rate": 16000}
    cfg = ExtractConfig(asr="faster-whisper", asr_options={"model": "whisper-tiny.en", "language": "en"})
    assert output_params(cfg) == flat
    none = {k: v for k, v in flat.items() if k not in ("asr_language", "asr_window")} | {"asr": "none", "asr_model": ""}
    assert output_params(ExtractConfig()) == none


@needs_tiny
@needs_espeak
@pytest.mark.slow
def test_faster_whisper_transcribes_a_clip_over_30s_in_full(tmp_path):
    """Over 30 s a clip goes through faster-whisper's long-form transcription: nothing is cut."""
    text = ("The train to the city leaves at nine. My sister bought a new red bicycle last week. "
            "We planted tomatoes and beans in the garden. The museum is closed on Mondays. "
            "Please remember to bring your umbrella tomorrow. The children played football after school. "
            "He reads the newspaper every morning with a cup of coffee. The shop on the corner sells fresh bread. "
            + SENTENCE)
    audio = speak(text, tmp_path / "long.wav")
    assert len(audio) > 480000
    engine = ASR_ENGINES.make("faster-whisper", {"model": "whisper-tiny.en"})
    (heard,) = engine.transcribe_batch([audio])
    assert word_error_rate(text, heard) <= 0.3, heard


@needs_tiny
def test_faster_whisper_reads_timestamped_segments():
    """The decoder's timestamps split its output into segments with their start and end; a segment that
    starts after a clip's own audio (heard in the padding) is what the engine drops."""
    from faster_whisper.tokenizer import Tokenizer

    engine = ASR_ENGINES.make("faster-whisper", {"model": "whisper-tiny.en"})
    tokenizer = Tokenizer(engine.whisper.hf_tokenizer, False)

    def at(seconds: float) -> int:
        return tokenizer.timestamp_begin + round(seconds / 0.02)

    tokens = [at(0.0), *tokenizer.encode(" Kids are talking"), at(1.5), at(1.5), *tokenizer.encode(" by the door"),
              at(3.0), at(24.0), *tokenizer.encode(" by the door"), at(26.0)]
    segments = engine._segments(tokens, tokenizer)
    assert segments == [(0.0, 1.5, " Kids are talking"), (1.5, 3.0, " by the door"), (24.0, 26.0, " by the door")]
    assert engine._heard(segments, 3.2) == ["Kids are talking", "by the door"]
    assert engine._segments(tokenizer.encode(" no timestamps"), tokenizer) == [(0.0, 0.0, " no timestamps")]


def test_a_sentence_repeated_into_the_padding_is_heard_once():
    """The decoder's other way into the padding: the clip's sentence again, from inside the clip to past its
    end. A repeat that ends inside the clip was spoken twice, and a new sentence past the end is kept."""
    from pipeline.media.asr import FasterWhisperASR

    heard = FasterWhisperASR._heard
    said = (0.0, 2.0, " Kids are talking by the door.")
    assert heard([said, (2.0, 4.0, " kids are talking by the door")], 3.3) == ["Kids are talking by the door."]
    assert heard([(0.0, 1.0, " No."), (1.0, 2.0, " No!")], 3.3) == ["No.", "No!"]            # said twice
    assert heard([said, (2.0, 4.0, " Dogs are sitting by the door.")], 3.3) == ["Kids are talking by the door.",
                                                                                 "Dogs are sitting by the door."]
    assert heard([said, (3.4, 5.0, " Kids are talking by the door.")], 3.3) == ["Kids are talking by the door."]
