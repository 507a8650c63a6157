"""MER-NOISE style corruption (MER 2023 `main-corrupt.py`), made reproducible.

Per clip: additive noise at an SNR drawn from {5..10} dB and a Gaussian-pyramid blur drawn from
r in {1, 2, 4}. Unlike the baseline (unseeded `random` in forked workers), every draw comes from a
generator seeded by (seed, sample id), so a clip's corruption depends only on (seed, sample id,
spec, noise pool contents) and is bit-identical across runs and worker layouts (for a given numpy).

Audio is float in [-1, 1] at 16 kHz mono; frames are (T, H, W, 3) uint8.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import soundfile as sf

SR = 16_000
# Largest float sample that survives conversion to int16 without clipping (the baseline's guard).
PEAK = 32767 / 32768
NOISE_SOURCES = ("babble", "white", "pink", "folder", "none")  # none: audio left clean (blur-only views)
AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass(frozen=True)
class CorruptSpec:
    snr_db: tuple[int, ...] = (5, 6, 7, 8, 9, 10)  # uniform per clip, as in MER 2023
    blur: tuple[int, ...] = (1, 2, 4)  # uniform per clip; log2(r) pyrDown then as many pyrUp
    noise_source: str = "babble"  # one of NOISE_SOURCES
    noise_dir: str | None = None  # recordings for "folder" (e.g. MUSAN speech)
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.snr_db or not self.blur:
            raise ValueError("snr_db and blur need at least one value each")
        if any(r < 1 or r & (r - 1) for r in self.blur):
            raise ValueError(f"blur factors must be powers of two >= 1, got {self.blur}")
        if self.noise_source not in NOISE_SOURCES:
            raise ValueError(f"noise_source must be one of {NOISE_SOURCES}, got {self.noise_source!r}")
        if self.noise_source == "folder" and not self.noise_dir:
            raise ValueError('noise_source "folder" needs noise_dir')


# ---------------------------------------------------------------- randomness


def clip_rng(seed: int, sample_id: str) -> np.random.Generator:
    """The clip's generator. sha256, not hash(): Python salts str hashes per process."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def _draw(spec: CorruptSpec, rng: np.random.Generator) -> dict:
    # Both are drawn even when a modality is missing, so later draws never depend on what exists.
    snr_db = spec.snr_db[rng.integers(len(spec.snr_db))]
    blur = spec.blur[rng.integers(len(spec.blur))]
    return {"snr_db": snr_db, "blur": blur}


def draw_params(spec: CorruptSpec, sample_id: str) -> dict:
    """The SNR and blur factor `corrupt_clip` uses for this clip."""
    return _draw(spec, clip_rng(spec.seed, sample_id))


# ---------------------------------------------------------------- audio


