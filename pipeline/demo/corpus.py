"""A deterministic synthetic talking-face corpus in the MER 2023 layout, for demos and end-to-end tests.

Every clip has a class and a valence; each modality then draws its own evidence of them: a random
intensity, and a chance of showing a confusable class instead. Modalities therefore err independently,
and fusion beats each one. Clip i draws only from default_rng([seed, i]), so clips can be made in any
order and in parallel with identical results.
"""

from __future__ import annotations

import copy
import csv
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from fractions import Fraction
from multiprocessing import get_context
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.config import DemoConfig
from pipeline.demo import face, text, voice
from pipeline.labels import MER_LABELS
from pipeline.progress import progress as counter

COLUMNS = ("path", "split", "label", "valence", "transcript", "speaker", "true_label", "true_valence")
VALENCE_MEAN = {"neutral": -0.1, "angry": -2.5, "happy": 1.8, "sad": -2.4, "worried": -1.0, "surprise": -0.4}
VALENCE_SD = 0.9


@dataclass(frozen=True)
class _Channel:
    """How a modality misleads: with chance `misleads` it shows the cue of a class it confuses. `gain`
    scales its cues so that at equal strengths no modality dominates (fusion has something to gain)."""
    misleads: float
    confusable: dict[str, tuple[str, ...]]
    gain: float = 1.0


# The voice confuses classes of similar arousal, the face classes sharing facial actions; words are
# explicit, so they mislead less often, and then towards any class.
VOICE = _Channel(0.2, gain=1.15, confusable={
    "neutral": ("sad", "worried"), "angry": ("happy", "surprise"), "happy": ("surprise", "angry"),
    "sad": ("neutral", "worried"), "worried": ("sad", "surprise"), "surprise": ("happy", "angry")})
FACE = _Channel(0.2, gain=0.75, confusable={
    "neutral": ("sad", "angry"), "angry": ("sad", "neutral"), "happy": ("neutral", "surprise"),
    "sad": ("worried", "angry"), "worried": ("sad", "surprise"), "surprise": ("worried", "happy")})
WORDS = _Channel(0.1, {c: tuple(o for o in MER_LABELS if o != c) for c in MER_LABELS})
# Speaker streams are keyed apart from clip streams, which use [seed, clip_index].
_SPEAKER_STREAM = 1 << 40
AUDIO_BIT_RATE = 32000
CLIPS_PER_TASK = 8


@dataclass(frozen=True)
class _Slot:
    index: int
    split: str
    labelled: bool
    speaker: int


@dataclass(frozen=True)
class _Evidence:
    cls: str
    intensity: float


def clip_slots(spec: DemoConfig) -> list[_Slot]:
    """Clip order: train, test1, test2, test3 labelled, test3 unlabelled; speakers cycle within each."""
    groups = [("train", True, spec.n_train), ("test1", True, spec.n_test1), ("test2", True, spec.n_test2),
              ("test3", True, spec.n_test3_labelled), ("test3", False, spec.n_unlabelled)]
    slots = []
    for split, labelled, n in groups:
        slots += [_Slot(len(slots) + i, split, labelled, i % spec.n_speakers) for i in range(n)]
    return slots


def _speaker(seed: int, k: int) -> tuple[face.Look, voice.Voice]:
    rng = np.random.default_rng([seed, _SPEAKER_STREAM + k])
    return face.speaker_look(rng), voice.speaker_voice(rng, low=k % 2 == 1)


def draw_evidence(label: str, strength: float, channel: _Channel, rng: np.random.Generator) -> _Evidence:
    cls = label
    if rng.random() < channel.misleads:
        options = channel.confusable[label]
        cls = options[int(rng.integers(len(options)))]
    return _Evidence(cls, channel.gain * strength * float(rng.uniform(0.3, 1.0)))


def draw_valence(label: str, rng: np.random.Generator) -> float:
    value = VALENCE_MEAN[label] + rng.normal(0, VALENCE_SD)
    return float(np.clip(np.round(value * 4) / 4, -5, 5)) + 0.0  # + 0.0: no "-0.00" in the manifest


def _mouth_opening(envelope: np.ndarray, n_frames: int) -> np.ndarray:
    """Mean voicing per video frame: the jaw follows the syllables."""
    return np.array([chunk.mean() for chunk in np.array_split(envelope, n_frames)])


def _add_video(container, spec: DemoConfig):
    """H.264 whose bytes depend only on the frames: one encoder thread (x264's frame threads make the
    bitstream depend on timing) and x264's C code paths (`asm=0`: its SIMD paths give other bytes, and
    which ones run depends on the CPU, so the same corpus would differ between machines)."""
    stream = container.add_stream("libx264", rate=Fraction(spec.fps),
                                   options={"crf": "28", "preset": "veryfast", "x264-params": "asm=0"})
    stream.codec_context.thread_count = 1
    stream.width = stream.height = spec.size
    stream.pix_fmt = "yuv420p"
    return stream


