"""MER-NOISE style corruption (MER 2023 `main-corrupt.py`), made reproducible.

Per clip: additive noise at an SNR drawn from {5..10} dB and a Gaussian-pyramid blur drawn from
r in {1, 2, 4}. Unlike the baseline (unseeded `random` in forked workers), every draw comes from a
generator seeded by (seed, sample id), so a clip's corruption depends only on (seed, sample id,
view, noise pool contents) and is bit-identical across runs and worker layouts (for a given numpy).
Noise sources are a registry in the encoders' idiom: corrupt.noise_source names one and
corrupt.noise_options gives its Config.

Audio is float in [-1, 1] mono at SAMPLE_RATE; frames are (T, H, W, 3) uint8.
"""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import soundfile as sf

from pipeline.config import CorruptConfig
from pipeline.environment import versions
from pipeline.media.decode import SAMPLE_RATE
from pipeline.registry import Component, Registry

# Largest float sample that survives conversion to int16 without clipping (the baseline's guard).
PEAK = 32767 / 32768
AUDIO_SUFFIXES = (".wav", ".flac")


@dataclass(frozen=True)
class CorruptedView:
    """One corrupted view of the corrupt.splits items: the corrupt params (noise source, SNRs and blur
    factors drawn per clip, as MER 2023) with the seed, or one fixed SNR or blur factor of a robustness view."""
    cfg: CorruptConfig = field(default_factory=CorruptConfig)
    seed: int = 0
    snr: float | None = None     # a fixed SNR instead of a draw from cfg.snr_db
    blur: int | None = None      # a fixed blur factor instead of a draw from cfg.blur
    noise: bool = True           # False: the audio is left clean (blur views)

    @property
    def snr_choices(self) -> tuple[float, ...]:
        return self.cfg.snr_db if self.snr is None else (self.snr,)

    @property
    def blur_choices(self) -> tuple[int, ...]:
        return self.cfg.blur if self.blur is None else (self.blur,)

    def key(self) -> dict[str, Any]:
        """What shapes the view's items (part of their params hash): not the other views' params."""
        noise = {"source": self.cfg.noise_source, "options": self.cfg.noise_options,
                 "snr_db": self.snr_choices} if self.noise else None
        return {"seed": self.seed, "blur": self.blur_choices, "noise": noise, "reencode": self.cfg.reencode}


# ---------------------------------------------------------------- randomness


