"""Long recordings: where the utterances are, and each one's media, read in one streaming pass.

A recording (an interview, a vlog, a meeting) is cut into utterance-sized segments before the model sees
it: by speech activity (Silero VAD, the ONNX model faster-whisper ships), by fixed windows, or by the
user's own times (a CSV of start,end[,text], or an .srt/.vtt subtitle file, whose text becomes the
segment's transcript). Speech spans are merged across short pauses and cut to `min_seconds` ..
`max_seconds`, so every segment is about as long as the clips the model was trained on.

`segment_media` then decodes the recording once, streaming, and yields each segment's audio and its
frames sampled as `extract` samples a clip (fps, at most max_frames), so memory holds one segment at a
time however long the recording is. A stretch that decodes badly (corrupt packets, a resolution change)
is recorded on the segments it touches; the rest of the timeline is unaffected.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import av
import numpy as np

from pipeline.errors import InputError
from pipeline.media.decode import SAMPLE_RATE, FrameSampler, open_container, start_time, stated_duration

VAD_WINDOW_S = 30.0   # audio the VAD sees per call: bounded memory, and long enough that a cut rarely splits a word
LOOKAHEAD_S = 2.0     # segments open this far ahead of the stream, so no sample before their start is missed


@dataclass(frozen=True)
class SegmentConfig:
    """How speech spans become segments (params: predict.segments)."""
    min_seconds: float = 1.0      # a shorter span joins its neighbour (or is dropped when it has none)
    max_seconds: float = 8.0      # a longer span is cut into equal parts no longer than this
    merge_gap: float = 0.3        # speech spans closer than this are one utterance
    context: float = 1.0          # seconds of the pauses around an utterance the model reads with it (at most
                                  # half of each pause): training clips hold silence around their speech too
    threshold: float = 0.5        # Silero's speech probability threshold


@dataclass(frozen=True)
class Segment:
    start: float                  # seconds from the recording's start: where the utterance starts
    end: float
    text: str | None = None       # from a subtitle or segment file: the segment's transcript
    lead: float = 0.0             # seconds of the pause before it that the model hears and sees too
    tail: float = 0.0             # and after it

    @property
    def name(self) -> str:
        return f"{self.start:010.3f}-{self.end:010.3f}"

    @property
    def window(self) -> tuple[float, float]:
        """The stretch the model reads: the utterance with its context."""
        return max(0.0, self.start - self.lead), self.end + self.tail


@dataclass
class SegmentMedia:
    segment: Segment
    frames: np.ndarray | None     # (T, H, W, 3) uint8 RGB, sampled at fps
    times: np.ndarray | None      # (T,) seconds from the recording's start
    audio: np.ndarray | None      # float32 mono at 16 kHz
    warnings: list[str] = field(default_factory=list)


# --- where the segments are ----------------------------------------------------------------------------

def find_segments(path: Path, spec: str, cfg: SegmentConfig) -> list[Segment]:
    """`spec`: vad | fixed:SECONDS | a .csv (start,end[,text]) | an .srt or .vtt subtitle file."""
    if spec == "vad":
        found = shape(speech_spans(path, cfg.threshold), cfg)
        if not found:
            raise InputError(f"{path}: no speech found, so no segment to predict: use --segments fixed:SECONDS "
                             f"for a recording without speech")
        return found
    if spec.startswith("fixed:"):
        return fixed_windows(duration(path), _seconds(spec.removeprefix("fixed:"), spec))
    user = Path(spec)
    if not user.is_file():
        raise InputError(f"--segments {spec}: use vad, fixed:SECONDS, or an existing .csv, .srt or .vtt file")
    segments = read_subtitles(user) if user.suffix.lower() in (".srt", ".vtt") else read_segment_csv(user)
    if not segments:
        raise InputError(f"{user}: no segments in it")
    return sorted(segments, key=lambda s: s.start)


def _seconds(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise InputError(f"--segments {spec}: the window must be a positive number of seconds, e.g. fixed:4")
    return value


def fixed_windows(total: float, seconds: float) -> list[Segment]:
    """Back-to-back windows; the last is shorter (a recording shorter than one window is one segment)."""
    starts = np.arange(0.0, max(total, 1e-9), seconds)
    return [Segment(round(float(a), 3), round(float(min(a + seconds, total)), 3)) for a in starts if total - a > 1e-6]


def read_segment_csv(path: Path) -> list[Segment]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if rows and not {"start", "end"} <= set(rows[0]):
        raise InputError(f"{path}: needs columns start,end (seconds) and optionally text; has {list(rows[0])}")
    segments = []
    for line, row in enumerate(rows, start=2):
        try:
            start, end = float(row["start"]), float(row["end"])
        except (TypeError, ValueError):
            raise InputError(f"{path}: line {line}: start and end must be numbers of seconds") from None
        if not 0 <= start < end:
            raise InputError(f"{path}: line {line}: need 0 <= start < end, got {start}, {end}")
        segments.append(Segment(start, end, (row.get("text") or "").strip() or None))
    return segments


_CUE = re.compile(r"(\d+:)?(\d{1,2}):(\d{2})[.,](\d{3})\s*-->\s*(\d+:)?(\d{1,2}):(\d{2})[.,](\d{3})")


def read_subtitles(path: Path) -> list[Segment]:
    """Cues of an .srt or .vtt file: their times, and their text (tags removed) as the transcript."""
    segments, cue, text = [], None, []
    for line in [*path.read_text(encoding="utf-8-sig").splitlines(), ""]:
        match = _CUE.search(line)
        if match:
            cue, text = match, []
        elif line.strip() and cue is not None:
            text.append(re.sub(r"<[^>]+>", "", line).strip())
        elif not line.strip() and cue is not None:
            g = cue.groups()
            start = _clock(g[0], g[1], g[2], g[3])
            end = _clock(g[4], g[5], g[6], g[7])
            if end > start:
                segments.append(Segment(start, end, " ".join(text) or None))
            cue = None
    return segments


def _clock(hours: str | None, minutes: str, seconds: str, millis: str) -> float:
    return int((hours or "0:")[:-1]) * 3600 + int(minutes) * 60 + int(seconds) + int(millis) / 1000


def is_long(path: Path, seconds: float) -> bool:
    """Whether a media file's container states a length over `seconds` (a recording rather than a clip);
    False for anything it cannot tell (stills, frame folders, unreadable files: predicted as clips are)."""
    try:
        with open_container(Path(path)) as container:
            return (stated_duration(container) or 0.0) > seconds
    except Exception:  # noqa: BLE001 - the clip path reports what is wrong with the file
        return False


def duration(path: Path) -> float:
    """The recording's length: stated by the container, else counted from its decoded audio."""
    with open_container(path) as container:
        stated = stated_duration(container)
    if stated:
        return stated
    return sum(len(chunk) for chunk in audio_chunks(path)) / SAMPLE_RATE