def _add_audio(container):
    """AAC with FFmpeg's bit-exact float routines (its SIMD ones round differently across CPUs); the fast
    coder: a third of the default's time, transparent enough for 16 kHz speech."""
    sound = container.add_stream("aac", rate=voice.SAMPLE_RATE, layout="mono", options={"aac_coder": "fast"})
    sound.bit_rate = AUDIO_BIT_RATE
    sound.codec_context.thread_count = 1
    sound.codec_context.flags |= int(av.codec.context.Flags.bitexact)
    return sound


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, spec: DemoConfig) -> None:
    """H.264 + AAC, audio interleaved with the frame it belongs to."""
    rate = voice.SAMPLE_RATE
    # bitexact: the muxer writes no FFmpeg version string, so the bytes do not name the library build
    with av.open(str(path), "w", options={"movflags": "faststart", "fflags": "+bitexact"}) as container:
        video = _add_video(container, spec)
        sound = _add_audio(container)
        done = 0
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(video.encode(frame))
            end = len(audio) if i == len(frames) - 1 else round((i + 1) * rate / spec.fps)
            if end > done:
                chunk = av.AudioFrame.from_ndarray(audio[None, done:end], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = rate, done, Fraction(1, rate)
                container.mux(sound.encode(chunk))
                done = end
        container.mux(video.encode())
        container.mux(sound.encode())


@dataclass
class Clip:
    row: dict[str, str]             # its manifest row, less the path
    frames: np.ndarray              # (T, size, size, 3) uint8 RGB
    audio: np.ndarray               # mono float32 at voice.SAMPLE_RATE
    faces: np.ndarray | None = None  # (T, face_size, face_size, 3) uint8 RGB: the same frames framed as aligned crops


# Aligned crops (as OpenFace's): the face fills most of the crop, centred.
ALIGNED_FACE_FRACTION = 0.8


def render_clip(spec: DemoConfig, slot: _Slot, face_size: int = 0) -> Clip:
    """Render and synthesise one clip; with face_size, also its frames framed as aligned face crops of
    that side (the same expression, head motion and lighting)."""
    rng = np.random.default_rng([spec.seed, slot.index])
    label = MER_LABELS[int(rng.integers(len(MER_LABELS)))]
    valence = draw_valence(label, rng)
    shift = valence - VALENCE_MEAN[label]
    look, speaker_voice = _speaker(spec.seed, slot.speaker)
    heard = draw_evidence(label, spec.audio_strength, VOICE, rng)
    seen = draw_evidence(label, spec.visual_strength, FACE, rng)
    read = draw_evidence(label, spec.text_strength, WORDS, rng)

    prosody = voice.EMOTIONS[heard.cls].scaled(heard.intensity)
    prosody += voice.VALENCE_PROSODY.scaled(shift * spec.audio_strength)
    audio, envelope = voice.synthesize(speaker_voice, prosody, spec.seconds, rng)
    n_frames = round(spec.seconds * spec.fps)
    faces = None
    if face_size:  # from a copy of the generator: the clip's other draws stay as without crops
        aligned = replace(look, face_fraction=ALIGNED_FACE_FRACTION, offset=(0.0, 0.0))
        faces = face.render(aligned, seen.cls, seen.intensity, shift * spec.visual_strength,
                            _mouth_opening(envelope, n_frames), face_size, spec.fps, copy.deepcopy(rng))
    frames = face.render(look, seen.cls, seen.intensity, shift * spec.visual_strength,
                         _mouth_opening(envelope, n_frames), spec.size, spec.fps, rng)
    # sqrt: already at moderate strength most sentences say something about the feeling
    cue = read.cls if rng.random() < np.sqrt(spec.text_strength) else None
    words = text.transcript(cue, read.intensity, shift * spec.text_strength, rng)
    row = {"split": slot.split, "label": label if slot.labelled else "",
           "valence": f"{valence:.2f}" if slot.labelled else "", "transcript": words,
           "speaker": f"spk{slot.speaker:02d}", "true_label": label, "true_valence": f"{valence:.2f}"}
    return Clip(row, frames, audio, faces)


def _make_clip(spec: DemoConfig, slot: _Slot, out_dir: Path) -> dict[str, str]:
    """Render, synthesise and write one clip; returns its manifest row."""
    clip = render_clip(spec, slot)
    relative = f"clips/demo_{slot.index:05d}.mp4"
    write_mp4(out_dir / relative, clip.frames, clip.audio, spec)
    return {"path": relative, **clip.row}


def _make_batch(spec: DemoConfig, slots: list[_Slot], out_dir: Path, make=_make_clip) -> list[tuple[int, dict]]:
    return [(slot.index, make(spec, slot, out_dir)) for slot in slots]


def run_slots(spec: DemoConfig, slots: list[_Slot], out_dir: Path, workers: int, progress: bool,
              make=_make_clip) -> list[dict]:
    """make(spec, slot, out_dir) -> row for every slot, in processes; the rows in slot order."""
    batches = [slots[i:i + CLIPS_PER_TASK] for i in range(0, len(slots), CLIPS_PER_TASK)]
    rows: dict[int, dict] = {}
    with counter(len(slots), "demo corpus", "clip", enabled=progress) as bar:
        if workers <= 1 or len(batches) <= 1:
            for batch in batches:
                rows.update(_make_batch(spec, batch, out_dir, make))
                bar.update(len(batch))
        else:
            # One process per core already: OpenCV's own threads in each would oversubscribe.
            # spawn, not fork: a fork after torch or OpenCV started their thread pools can deadlock.
            with ProcessPoolExecutor(min(workers, len(batches)), mp_context=get_context("spawn"),
                                     initializer=cv2.setNumThreads, initargs=(1,)) as pool:
                futures = [pool.submit(_make_batch, spec, batch, out_dir, make) for batch in batches]
                for future in as_completed(futures):
                    done = future.result()
                    rows.update(done)
                    bar.update(len(done))
    return [rows[slot.index] for slot in slots]


def generate_corpus(out_dir: Path, spec: DemoConfig, progress: bool = True, workers: int | None = None) -> Path:
    """Writes out_dir/clips/<id>.mp4 and out_dir/manifest.csv; returns the manifest path."""
    out_dir = Path(out_dir)
    (out_dir / "clips").mkdir(parents=True, exist_ok=True)
    rows = run_slots(spec, clip_slots(spec), out_dir, workers or os.cpu_count() or 1, progress)
    manifest = out_dir / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return manifest
