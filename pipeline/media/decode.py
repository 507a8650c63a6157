"""Decode a clip once: sampled RGB frames and mono audio from a single PyAV demux pass.

Frame sampling: targets lie on a grid of `interval` seconds from the clip start, and each target keeps
the first frame whose presentation time is at or after it, so variable frame rate and dropped frames
do not shift the grid. The interval is 1/fps unless the clip is longer than max_frames/fps; then it is
stretched to duration/max_frames, so the kept frames cover the whole clip evenly instead of only its
start. When the container does not state a duration, sampling stops after max_frames.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from pipeline.errors import MerError

# The pipeline's one audio rate: decoding resamples to it, and the media store, corruption, ASR and every
# encoder take audio at it (Whisper, openSMILE's eGeMAPS and wav2vec-style models all expect 16 kHz).
SAMPLE_RATE = 16000
# Tolerance when comparing frame times to targets: pts are rounded to the stream time base.
_TIME_EPS = 1e-3
# Variable frame rate: at least _VFR_SHARE of frame intervals deviate from the median by over _VFR_DEVIATION
# (a share, so one frame lost to a corrupt packet does not count).
_VFR_DEVIATION = 0.25
_VFR_SHARE = 0.1
# Media ending before this fraction of the stated duration is reported as truncated.
_TRUNCATED_FRACTION = 0.9
# Frames and images are kept at most this large (longer side): plenty for face detection, whose crops are
# extract.face_size (~112 px), and it bounds memory per item: 32 frames of a 4K clip would be 800 MB.
MAX_FRAME_SIDE = 1920
# Images and videos whose header states more pixels (per frame) are refused before decoding: a 436 KB PNG
# of 12000 x 12000 decodes to 432 MB (a decompression bomb), a 738 KB H.264 clip of 16000 x 16000 frames to
# 1.5 GB per worker. 40 MP admits 8K stills and video and any camera photo below 40 MP.
MAX_IMAGE_PIXELS = 40_000_000
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_IMAGE_PIXELS))   # OpenCV's own guard, for any format


def decoder_threads() -> int:
    """FFmpeg decoder threads: OMP_NUM_THREADS when set (one per worker process in a pool, so workers
    do not contend for each other's cores), else 0 = FFmpeg's own choice."""
    return int(os.environ.get("OMP_NUM_THREADS") or 0)


class MediaError(MerError):
    """A clip that cannot be used. `step` names what failed ('open', 'decode', 'audio'); the message
    names the file, gives FFmpeg's reason and says what to do."""

    def __init__(self, step: str, message: str):
        super().__init__(f"{step}: {message}")
        self.step = step
        self.message = message


@dataclass
class DecodedClip:
    frames: np.ndarray | None       # (T, H, W, 3) uint8 RGB; None without a decodable video stream
    frame_times: np.ndarray | None  # (T,) float64 seconds from the clip start
    audio: np.ndarray | None        # (N,) float32 mono in [-1, 1]; None without a decodable audio stream
    sample_rate: int
    duration: float                 # seconds of media actually present
    warnings: list[str] = field(default_factory=list)


class FrameSampler:
    """Keeps the first frame at or after each grid time; converts only kept frames to RGB."""

    def __init__(self, interval: float, max_frames: int, rate: float | None):
        self.interval = interval
        self.max_frames = max_frames
        self.period = 1.0 / rate if rate else interval  # fallback spacing for frames without pts
        self.target = 0.0
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.last_time: float | None = None
        self.steps: list[float] = []  # intervals between all decoded frames, for the VFR check

    @property
    def done(self) -> bool:
        return len(self.frames) >= self.max_frames

    def add(self, frame: av.VideoFrame, t0: float) -> None:
        t = self._time(frame, t0)
        if self.last_time is not None and t > self.last_time:
            self.steps.append(t - self.last_time)
        self.last_time = t
        if t + _TIME_EPS < self.target or self.done:
            return
        width, height = fit_size(frame.width, frame.height)
        if (width, height) == (frame.width, frame.height):
            self.frames.append(frame.to_ndarray(format="rgb24"))
        else:   # scaled while converting: no full-size RGB copy
            self.frames.append(frame.to_ndarray(format="rgb24", width=width, height=height, interpolation="AREA"))
        self.times.append(t)
        # Next target: the first grid point after this frame, so a long gap does not pile up targets.
        self.target += self.interval * (np.floor((t + _TIME_EPS - self.target) / self.interval) + 1)

    def _time(self, frame: av.VideoFrame, t0: float) -> float:
        if frame.time is not None:
            return frame.time - t0
        return 0.0 if self.last_time is None else self.last_time + self.period

    @property
    def variable_rate(self) -> bool:
        if len(self.steps) < 2:
            return False
        steps = np.asarray(self.steps)
        deviation = np.abs(steps / np.median(steps) - 1.0)
        return bool(np.mean(deviation > _VFR_DEVIATION) >= _VFR_SHARE)


class _AudioSink:
    """Resamples every decoded audio frame to mono at `sample_rate`, returned as float32 in [-1, 1].

    The resampler outputs s16, not flt: FFmpeg normalises the downmix matrix only for integer output,
    so a flt downmix of stereo gains +3 dB (5.1: x3.4) and loud centred speech would clip.
    """

    def __init__(self, sample_rate: int):
        self.sample_rate = sample_rate
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        self.chunks: list[np.ndarray] = []
        self.start: float | None = None

    def add(self, frame: av.AudioFrame | None, t0: float = 0.0) -> None:
        if self.start is None and frame is not None and frame.time is not None:
            self.start = frame.time - t0
        for out in self.resampler.resample(frame):
            self.chunks.append(out.to_ndarray().reshape(-1))

    def finish(self) -> np.ndarray | None:
        self.add(None)  # flush the resampler's buffered tail
        if not self.chunks:
            return None
        # Audio starting after the clip start gets leading silence, so sample i is at i / sample_rate
        # on the same clock as frame_times.
        lead = np.zeros(round(max(self.start or 0.0, 0.0) * self.sample_rate), np.int16)
        return np.concatenate([lead, *self.chunks]).astype(np.float32) / 32768.0


@dataclass
class _DemuxResult:
    skipped: int = 0           # corrupt or undecodable packets
    last_error: str = ""
    end: float = 0.0           # end time of the last intact packet, seconds from the clip start
    stopped: str = ""          # demuxer error that ended the pass early


def open_container(path: Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise MediaError("open", f"{path}: no such file")
    if path.stat().st_size == 0:
        raise MediaError("open", f"{path}: empty file (zero bytes); re-copy or re-export it")
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, UnicodeDecodeError) as e:
        raise MediaError("open", f"{path}: not a readable media file ({e}); check it is audio/video "
                                 "and not truncated (an MP4 cut short loses its index)") from e


def start_time(container: av.container.InputContainer) -> float:
    return container.start_time / av.time_base if container.start_time is not None else 0.0


def stated_duration(container: av.container.InputContainer) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _interval(fps: float, max_frames: int, duration: float | None) -> float:
    if duration is not None and duration * fps > max_frames:
        return duration / max_frames
    return 1.0 / fps


def _demux(container, video, audio, sampler: FrameSampler | None, sink: _AudioSink | None) -> _DemuxResult:
    """One pass over the wanted streams; skips corrupt packets, stops decoding video once enough frames are kept."""
    result = _DemuxResult()
    t0 = start_time(container)
    streams = [s for s in (video, audio) if s is not None]
    video_index = video.index if video is not None else -1
    try:
        for packet in container.demux(streams):
            if packet.is_corrupt:
                result.skipped += 1
                continue
            if packet.pts is not None and packet.duration is not None:
                result.end = max(result.end, float((packet.pts + packet.duration) * packet.time_base) - t0)
            is_video = packet.stream.index == video_index
            if is_video and sampler.done:
                continue  # reading on (cheap) still measures the duration and feeds the audio
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                result.skipped += 1
                result.last_error = str(e)
                continue
            for frame in frames:
                if is_video:
                    sampler.add(frame, t0)
                else:
                    sink.add(frame, t0)
    except av.FFmpegError as e:
        result.stopped = str(e)
    return result


def decode_clip(path: Path, fps: float, max_frames: int, sample_rate: int = SAMPLE_RATE) -> DecodedClip:
    """Decode `path` once: frames sampled at `fps` (at most max_frames, see module doc) and mono audio."""
    if fps <= 0 or max_frames < 1:
        raise ValueError(f"need fps > 0 and max_frames >= 1, got fps={fps}, max_frames={max_frames}")
    with open_container(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is None and audio is None:
            raise MediaError("open", f"{path}: no audio or video stream")
        stated = stated_duration(container)
        sampler = sink = None
        if video is not None:   # frame size from the stream header: refused before any frame is decoded
            check_pixels(path, video.codec_context.width, video.codec_context.height, "a video frame")
            video.thread_type = "AUTO"
            video.thread_count = decoder_threads()
            rate = video.average_rate or video.guessed_rate
            sampler = FrameSampler(_interval(fps, max_frames, stated), max_frames, float(rate) if rate else None)
        if audio is not None:
            sink = _AudioSink(sample_rate)
        result = _demux(container, video, audio, sampler, sink)
    return _assemble(path, sampler, sink, result, stated, sample_rate)


def _assemble(path, sampler, sink, result: _DemuxResult, stated: float | None, sample_rate: int) -> DecodedClip:
    frames = times = None
    if sampler is not None and sampler.frames:
        frames = np.stack(sampler.frames)
        times = np.asarray(sampler.times, dtype=np.float64)
    audio = sink.finish() if sink is not None else None
    if frames is None and audio is None:
        reason = result.stopped or result.last_error or "no decodable frames or audio samples"
        raise MediaError("decode", f"{path}: nothing decodable ({reason}); the file is empty or corrupt")
    duration = result.end or stated or 0.0
    return DecodedClip(frames, times, audio, sample_rate, duration,
                       _warnings(sampler, sink, frames, audio, result, stated))


def _warnings(sampler, sink, frames, audio, result: _DemuxResult, stated: float | None) -> list[str]:
    warnings = []
    if result.skipped:
        warnings.append(f"corrupt packets skipped: {result.skipped}")
    if result.stopped:
        warnings.append(f"demuxing stopped early: {result.stopped}")
    if stated and result.end < _TRUNCATED_FRACTION * stated:
        warnings.append(f"truncated: media ends at {result.end:.2f} s of {stated:.2f} s")
    if sampler is not None and frames is None:
        warnings.append("video stream has no decodable frame")
    if sink is not None and audio is None:
        warnings.append("audio stream has no decodable sample")
    if sampler is not None and sampler.variable_rate:
        warnings.append("variable frame rate")
    return warnings


def read_audio_file(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any audio (or the audio track of a video) -> (N,) float32 mono in [-1, 1] at sample_rate."""
    pcm = _pcm_wav(path, sample_rate)
    if pcm is not None:
        return pcm
    with open_container(path) as container:
        if not container.streams.audio:
            raise MediaError("audio", f"{path}: no audio stream")
        sink = _AudioSink(sample_rate)
        result = _demux(container, None, container.streams.audio[0], None, sink)
    audio = sink.finish()
    if audio is None:
        reason = result.stopped or result.last_error or "no decodable samples"
        raise MediaError("audio", f"{path}: no decodable audio ({reason})")
    return audio


def _pcm_wav(path: Path, sample_rate: int) -> np.ndarray | None:
    """A 16-bit mono wav already at sample_rate (what MER releases ship as audio/<name>.wav) read directly:
    the same samples FFmpeg gives, without its probe and resampler (most of the cost of a short clip).
    None for any other file, which then goes through FFmpeg."""
    if Path(path).suffix.lower() != ".wav":
        return None
    try:
        with wave.open(str(path), "rb") as wav:
            if (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) != (1, 2, sample_rate):
                return None
            raw = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError, OSError):
        return None
    if not raw:
        return None
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0


def read_image(path: Path) -> np.ndarray:
    """A still image -> (1, H, W, 3) uint8 RGB (EXIF orientation applied, alpha dropped), at most
    MAX_FRAME_SIDE on its longer side; refused above MAX_IMAGE_PIXELS before it is decoded."""
    check_image_size(path)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise MediaError("open", f"{path}: not a readable image (missing, empty, unsupported format, or more "
                                 f"than {MAX_IMAGE_PIXELS / 1e6:.0f} MP)")
    height, width = bgr.shape[:2]
    if (width, height) != fit_size(width, height):
        bgr = cv2.resize(bgr, fit_size(width, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)[None]


def fit_size(width: int, height: int, max_side: int | None = None) -> tuple[int, int]:
    """(width, height) scaled down to at most max_side (default MAX_FRAME_SIDE) on the longer side (even,
    for video filters)."""
    max_side = max_side or MAX_FRAME_SIDE
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def check_image_size(path: Path) -> None:
    """Refuse an image whose header states more than MAX_IMAGE_PIXELS, reading the header only."""
    from PIL import Image

    try:
        with warnings.catch_warnings():   # PIL warns above 89 MP; the decision is made here
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except (OSError, Image.DecompressionBombError, ValueError):
        return   # not for PIL to judge: OpenCV opens it, under OPENCV_IO_MAX_IMAGE_PIXELS
    check_pixels(path, width, height, "an image")


def check_pixels(path: Path, width: int, height: int, what: str) -> None:
    """Refuse `what` (an image, a video frame) of more than MAX_IMAGE_PIXELS, from its stated size."""
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError("open", f"{path}: {width} x {height} pixels ({width * height / 1e6:.0f} MP) is more "
                                 f"than the {MAX_IMAGE_PIXELS / 1e6:.0f} MP {what} may have here; downscale it")


def reencode(frames: np.ndarray, fps: float, codec: str = "mpeg4", bit_rate: int = 400_000) -> np.ndarray:
    """Frames after a lossy encode/decode round trip in memory (MER 2023's test2 went through DIVX/MPEG-4)."""
    buffer = io.BytesIO()
    height, width = frames.shape[1:3]
    with av.open(buffer, mode="w", format="avi") as out:
        stream = out.add_stream(codec, rate=Fraction(fps).limit_denominator(1000))
        stream.width, stream.height, stream.pix_fmt, stream.bit_rate = width - width % 2, height - height % 2, "yuv420p", bit_rate
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: stream.height, : stream.width]), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer, mode="r") as inp:
        decoded = [f.to_ndarray(format="rgb24") for f in inp.decode(video=0)]
    result = frames.copy()
    result[:, : stream.height, : stream.width] = np.stack(decoded)[: len(frames)]
    return result


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder, in name order (frame_0001.png, frame_0002.png, ...)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def file_hash(path: Path) -> str:
    """sha256 of a file, or of a frame folder's file names and contents: the manifest's media_hash."""
    if path.is_dir():
        return hashlib.sha256("".join(f"{f.name}:{file_hash(f)}\n" for f in frame_files(path)).encode()).hexdigest()
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def clip_hash(files: list[Path]) -> str:
    """The manifest's media_hash of a clip's files (its media file, then the corpus's own per-modality
    files such as a wav and an aligned-faces array): one file's own hash, or a hash of all their hashes,
    so a change to any of them changes it."""
    if len(files) == 1:
        return file_hash(files[0])
    return hashlib.sha256("".join(f"{f.name}:{file_hash(f)}\n" for f in files).encode()).hexdigest()


def check_unchanged(files: list[Path], media_hash: str) -> None:
    """Refuse media whose content differs from what prepare recorded: what extract stores is keyed by
    that hash, so decoding the new content would cache it under the old content's name."""
    names = ", ".join(map(str, files))
    try:
        found = clip_hash(files)
    except OSError as err:
        raise MediaError("open", f"{names}: {err.strerror or err}; restore it or re-run prepare") from err
    if found != media_hash:
        raise MediaError("changed", f"{names} changed since prepare (sha256 {found[:12]}..., the manifest "
                                    f"records {media_hash[:12]}...): re-run prepare (dvc repro) so the manifest "
                                    f"holds its new content, or restore the file")


def face_array_shape(path: Path) -> tuple[int, ...]:
    """The shape of an aligned-faces array (`openface_face/<name>/<name>.npy`: (N, H, W, 3) uint8, BGR),
    read from its header only; an empty array (no face aligned) may have any shape and dtype."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise MediaError("open", f"{path}: not a readable .npy array ({err})") from err
    if array.size and (array.ndim != 4 or array.shape[3] != 3 or array.dtype != np.uint8):
        raise MediaError("open", f"{path}: faces array of shape {array.shape} and dtype {array.dtype}; "
                                 f"expected (frames, height, width, 3) uint8")
    return array.shape if array.size else (0,)


def read_face_array(path: Path, max_frames: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A shipped aligned-faces array -> ((T, size, size, 3) uint8 RGB, (T,) indices of the kept frames):
    at most max_frames, spread evenly over the array as read_frames does. An empty array gives T = 0."""
    face_array_shape(path)
    array = np.load(path, mmap_mode="r", allow_pickle=False)
    if not array.size:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros(0, int)
    picks = np.unique(np.linspace(0, len(array) - 1, min(max_frames, len(array))).round().astype(int))
    faces = np.empty((len(picks), size, size, 3), np.uint8)
    for out, i in zip(faces, picks):
        bgr = np.asarray(array[i])
        if bgr.shape[:2] != (size, size):
            shrink = bgr.shape[0] > size
            bgr = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        out[:] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return faces, picks


def read_frames(folder: Path, fps: float, max_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """A folder of frames -> ((T, H, W, 3) uint8 RGB, (T,) times): at most max_frames, spread evenly over
    the folder. A folder carries no timestamps, so frame i is taken to be at i / fps."""
    files = frame_files(folder)
    if not files:
        raise MediaError("open", f"{folder}: no image frames ({', '.join(sorted(IMAGE_SUFFIXES))})")
    picks = np.unique(np.linspace(0, len(files) - 1, min(max_frames, len(files))).round().astype(int))
    frames = [read_image(files[i])[0] for i in picks]
    if len({f.shape for f in frames}) > 1:
        raise MediaError("decode", f"{folder}: frames differ in size; resize them to one size")
    return np.stack(frames), picks / fps