def clip_rng(seed: int, sample_id: str) -> np.random.Generator:
    """The clip's generator. sha256, not hash(): Python salts str hashes per process."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


def _draw(view: CorruptedView, rng: np.random.Generator) -> dict:
    # Both are drawn even when a modality is missing, so later draws never depend on what exists.
    snrs, blurs = view.snr_choices, view.blur_choices
    snr_db = snrs[rng.integers(len(snrs))]
    blur = blurs[rng.integers(len(blurs))]
    return {"snr_db": snr_db if view.noise else None, "blur": blur}


def draw_params(view: CorruptedView, sample_id: str) -> dict:
    """The SNR (None for clean audio) and blur factor `corrupt_clip` uses for this clip."""
    return _draw(view, clip_rng(view.seed, sample_id))


# ---------------------------------------------------------------- audio


def rms(x: np.ndarray) -> float:
    x = np.asarray(x, np.float64)
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def measure_snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """inf for no noise at all (the control view's +inf dB)."""
    return 20 * math.log10(rms(signal) / rms(noise)) if rms(noise) else math.inf


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
    """Any soundfile-readable recording as float32 mono at SAMPLE_RATE (channels averaged)."""
    audio, sr = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if sr != SAMPLE_RATE:
        g = math.gcd(sr, SAMPLE_RATE)
        from scipy.signal import resample_poly  # here, not at the top: scipy.signal adds ~1.3 s to every worker's start

        mono = resample_poly(mono, SAMPLE_RATE // g, sr // g)
    return mono.astype(np.float32)


class NoiseSource(Component):
    """Where the noise comes from. `ids` and `load` are the corpus pool (training clips with audio, and
    a loader of a clip's clean waveform) for sources that mix corpus speech; the others ignore them."""

    kind = "noise source"
    RUNTIME = {"ids": (), "load": None}

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        """One (name, float32 mono waveform at SAMPLE_RATE); all randomness from `rng`."""
        raise NotImplementedError

    def for_clip(self, sample_id: str) -> NoiseSource:
        """The source to use when corrupting `sample_id` (corpus-based sources exclude the clip)."""
        return self


@dataclass(frozen=True)
class BabbleConfig:
    talkers: tuple[int, ...] = (3, 5)   # fewest and most utterances mixed


class BabbleSource(NoiseSource):
    """Babble from other training clips of the corpus: 3-5 utterances at equal level, summed (MUSAN-speech-like).

    `load(id)` returns a clip's clean waveform; cache it if loading is slow. The utterances are cut to
    the shortest so the babble has the same number of talkers throughout.
    """

    name = "babble"
    Config = BabbleConfig

    def __init__(self, config=None, **runtime):
        super().__init__(config, **runtime)
        if self.load is None:
            raise ValueError("babble noise needs a loader for the corpus clips")
        # Sorted so the pick depends on the pool's contents, not the order it was listed in.
        self.ids, self.exclude = tuple(sorted(set(self.ids))), None
        most = self.config.talkers[1]
        if len(self.ids) <= most:
            raise ValueError(f"babble needs more than {most} clips in the pool, got {len(self.ids)}")

    def for_clip(self, sample_id: str) -> BabbleSource:
        source = copy.copy(self)
        source.exclude = sample_id
        return source

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        pool = [i for i in self.ids if i != self.exclude]
        fewest, most = self.config.talkers
        n = int(rng.integers(fewest, most + 1))
        names = [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]
        voices = [np.asarray(self.load(name), np.float64) for name in names]
        shortest = min(len(v) for v in voices)
        babble = sum(_unit_rms(v[:shortest]) for v in voices)
        return "babble:" + "+".join(names), _unit_rms(babble).astype(np.float32)


@dataclass(frozen=True)
class SyntheticConfig:
    seconds: float = 10.0    # length of each generated recording


class WhiteSource(NoiseSource):
    """White Gaussian noise."""

    name = "white"
    Config = SyntheticConfig

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        return "white", rng.standard_normal(int(self.config.seconds * SAMPLE_RATE)).astype(np.float32)


class PinkSource(NoiseSource):
    """1/f power spectrum (-10 dB/decade): white noise with its amplitude spectrum shaped by 1/sqrt(f)."""

    name = "pink"
    Config = SyntheticConfig

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        n = int(self.config.seconds * SAMPLE_RATE)
        spectrum = np.fft.rfft(rng.standard_normal(n))
        freqs = np.fft.rfftfreq(n)
        spectrum[0] = 0  # no DC offset
        spectrum[1:] /= np.sqrt(freqs[1:])
        return "pink", _unit_rms(np.fft.irfft(spectrum, n)).astype(np.float32)


@dataclass(frozen=True)
class FolderConfig:
    dir: str = ""            # a folder of recordings, e.g. MUSAN's speech/


class FolderSource(NoiseSource):
    """Recordings (.wav/.flac, searched recursively) from a folder such as MUSAN speech."""

    name = "folder"
    Config = FolderConfig

    def __init__(self, config=None, **runtime):
        super().__init__(config, **runtime)
        self.root = Path(self.config.dir)
        self.files = _recordings(self.root)

    @classmethod
    def library_versions(cls, config) -> dict[str, str]:
        return versions("soundfile")

    @classmethod
    def available(cls, config) -> tuple[bool, str]:
        if not config.dir:
            return False, "needs corrupt.noise_options: {dir: FOLDER} (recordings, e.g. MUSAN's speech/)"
        try:
            _recordings(Path(config.dir))
        except FileNotFoundError as err:
            return False, str(err)
        return True, ""

    def pick(self, rng: np.random.Generator) -> tuple[str, np.ndarray]:
        name = self.files[rng.integers(len(self.files))]
        return name, read_mono_16k(self.root / name)


def _recordings(root: Path) -> list[str]:
    """The audio files under root as sorted relative paths: the listing (and so every pick) is the
    same on any filesystem."""
    if not root.is_dir():
        raise FileNotFoundError(f"noise folder {root} does not exist")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                   if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    if not files:
        raise FileNotFoundError(f"noise folder {root} holds no {'/'.join(AUDIO_SUFFIXES)} files")
    return files


NOISE_SOURCES = Registry("corrupt.noise_source", BabbleSource, WhiteSource, PinkSource, FolderSource,
                         options_key="corrupt.noise_options")


def make_source(view: CorruptedView, babble_ids: Iterable[str] = (),
                load: Callable[[str], np.ndarray] | None = None) -> NoiseSource | None:
    """The view's noise source (None for clean audio); babble needs the corpus ids and a loader for
    their clean audio."""
    if not view.noise:
        return None
    return view.cfg.noise_source.make(ids=tuple(babble_ids), load=load)


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
    view: CorruptedView,
    source: NoiseSource | None,  # None only when there is no audio or the view leaves it clean
) -> tuple[np.ndarray | None, np.ndarray | None, dict]:
    """Corrupt whichever modalities exist; returns (audio, frames, meta to store with the clip).

    Fixed draw order on clip_rng(view.seed, sample_id) (changing it changes every corrupted clip):
    1. snr_db, 2. blur factor, 3. noise recordings in pick order (each with its own draws),
    4. crop offset. Blurring draws nothing.
    """
    rng = clip_rng(view.seed, sample_id)
    params = _draw(view, rng)
    meta = {"sample_id": sample_id, "seed": view.seed, **params}
    if frames is not None:
        frames = blur_frames(frames, params["blur"])
    if audio is not None and view.noise:
        audio, info = corrupt_audio(audio, source.for_clip(sample_id), params["snr_db"], rng)
        meta |= info
    return audio, frames, meta
