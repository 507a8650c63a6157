"""Procedural speech: a source-filter voice with emotional prosody, no TTS model.

A glottal pulse train at a time-varying f0 (with jitter, shimmer and breath noise) is shaped by a
spectral-tilt low-pass and by formant resonators of one vowel per syllable; unvoiced syllable onsets
are band-passed noise bursts. Emotion moves the prosody (f0 level and range, loudness, tempo, voice
quality), as in acted emotional speech; the speaker sets base pitch and vocal-tract length.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
from scipy.signal import butter, lfilter, sosfilt
from scipy.signal.windows import tukey

SAMPLE_RATE = 16000

# (F1, F2, F3) Hz of an adult female voice for a few vowels; a speaker scales them all.
VOWELS = np.array([[850, 1610, 2850], [610, 1900, 2600], [390, 2300, 3000], [600, 1000, 2700],
                   [400, 900, 2600], [500, 1400, 2600]], dtype=float)
BANDWIDTHS = (90.0, 110.0, 160.0)
# Unvoiced onsets: band edges in Hz (s-like, sh-like, burst-like) and duration range in seconds.
CONSONANTS = (((3800, 7500), (0.05, 0.09)), ((1800, 4500), (0.05, 0.08)), ((1200, 4000), (0.012, 0.025)))


@dataclass(frozen=True)
class Prosody:
    """Deviations from a calm voice; emotions give these at full intensity."""
    pitch: float = 0.0        # f0 level, semitones
    range: float = 0.0        # f0 excursion, log2 factor on the accent size
    loudness: float = 0.0     # dB
    tempo: float = 0.0        # log2 factor on the syllable rate
    jitter: float = 0.0       # extra cycle-to-cycle f0 perturbation, relative
    breath: float = 0.0       # extra aspiration noise relative to the voicing
    brightness: float = 0.0   # >0 flatter spectrum (tense voice), <0 steeper (lax voice)
    contour: float = 0.0      # final f0 rise (>0) or fall (<0), semitones

    def scaled(self, k: float) -> Prosody:
        return Prosody(*(k * getattr(self, f.name) for f in fields(self)))

    def __add__(self, other: Prosody) -> Prosody:
        return Prosody(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))


# Directions as in acted emotional speech: high arousal (angry, happy, surprise) raises pitch, loudness
# and tempo, sad lowers them, worried is fast and unsteady. Sizes are tuned so that eGeMAPS functionals
# classify about half the clips right at strength 0.6 (speaker differences mask the rest).
EMOTIONS = {
    "neutral": Prosody(),
    "angry": Prosody(pitch=4, range=0.5, loudness=10, tempo=0.35, jitter=0.006, brightness=1.5, contour=-3),
    "happy": Prosody(pitch=6, range=1.2, loudness=4, tempo=0.2, brightness=0.6, contour=2),
    "sad": Prosody(pitch=-4, range=-1.5, loudness=-10, tempo=-0.6, jitter=0.008, breath=0.35,
                   brightness=-1.5, contour=-4),
    "worried": Prosody(pitch=3, range=-0.8, loudness=-4, tempo=0.5, jitter=0.018, breath=0.2,
                       brightness=-0.5),
    "surprise": Prosody(pitch=8, range=1.5, loudness=3, tempo=-0.15, breath=0.08, contour=8),
}
# Per unit of valence above the class mean: slightly higher and brighter.
VALENCE_PROSODY = Prosody(pitch=0.6, loudness=0.5, brightness=0.1)


@dataclass(frozen=True)
class Voice:
    f0: float              # Hz
    formant_scale: float   # vocal-tract length: < 1 longer tract (lower formants)
    rate: float            # syllables per second at calm
    accent: float          # semitones of a typical pitch accent
    breath: float          # aspiration noise relative to the voicing
    level: float           # dB


def speaker_voice(rng: np.random.Generator, low: bool) -> Voice:
    """Two voice ranges (low ~ male, high ~ female), each with individual spread."""
    f0 = rng.uniform(95, 135) if low else rng.uniform(175, 240)
    scale = rng.uniform(0.8, 0.9) if low else rng.uniform(0.95, 1.08)
    return Voice(f0=float(f0), formant_scale=float(scale), rate=float(rng.uniform(3.8, 5.0)),
                 accent=float(rng.uniform(1.5, 3.0)), breath=float(rng.uniform(0.02, 0.08)),
                 level=float(rng.uniform(-3, 3)))


@dataclass
class _Syllable:
    start: float     # seconds
    onset: float     # length of the unvoiced onset (0 for none)
    end: float
    vowel: int
    consonant: int
    stress: float    # 0..1


def _plan(voice: Voice, prosody: Prosody, seconds: float, rng: np.random.Generator) -> list[_Syllable]:
    """Syllables grouped into words, with short pauses between words and a longer one between phrases."""
    rate = voice.rate * 2 ** prosody.tempo
    t = rng.uniform(0.05, 0.2)
    syllables = []
    while True:
        for _ in range(rng.integers(1, 4)):  # one word
            length = rng.uniform(0.7, 1.3) / rate
            onset = 0.0
            consonant = int(rng.integers(len(CONSONANTS)))
            if rng.random() < 0.7:
                onset = min(rng.uniform(*CONSONANTS[consonant][1]), 0.4 * length)
            if t + length > seconds - 0.08:
                return syllables
            syllables.append(_Syllable(t, onset, t + length, int(rng.integers(len(VOWELS))), consonant,
                                       float(rng.random())))
            t += length
        t += rng.uniform(0.03, 0.12) / 2 ** prosody.tempo
        if rng.random() < 0.15:
            t += rng.uniform(0.15, 0.3)


def _f0_track(voice: Voice, prosody: Prosody, syllables: list[_Syllable], n: int,
              rng: np.random.Generator) -> np.ndarray:
    """Per-sample f0 (Hz): accents on stressed syllables, declination, final rise/fall, jitter."""
    t = np.arange(n) / SAMPLE_RATE
    times = [0.0] + [(s.start + s.end) / 2 for s in syllables] + [n / SAMPLE_RATE]
    accent = voice.accent * 2 ** prosody.range
    targets = [0.0] + [accent * (s.stress - 0.4) + rng.normal(0, 0.3) for s in syllables] + [0.0]
    semitones = np.interp(t, times, targets)
    semitones += prosody.pitch - 1.5 * t / t[-1]
    if syllables:  # the contour lands on the last syllable
        last = syllables[-1]
        semitones += prosody.contour * np.clip((t - last.start) / (last.end - last.start), 0, 1)
    knots = np.arange(0, t[-1] + 0.02, 0.01)  # about one value per glottal cycle
    wobble = np.interp(t, knots, rng.standard_normal(len(knots)))
    return voice.f0 * 2 ** (semitones / 12) * (1 + (0.004 + max(prosody.jitter, 0.0)) * wobble)


def _glottal(f0: np.ndarray, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """Pulse train with shimmer, each pulse placed at its fractional time, then a tilt low-pass."""
    phase = np.cumsum(f0) / SAMPLE_RATE
    crossings = np.nonzero(np.diff(np.floor(phase)) > 0)[0]
    frac = (np.ceil(phase[crossings]) - phase[crossings]) / (phase[crossings + 1] - phase[crossings])
    pulses = np.zeros(len(f0) + 1)
    amp = 1 + 0.08 * rng.standard_normal(len(crossings))
    np.add.at(pulses, crossings + 1, amp * (1 - frac))
    np.add.at(pulses, np.minimum(crossings + 2, len(f0)), amp * frac)
    pole = np.clip(0.93 - 0.03 * brightness, 0.85, 0.97)
    return lfilter([1 - pole], [1, -pole], pulses[:len(f0)])


def _formants(signal: np.ndarray, formants: np.ndarray) -> np.ndarray:
    """Cascade of two-pole resonators, each with unit gain at DC."""
    for freq, bw in zip(formants, BANDWIDTHS):
        r = np.exp(-np.pi * bw / SAMPLE_RATE)
        a = [1, -2 * r * np.cos(2 * np.pi * freq / SAMPLE_RATE), r * r]
        signal = lfilter([sum(a)], a, signal)
    return signal


def _envelopes(syllables: list[_Syllable], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(len(VOWELS), n) voicing envelope per vowel and (len(CONSONANTS), n) per consonant."""
    vowels = np.zeros((len(VOWELS), n))
    consonants = np.zeros((len(CONSONANTS), n))
    for s in syllables:
        a, b, c = (round(x * SAMPLE_RATE) for x in (s.start, s.start + s.onset, s.end))
        gain = 0.6 + 0.4 * s.stress
        if c - b > 2:
            vowels[s.vowel, b:c] += gain * tukey(c - b, 0.5)
        if b - a > 2:
            consonants[s.consonant, a:b] += 0.5 * gain * tukey(b - a, 0.6)
    return vowels, consonants