def audio_chunks(path: Path, seconds: float = VAD_WINDOW_S) -> Iterator[np.ndarray]:
    """The audio track, mono float32 at 16 kHz, in consecutive chunks of `seconds` (the last shorter);
    sample i of the concatenation is at i / 16000 s from the recording's start."""
    size = int(seconds * SAMPLE_RATE)
    with open_container(path) as container:
        if not container.streams.audio:
            raise InputError(f"{path}: no audio track, so no speech to find: use --segments fixed:SECONDS")
        t0 = start_time(container)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        buffer, held = [], 0
        for frame in _decoded(container, container.streams.audio[0]):
            if not buffer and held == 0 and frame is not None and frame.time is not None and frame.time - t0 > 0:
                lead = np.zeros(round((frame.time - t0) * SAMPLE_RATE), np.int16)  # audio starting late
                buffer, held = [lead], len(lead)
            for out in resampler.resample(frame):
                samples = out.to_ndarray().reshape(-1)
                buffer.append(samples)
                held += len(samples)
            while held >= size:
                joined = np.concatenate(buffer)
                yield joined[:size].astype(np.float32) / 32768.0
                buffer, held = [joined[size:]], len(joined) - size
        if held:
            yield np.concatenate(buffer).astype(np.float32) / 32768.0


