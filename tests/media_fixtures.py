"""Small media files written with PyAV for tests: a real face (scikit-image's astronaut) on a plain
background, a 220 Hz tone, optional second face or variable frame rate, and truncation."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import skimage.data

# The astronaut's head (hair to chin) in skimage.data.astronaut(); OpenCV's Haar cascade finds her
# face at x 177-270, y 67-160, inside this crop.
FACE_ROWS = slice(20, 200)
FACE_COLS = slice(150, 300)
BACKGROUND = (96, 112, 128)
TONE_HZ = 220.0
TONE_AMPLITUDE = 0.3
AUDIO_RATE = 44100

_MP4_LIKE = {".mp4", ".m4a", ".mov"}
# Codecs by file suffix (video, audio); anything else gets H.264 + AAC. FLV as CREMA-D ships it, but with
# Sorenson H.263 instead of VP6, which FFmpeg decodes and cannot encode.
_CODECS = {".wav": ("libx264", "pcm_s16le"), ".flac": ("libx264", "flac"), ".mp3": ("libx264", "libmp3lame"),
           ".ogg": ("libx264", "libopus"), ".flv": ("flv", "libmp3lame")}


def astronaut_face() -> np.ndarray:
    return skimage.data.astronaut()[FACE_ROWS, FACE_COLS]


def write_clip(path: Path, seconds: float = 2.0, fps: float = 15, size: int | tuple[int, int] = 160,
               with_video: bool = True, with_audio: bool = True, face: bool = True, two_faces: bool = False,
               vfr: bool = False, faststart: bool = True, audio_rate: int = AUDIO_RATE, channels: int = 2) -> Path:
    """H.264 (yuv420p) + AAC clip; audio-only when with_video=False (.wav, .flac, .mp3, .ogg and .flv paths
    get the usual codec of that format, see _CODECS). The tone is written at audio_rate with `channels`.

    size: square side or (width, height). face=False gives a noisy plain background. two_faces puts one
    face left and one right whose sizes cross over during the clip (left shrinks, right grows). vfr
    alternates frame intervals of 1.5/fps and 0.5/fps (same average rate). faststart puts the MP4 index
    first, as web files have it, so a truncated copy still opens.
    """
    path = Path(path)
    width, height = (size, size) if isinstance(size, int) else size
    options = {"movflags": "faststart"} if faststart and path.suffix in _MP4_LIKE else {}
    video_codec, audio_codec = _CODECS.get(path.suffix, ("libx264", "aac"))
    layout = {1: "mono", 2: "stereo"}[channels]
    with av.open(str(path), "w", options=options) as container:
        # Every stream must exist before the first packet is muxed.
        video = _add_video(container, fps, width, height, video_codec) if with_video else None
        audio = container.add_stream(audio_codec, rate=audio_rate, layout=layout) if with_audio else None
        if video is not None:
            _write_video(container, video, seconds, fps, face, two_faces, vfr)
        if audio is not None:
            _write_audio(container, audio, seconds, audio_rate, channels)
    return path


def _add_video(container, fps, width, height, codec="libx264"):
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    # Half-frame time units let VFR steps of 1.5 and 0.5 frames be integers.
    stream.codec_context.time_base = 1 / (2 * Fraction(fps).limit_denominator(1000))
    return stream


def _write_video(container, stream, seconds, fps, face, two_faces, vfr) -> None:
    width, height, time_base = stream.width, stream.height, stream.codec_context.time_base
    rng = np.random.default_rng(0)
    pts = 0
    for i in range(round(seconds * fps)):
        progress = i / max(1, round(seconds * fps) - 1)
        image = _frame(width, height, progress, face, two_faces, rng)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        container.mux(stream.encode(frame))
        pts += (3 if i % 2 == 0 else 1) if vfr else 2
    container.mux(stream.encode())


def _frame(width, height, progress, face, two_faces, rng) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = BACKGROUND
    if not face:
        noise = rng.normal(0, 12, image.shape)
        return np.clip(image + noise, 0, 255).astype(np.uint8)
    drift = round(4 * np.sin(2 * np.pi * progress))  # small motion, so frames differ
    if two_faces:
        _paste(image, (0.75 - 0.25 * progress) * height, width / 4 + drift, height / 2)
        _paste(image, (0.5 + 0.25 * progress) * height, 3 * width / 4 - drift, height / 2)
    else:
        _paste(image, 0.85 * height, width / 2 + drift, height / 2)
    return image


def _paste(image: np.ndarray, face_height: float, cx: float, cy: float) -> None:
    """Paste the astronaut's head scaled to face_height, centred at (cx, cy), clipped to the image."""
    patch = astronaut_face()
    h = max(2, round(face_height))
    w = max(2, round(h * patch.shape[1] / patch.shape[0]))
    patch = cv2.resize(patch, (w, h), interpolation=cv2.INTER_AREA)
    y0, x0 = round(cy - h / 2), round(cx - w / 2)
    ys, xs = slice(max(0, y0), min(image.shape[0], y0 + h)), slice(max(0, x0), min(image.shape[1], x0 + w))
    image[ys, xs] = patch[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]


def tone(seconds: float, rate: int = AUDIO_RATE) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)


def _write_audio(container, stream, seconds, rate=AUDIO_RATE, channels=2) -> None:
    signal = tone(seconds, rate)
    block = rate // 10
    for start in range(0, len(signal), block):
        chunk = signal[start:start + block]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk] * channels), format="fltp", layout=stream.layout.name)
        frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
        container.mux(stream.encode(frame))  # PyAV re-frames and converts to the codec's format
    container.mux(stream.encode())


def truncate(path: Path, fraction: float) -> Path:
    """Keep only the first `fraction` of the file's bytes, as an interrupted copy would."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path