def synthesize(voice: Voice, prosody: Prosody, seconds: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Mono float32 speech at SAMPLE_RATE and its (n,) voicing envelope in [0, 1] (drives the mouth)."""
    n = round(seconds * SAMPLE_RATE)
    syllables = _plan(voice, prosody, seconds, rng)
    vowel_env, consonant_env = _envelopes(syllables, n)
    source = _glottal(_f0_track(voice, prosody, syllables, n, rng), prosody.brightness, rng)
    source /= np.std(source) + 1e-9
    breath = voice.breath + max(prosody.breath, 0.0)
    source += breath * rng.standard_normal(n)
    speech = sum(env * _formants(source, f * voice.formant_scale) for env, f in zip(vowel_env, VOWELS))
    noise = rng.standard_normal(n)
    for env, ((lo, hi), _) in zip(consonant_env, CONSONANTS):
        speech += env * sosfilt(butter(4, (lo, hi), "bandpass", fs=SAMPLE_RATE, output="sos"), noise)
    voiced = vowel_env.sum(0)
    rms = np.sqrt(np.mean(speech[voiced > 0.3] ** 2)) if np.any(voiced > 0.3) else 1.0
    speech *= 10 ** ((-20 + voice.level + prosody.loudness) / 20) / rms
    speech += 10 ** (-55 / 20) * rng.standard_normal(n)  # room noise: no digital silence
    peak = np.max(np.abs(speech))
    if peak > 0.95:  # a limiter, as a recording chain has
        speech *= 0.95 / peak
    return speech.astype(np.float32), np.clip(voiced, 0, 1)