def _decoded(container, stream) -> Iterator:
    """Decoded frames of one stream, corrupt packets skipped; None last (flushes a resampler)."""
    for packet in container.demux(stream):
        if packet.is_corrupt:
            continue
        try:
            yield from packet.decode()
        except av.FFmpegError:
            continue
    yield None


def speech_spans(path: Path, threshold: float = 0.5) -> list[tuple[float, float]]:
    """(start, end) seconds of speech found by Silero VAD, streamed over the audio in VAD_WINDOW_S chunks."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(threshold=threshold, min_silence_duration_ms=200, speech_pad_ms=100)
    spans, offset = [], 0.0
    for chunk in audio_chunks(path):
        for stamp in get_speech_timestamps(chunk, options):
            spans.append((offset + stamp["start"] / SAMPLE_RATE, offset + stamp["end"] / SAMPLE_RATE))
        offset += len(chunk) / SAMPLE_RATE
    return spans


def shape(spans: list[tuple[float, float]], cfg: SegmentConfig) -> list[Segment]:
    """Speech spans as utterance-sized segments: join across short pauses (and chunk cuts), join a span
    shorter than min_seconds to its neighbour, cut one longer than max_seconds into equal parts; each
    utterance's first and last segment read `context` seconds of the pauses around it (lead, tail)."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= cfg.merge_gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    joined: list[list[float]] = []
    for span in merged:
        if joined and (span[1] - span[0] < cfg.min_seconds or joined[-1][1] - joined[-1][0] < cfg.min_seconds) \
                and span[1] - joined[-1][0] <= cfg.max_seconds:
            joined[-1][1] = span[1]
        else:
            joined.append(span)
    kept = [span for span in joined if span[1] - span[0] >= cfg.min_seconds or len(joined) == 1]  # not a lone blip
    segments = []
    for i, (start, end) in enumerate(kept):
        before = start - kept[i - 1][1] if i else 2 * cfg.context
        after = kept[i + 1][0] - end if i + 1 < len(kept) else 2 * cfg.context
        lead, tail = round(min(cfg.context, before / 2), 3), round(min(cfg.context, after / 2), 3)
        parts = max(1, int(np.ceil((end - start) / cfg.max_seconds - 1e-9)))
        edges = np.linspace(start, end, parts + 1)
        cut = [Segment(round(float(a), 3), round(float(b), 3)) for a, b in zip(edges[:-1], edges[1:])]
        cut[0] = replace(cut[0], lead=lead)
        cut[-1] = replace(cut[-1], tail=tail)
        segments += cut
    return segments


# --- each segment's media, in one pass -----------------------------------------------------------------

class _Open:
    """A segment being filled: its frame sampler (on a grid from the segment's start) and its audio."""

    def __init__(self, segment: Segment, fps: float, max_frames: int, rate: float | None):
        self.segment = segment
        self.start, self.end = segment.window
        self.sampler = FrameSampler(max(1.0 / fps, (self.end - self.start) / max_frames), max_frames, rate)
        self.sampler.target = self.start
        self.audio: list[np.ndarray] = []
        self.warnings: set[str] = set()

    def media(self, has_video: bool) -> SegmentMedia:
        frames = times = None
        if self.sampler.frames:
            frames, resized = _same_size(self.sampler.frames)
            times = np.asarray(self.sampler.times)
            if resized:
                self.warnings.add("resolution change: frames resized to the segment's first")
            if self.sampler.variable_rate:
                self.warnings.add("variable frame rate")
        elif has_video:
            self.warnings.add("no decodable video frame in this stretch")
        audio = np.concatenate(self.audio).astype(np.float32) / 32768.0 if self.audio else None
        return SegmentMedia(self.segment, frames, times, audio, sorted(self.warnings))