def rms(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def measure_snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    return 20 * math.log10(rms(signal) / rms(noise))


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> tuple[np.ndarray, float, float]:
    """Add `noise` (same length) scaled to `snr_db`; returns (mix, noise gain, anti-clipping rescale).

    If the mix would clip in 16 bit the whole mix is scaled down, which keeps the SNR.
    """
    speech = np.asarray(speech, np.float64)
    noise = np.asarray(noise, np.float64)
    if speech.shape != noise.shape:
        raise ValueError(f"speech {speech.shape} and noise {noise.shape} differ in shape")
    noise_rms = rms(noise)
    if noise_rms == 0:
        raise ValueError("the noise is silent: no gain reaches a finite SNR")
    gain = rms(speech) / (noise_rms * 10 ** (snr_db / 20))
    mix = speech + gain * noise
    peak = float(np.max(np.abs(mix), initial=0.0))
    rescale = PEAK / peak if peak > PEAK else 1.0
    return (mix * rescale).astype(np.float32), gain, rescale


def build_noise(
    length: int,
    pick: Callable[[np.random.Generator], tuple[str, np.ndarray]],
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[str], int]:
    """Concatenate picked recordings until strictly longer than `length`, then crop at a random offset.

    Returns (noise, names of the recordings used, offset), offset uniform in [0, total - length].
    """
    names, pieces, total = [], [], 0
    while total <= length:
        name, wave = pick(rng)
        if len(wave) == 0:
            raise ValueError(f"noise recording {name!r} is empty")
        names.append(name)
        pieces.append(np.asarray(wave, np.float32))
        total += len(wave)
    offset = int(rng.integers(total - length + 1))
    return np.concatenate(pieces)[offset : offset + length], names, offset


def _unit_rms(x: np.ndarray) -> np.ndarray:
    r = rms(x)
    return x / r if r > 0 else x


def read_mono_16k(path: str | Path) -> np.ndarray:
    """Any soundfile-readable recording as float32 16 kHz mono (channels averaged)."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != SR:
        g = math.gcd(sr, SR)
        from scipy.signal import resample_poly  # here, not at the top: scipy.signal adds ~1.3 s to every worker's start

        mono = resample_poly(mono, SR // g, sr // g)
    return mono.astype(np.float32)


class NoiseSource(Protocol):
    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        """One (name, float32 16 kHz mono waveform); all randomness from `rng`."""
        ...

    def for_clip(self, sample_id: str) -> NoiseSource:
        """The source to use when corrupting `sample_id` (corpus-based sources exclude the clip)."""
        return self


@dataclass(frozen=True)
class BabbleSource(NoiseSource):
    """Babble from other clips of the corpus: 3-5 utterances at equal level, summed (MUSAN-speech-like).

    `load(id)` returns a clip's clean 16 kHz waveform; cache it if loading is slow. The utterances are
    cut to the shortest so the babble has the same number of talkers throughout.
    """

    ids: tuple[str, ...]
    load: Callable[[str], np.ndarray]
    exclude: str | None = None
    talkers: tuple[int, int] = (3, 5)

    def __post_init__(self) -> None:
        # Sorted so the pick depends on the pool's contents, not the order it was listed in.
        object.__setattr__(self, "ids", tuple(sorted(set(self.ids))))
        if len(self.ids) <= self.talkers[1]:
            raise ValueError(
                f"babble needs more than {self.talkers[1]} clips in the pool, got {len(self.ids)}"
            )

    def for_clip(self, sample_id: str) -> BabbleSource:
        return dataclasses.replace(self, exclude=sample_id)

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        pool = [i for i in self.ids if i != self.exclude]
        n = int(rng.integers(self.talkers[0], self.talkers[1] + 1))
        names = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
        voices = [np.asarray(self.load(name), np.float64) for name in names]
        shortest = min(len(v) for v in voices)
        babble = sum(_unit_rms(v[:shortest]) for v in voices)
        return "babble:" + "+".join(names), _unit_rms(babble).astype(np.float32)


@dataclass(frozen=True)
class WhiteSource(NoiseSource):
    seconds: float = 10.0

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        return "white", rng.standard_normal(int(self.seconds * SR)).astype(np.float32)


@dataclass(frozen=True)
class PinkSource(NoiseSource):
    """1/f power spectrum (-10 dB/decade): white noise with its amplitude spectrum shaped by 1/sqrt(f)."""

    seconds: float = 10.0

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        n = int(self.seconds * SR)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n)
        spectrum[0] = 0  # no DC offset
        spectrum[1:] /= np.sqrt(freqs[1:])
        return "pink", _unit_rms(np.fft.irfft(spectrum, n)).astype(np.float32)


class FolderSource(NoiseSource):
    """Recordings (.wav/.flac, searched recursively) from a folder such as MUSAN speech."""

    def __init__(self, directory: str | Path):
        self.root = Path(directory)
        if not self.root.is_dir():
            raise FileNotFoundError(f"noise folder {self.root} does not exist")
        # Sorted relative paths: the listing (and so every pick) is the same on any filesystem.
        self.files = sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()
        )
        if not self.files:
            raise FileNotFoundError(f"noise folder {self.root} holds no {'/'.join(AUDIO_SUFFIXES)} files")

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        name = self.files[rng.integers(len(self.files))]
        return name, read_mono_16k(self.root / name)


def make_source(
    spec: CorruptSpec,
    babble_ids: Iterable[str] = (),
    load: Callable[[str], np.ndarray] | None = None,
) -> NoiseSource | None:
    """The noise source `spec` names (None for "none"); babble needs the corpus ids and a loader for their
    clean audio."""
    if spec.noise_source == "babble":
        if load is None:
            raise ValueError("babble noise needs a loader for the corpus clips")
        return BabbleSource(tuple(babble_ids), load)
    if spec.noise_source == "folder":
        return FolderSource(spec.noise_dir)
    if spec.noise_source == "none":
        return None  # corrupt_clip adds no noise
    return WhiteSource() if spec.noise_source == "white" else PinkSource()


def corrupt_audio(
    speech: np.ndarray, source: NoiseSource, snr_db: float, rng: np.random.Generator
) -> tuple[np.ndarray, dict]:
    """Mix noise from `source` into 1-D float `speech` at `snr_db`; returns (audio, record of what was done)."""
    speech = np.asarray(speech)
    if speech.ndim != 1 or not np.issubdtype(speech.dtype, np.floating):
        raise TypeError(f"speech must be 1-D float audio, got {speech.dtype} {speech.shape}")
    if rms(speech) == 0:
        # No noise level gives a finite SNR against silence; leave the clip clean and say so.
        return speech.astype(np.float32), {"snr_db": snr_db, "skipped": "silent audio"}
    noise, names, offset = build_noise(len(speech), source.pick, rng)
    mix, gain, rescale = mix_at_snr(speech, noise, snr_db)
    clean = rescale * speech.astype(np.float64)
    return mix, {
        "snr_db": snr_db,
        "noise": names,
        "noise_offset": offset,
        "noise_gain": gain,
        "rescale": rescale,
        "measured_snr_db": measure_snr_db(clean, mix - clean),
    }


# ---------------------------------------------------------------- video


def _blur_frame(frame: np.ndarray, levels: int) -> np.ndarray:
    sizes = []
    for _ in range(levels):
        sizes.append((frame.shape[1], frame.shape[0]))
        frame = cv2.pyrDown(frame)
    # pyrUp to each level's own size: odd sizes come back exact instead of 1 px larger.
    for size in reversed(sizes):
        frame = cv2.pyrUp(frame, dstsize=size)
    return frame


def blur_frames(frames: np.ndarray, r: int) -> np.ndarray:
    """log2(r) pyrDown then as many pyrUp per frame; same (T, H, W, 3) shape. r=1 returns a copy."""
    if frames.ndim != 4 or frames.dtype != np.uint8:
        raise TypeError(f"frames must be (T, H, W, C) uint8, got {frames.dtype} {frames.shape}")
    if r < 1 or r & (r - 1):
        raise ValueError(f"blur factor must be a power of two >= 1, got {r}")
    levels = r.bit_length() - 1
    if levels == 0:
        return frames.copy()
    return np.stack([_blur_frame(np.ascontiguousarray(f), levels) for f in frames])


# ---------------------------------------------------------------- clip


def corrupt_clip(
    sample_id: str,
    audio: np.ndarray | None,
    frames: np.ndarray | None,
    spec: CorruptSpec,
    source: NoiseSource | None,  # None only when there is no audio or noise_source is "none"
) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
    """Corrupt whichever modalities exist; returns (audio, frames, meta to store with the clip).

    Fixed draw order on clip_rng(spec.seed, sample_id) (changing it changes every corrupted clip):
    1. snr_db, 2. blur factor, 3. noise recordings in pick order (each with its own draws),
    4. crop offset. Blurring draws nothing.
    """
    rng = clip_rng(spec.seed, sample_id)
    params = _draw(spec, rng)
    if spec.noise_source == "none":
        params["snr_db"] = None  # drawn (fixed draw order) but not applied
    meta = {"sample_id": sample_id, "seed": spec.seed, **params}
    if frames is not None:
        frames = blur_frames(frames, params["blur"])
    if audio is not None and spec.noise_source != "none":
        audio, info = corrupt_audio(audio, source.for_clip(sample_id), params["snr_db"], rng)
        meta |= info
    return audio, frames, meta
