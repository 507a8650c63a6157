"""Long recordings for tests and benchmarks: clips joined end to end, with silence between them, written
as they are read (memory holds one clip, however long the recording)."""

from __future__ import annotations

from collections.abc import Iterable
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


def join_clips(clips: Iterable[Path], out: Path, gap: float = 1.0) -> list[tuple[float, float]]:
    """Write the clips one after another into `out` (MPEG-4 video, AAC audio), `gap` seconds of silence
    and a still grey frame before, between and after them; returns each clip's (start, end) seconds.
    All clips must share one frame size and rate."""
    spans = []
    with _Writer(out) as writer:
        for clip in clips:
            frames, audio, fps = read_clip(clip)
            writer.pause(gap, frames[0].shape, fps)
            start = writer.seconds
            writer.add(frames, audio, fps)
            spans.append((start, writer.seconds))
        writer.pause(gap, frames[0].shape, fps)
    return spans


class _Writer:
    def __init__(self, out: Path):
        self.container = av.open(str(out), "w")
        self.video = self.sound = None
        self.frames = self.samples = 0
        self.fps = 0.0

    def __enter__(self):
        return self

    @property
    def seconds(self) -> float:
        return self.frames / self.fps if self.frames else 0.0

    def pause(self, seconds: float, shape: tuple, fps: float) -> None:
        count = round(seconds * fps)
        if count == 0:
            return
        self.add([np.full(shape, 90, np.uint8)] * count, np.zeros(round(count / fps * RATE), np.int16), fps)

    def add(self, frames: list[np.ndarray], audio: np.ndarray, fps: float | None = None) -> None:
        if self.video is None:
            self._open(frames[0].shape, fps)
        for image in frames:
            self.container.mux(self.video.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        # the audio of these frames exactly (padded or cut), so both streams stay in step
        n = round((self.frames + len(frames)) / self.fps * RATE) - self.samples
        audio = np.pad(audio[:n], (0, max(0, n - len(audio))))
        for start in range(0, len(audio), 1024):
            frame = av.AudioFrame.from_ndarray(audio[None, start:start + 1024], format="s16", layout="mono")
            frame.sample_rate, frame.pts = RATE, self.samples + start
            self.container.mux(self.sound.encode(frame))
        self.frames += len(frames)
        self.samples += len(audio)

    def _open(self, shape: tuple, fps: float) -> None:
        self.fps = fps
        self.video = self.container.add_stream("mpeg4", rate=Fraction(fps).limit_denominator(1000))
        self.video.width, self.video.height = shape[1], shape[0]
        self.video.pix_fmt = "yuv420p"
        self.video.bit_rate = 800_000
        self.sound = self.container.add_stream("aac", rate=RATE)
        self.sound.layout = "mono"

    def __exit__(self, *exc) -> None:
        if self.video is not None:
            self.container.mux(self.video.encode(None))
            self.container.mux(self.sound.encode(None))
        self.container.close()