def _same_size(frames: list[np.ndarray]) -> tuple[np.ndarray, bool]:
    import cv2

    height, width = frames[0].shape[:2]
    resized = [f if f.shape[:2] == (height, width) else cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
               for f in frames]
    return np.stack(resized), any(f.shape[:2] != (height, width) for f in frames)


def segment_media(path: Path, segments: list[Segment], fps: float, max_frames: int) -> Iterator[SegmentMedia]:
    """Each segment's sampled frames and audio, in time order, from one streaming pass over `path`."""
    todo = sorted(segments, key=lambda s: s.window[0])
    with open_container(path) as container:
        video = container.streams.video[0] if container.streams.video else None
        audio = container.streams.audio[0] if container.streams.audio else None
        if video is not None:
            video.thread_type = "AUTO"
        rate = float(video.average_rate or video.guessed_rate or 0) or None if video is not None else None
        t0 = start_time(container)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE) if audio is not None else None
        clock = {"video": 0.0 if video is not None else np.inf, "audio": 0.0 if audio is not None else np.inf}
        audio_at: int | None = None   # sample index of the next resampled sample
        live: list[_Open] = []
        streams = [s for s in (video, audio) if s is not None]
        for packet in container.demux(streams):
            now = _packet_time(packet, t0)
            live += [_Open(s, fps, max_frames, rate) for s in _starting(todo, now + LOOKAHEAD_S)]
            if packet.is_corrupt:
                _note(live, now, "corrupt packets skipped")
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError:
                _note(live, now, "undecodable packets skipped")
                continue
            for frame in frames:
                if packet.stream is video:
                    t = frame.time - t0 if frame.time is not None else clock["video"]
                    clock["video"] = t
                    live += [_Open(s, fps, max_frames, rate) for s in _starting(todo, t + LOOKAHEAD_S)]
                    for seg in live:
                        if seg.start - 1e-6 <= t < seg.end and not seg.sampler.done:
                            seg.sampler.add(frame, t0)
                else:
                    if audio_at is None:
                        audio_at = round(max(frame.time - t0, 0.0) * SAMPLE_RATE) if frame.time is not None else 0
                    audio_at = _route_audio(resampler.resample(frame), audio_at, live)
                    clock["audio"] = audio_at / SAMPLE_RATE
            done = min(clock.values())
            yield from (seg.media(video is not None) for seg in live if seg.end <= done)
            live = [seg for seg in live if seg.end > done]
        if resampler is not None and audio_at is not None:
            _route_audio(resampler.resample(None), audio_at, live)
        live += [_Open(s, fps, max_frames, rate) for s in todo]   # segments past the end of the media
        todo.clear()
        for seg in live:
            yield seg.media(video is not None)


def _packet_time(packet, t0: float) -> float:
    return float(packet.pts * packet.time_base) - t0 if packet.pts is not None and packet.time_base else 0.0


def _starting(todo: list[Segment], t: float) -> list[Segment]:
    """Pop the segments that start at or before t."""
    started = []
    while todo and todo[0].window[0] <= t:
        started.append(todo.pop(0))
    return started


def _note(live: list[_Open], t: float, warning: str) -> None:
    for seg in live:
        if seg.start <= t < seg.end:
            seg.warnings.add(warning)


def _route_audio(chunks, at: int, live: list[_Open]) -> int:
    """Hand each open segment the resampled samples inside it; returns the next sample index."""
    for chunk in chunks:
        samples = chunk.to_ndarray().reshape(-1)
        for seg in live:
            a = max(round(seg.start * SAMPLE_RATE) - at, 0)
            b = min(round(seg.end * SAMPLE_RATE) - at, len(samples))
            if b > a:
                seg.audio.append(samples[a:b])
        at += len(samples)
    return at
