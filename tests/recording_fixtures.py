"""Long recordings for tests: generated talking-face clips joined end to end, with silence between them."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATE = 16000


def read_clip(path: Path) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Every video frame (RGB), the mono 16 kHz int16 audio and the frame rate of a clip."""
    with av.open(str(path)) as container:
        fps = float(container.streams.video[0].average_rate)
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=RATE)
        chunks = [out.to_ndarray().reshape(-1) for f in container.decode(audio=0) for out in resampler.resample(f)]
        chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return frames, np.concatenate(chunks), fps


def join_clips(clips: list[Path], out: Path, gap: float = 1.0, blank_gap_frames: bool = True) -> list[tuple[float, float]]:
    """Write the clips one after another into `out` (MPEG-4 video, AAC audio), `gap` seconds of silence
    (and a still grey frame) before, between and after them; returns each clip's (start, end) seconds."""
    decoded = [read_clip(c) for c in clips]
    fps = decoded[0][2]
    height, width = decoded[0][0][0].shape[:2]
    frames: list[np.ndarray] = []
    audio: list[np.ndarray] = []
    spans = []
    pause = round(gap * fps)
    grey = np.full((height, width, 3), 90, np.uint8)
    for clip_frames, clip_audio, _ in decoded:
        frames += [grey] * pause
        audio.append(np.zeros(round(pause / fps * RATE), np.int16))
        start = len(frames) / fps
        frames += clip_frames
        n = round(len(clip_frames) / fps * RATE)
        audio.append(np.pad(clip_audio[:n], (0, max(0, n - len(clip_audio)))))
        spans.append((start, len(frames) / fps))
    frames += [grey] * pause
    audio.append(np.zeros(round(pause / fps * RATE), np.int16))
    write_av(out, frames, np.concatenate(audio), fps)
    return spans


def write_av(out: Path, frames: list[np.ndarray], audio: np.ndarray, fps: float) -> None:
    with av.open(str(out), "w") as container:
        video = container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
        video.width, video.height = frames[0].shape[1], frames[0].shape[0]
        video.pix_fmt = "yuv420p"
        video.bit_rate = 800_000
        sound = container.add_stream("aac", rate=RATE)
        sound.layout = "mono"
        for image in frames:
            container.mux(video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(video.encode(None))
        for start in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, start:start + 1024], format="s16", layout="mono")
            frame.sample_rate = RATE
            frame.pts = start
            container.mux(sound.encode(frame))
        container.mux(sound.encode(None))
