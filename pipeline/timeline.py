"""`mer predict --segments`: a recording in, an emotion timeline out.

The recording is cut into segments (pipeline.recordings), each segment's media goes through the
checkpoint's own extraction steps (its face detector and alignment, of the faces in frame the one that
speaks (pipeline.media.speakers), its ASR engine when the segment has no subtitle text) into a media
store, part by part as the stream goes, and the stored segments are encoded and scored like any clip
(pipeline.predict.score_media). The timeline has a row per segment: start, end, label, the probability
of every label, valence, the modalities used, the face track (numbered through the recording by where
the face is) and why that face was taken, the face-found rate, the transcript and its source, and what
went wrong in that stretch, if anything. It is written as a table (.csv, .json), as an emotion subtitle
track that plays over the video in any player (.srt, .vtt), and as one self-contained HTML page with
the timeline drawn and a thumbnail per segment (.html).
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.extract import face_detector, item_fingerprint
from pipeline.media.decode import SAMPLE_RATE, file_hash
from pipeline.media.faces import iou
from pipeline.media.speakers import MIN_IOU, choose_speaker, link, track_crops
from pipeline.predict import Settings, prob_columns, score_media, settings
from pipeline.progress import progress
from pipeline.recordings import Segment, SegmentConfig, SegmentMedia, find_segments, segment_media
from pipeline.registry import loaded
from pipeline.store.lock import store_lock
from pipeline.store.media import MediaItem, MediaStore, digest
from pipeline.training import checkpoint

SEGMENTS_PER_PART = 32   # segments held in memory before they are written as one store part


def predict_recording(path: Path, checkpoint_dir: Path, spec: str = "vad", cfg: SegmentConfig | None = None,
                      params: Path | None = None, work: Path | None = None, asr: dict | None = None) -> pd.DataFrame:
    """The timeline of one recording (see the module doc); `spec` as pipeline.recordings.find_segments."""
    if work is None:
        with tempfile.TemporaryDirectory(prefix="mer-timeline-") as tmp:
            return predict_recording(path, checkpoint_dir, spec, cfg, params, Path(tmp), asr)
    ckpt = checkpoint.load(checkpoint_dir)
    found = settings(ckpt, params, asr)
    segments = find_segments(path, spec, cfg or SegmentConfig())
    media = Path(work) / "media.zarr"
    with store_lock(media):
        segments, ids, faces, notes, thumbnails = store_segments(path, segments, found, media)
        manifest = pd.DataFrame({"sample_id": ids, "split": "test1", "label": None, "valence": np.nan})
        frame = score_media(ckpt, found, manifest, media, Path(work))
    timeline = timeline_frame(segments, ids, notes, frame, ckpt.labels)
    timeline.insert(timeline.columns.get_loc("face_found_rate"), "face_track", pd.array([f[0] for f in faces], "Int64"))
    timeline.insert(timeline.columns.get_loc("face_found_rate"), "face_choice", [f[1] for f in faces])
    return timeline.assign(thumbnail=thumbnails)


def store_segments(path: Path, segments: list[Segment], found: Settings,
                   media: Path) -> tuple[list[Segment], list[str], list[tuple], list[str], list[str]]:
    """Every segment's item written into `media` (parts of SEGMENTS_PER_PART); returns the segments in the
    order they were read, and per segment its sample id, (face track number, why that face), the
    decoding notes and a thumbnail (PNG data URI, "")."""
    store = MediaStore(media).create()
    source = file_hash(path)
    settings_hash = item_fingerprint(found.extract, code="recording segment")
    detector = face_detector(found.extract)
    read, ids, faces, notes, thumbnails, batch = [], [], [], [], [], []
    numbered = TrackIds()
    bar = progress(math.ceil(segments[-1].end), f"predict {path.name}", "s of the recording")
    for seg in segment_media(path, segments, found.extract.fps, found.extract.max_frames):
        item, reason = segment_item(seg, f"{path.stem}@{seg.segment.name}", digest(source, seg.segment.name),
                                    settings_hash, found, detector)
        batch.append(item)
        read.append(seg.segment)
        ids.append(item.sample_id)
        faces.append((numbered(item.boxes) if item.boxes is not None else None, reason))
        notes.append("; ".join(seg.warnings))
        thumbnails.append(thumbnail(item, seg))
        bar.update(math.ceil(seg.segment.end) - bar.n)   # progress over the recording's time
        if len(batch) == SEGMENTS_PER_PART:
            store.write(batch, found.extract.face_quality)
            batch = []
    if batch:
        store.write(batch, found.extract.face_quality)
    bar.close()
    store = MediaStore(media)
    store.write_view(store.index().drop_duplicates("sample_id", keep="last"))
    return read, ids, faces, notes, thumbnails


def thumbnail(item: MediaItem, seg: SegmentMedia, height: int = 56) -> str:
    """The segment's first face crop, else its middle frame, small, as a PNG data URI ("" when it has none)."""
    import cv2

    if item.faces is not None and item.found.any():
        image = item.faces[int(np.argmax(item.found))]
    elif seg.frames is not None:
        image = seg.frames[len(seg.frames) // 2]
    else:
        return ""
    width = max(1, round(image.shape[1] * height / image.shape[0]))
    small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ok, png = cv2.imencode(".png", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(png.tobytes()).decode("ascii") if ok else ""


def segment_item(seg: SegmentMedia, sample_id: str, source_hash: str, settings_hash: str, found: Settings,
                 detector) -> tuple[MediaItem, str]:
    """The segment as a media item (the speaking face's crops, its audio, its transcript), and why that
    face was taken."""
    item = MediaItem(sample_id, source_hash, settings_hash, audio=seg.audio, meta={"warnings": seg.warnings})
    reason = "no video"
    if seg.frames is not None:
        tracks = link([detector.detect(frame) for frame in seg.frames])
        choice = choose_speaker(tracks, seg.frames, seg.times, seg.audio, seg.segment.window[0], SAMPLE_RATE)
        speaker = tracks[choice.track] if choice.track is not None else None
        crops = track_crops(seg.frames, speaker, found.extract.face_size)
        item.faces, item.found, item.boxes = crops.crops, crops.found, crops.boxes
        item.frame_time = seg.times.astype(np.float32)
        reason = choice.reason
    if seg.segment.text:
        item.transcript, item.transcript_source = seg.segment.text, "given"
    elif seg.audio is not None and len(seg.audio):
        asr = loaded(found.extract.asr)
        item.transcript, item.transcript_source = asr(seg.audio), asr.source
    return item, reason


class TrackIds:
    """Numbers the chosen faces across the recording: a face whose first box overlaps where a numbered
    face was last seen (in an earlier segment) keeps its number."""

    def __init__(self):
        self.last: dict[int, tuple] = {}

    def __call__(self, boxes: np.ndarray) -> int | None:
        seen = boxes[np.isfinite(boxes[:, 0])]
        if not len(seen):
            return None
        overlaps = {n: iou(tuple(seen[0]), box) for n, box in self.last.items()}
        number = max(overlaps, key=overlaps.get) if overlaps and max(overlaps.values()) >= MIN_IOU else len(self.last) + 1
        self.last[number] = tuple(seen[-1])
        return number


def timeline_frame(segments: list[Segment], ids: list[str], notes: list[str], scored: pd.DataFrame,
                   labels) -> pd.DataFrame:
    spans = pd.DataFrame({"sample_id": ids, "start": [s.start for s in segments], "end": [s.end for s in segments],
                          "notes": notes})
    frame = spans.merge(scored, on="sample_id", how="left").rename(columns={"emotion": "label"})
    frame["warnings"] = [_join(n, w) for n, w in zip(frame["notes"], frame["warnings"].fillna(""))]
    frame["error"] = ["" if isinstance(m, str) and m else "no usable modality: " + (w or "nothing found")
                      for m, w in zip(frame["modalities"], frame["warnings"])]
    frame.loc[frame["error"] != "", ["label", *prob_columns(labels), "valence"]] = None
    columns = ["start", "end", "label", *prob_columns(labels), "valence", "modalities", "face_found_rate",
               "transcript", "transcript_source", "warnings", "error"]
    return frame[columns]


def _join(*texts: str) -> str:
    return "; ".join(t for t in texts if isinstance(t, str) and t)


# --- outputs -----------------------------------------------------------------------------------------------

def write_timeline(frame: pd.DataFrame, out: Path, recording: str = "") -> str:
    """By the file's suffix: .csv, .json (a list of segments), .srt or .vtt (an emotion subtitle track),
    .html (the page)."""
    suffix = out.suffix.lower()
    if suffix == ".html":
        out.write_text(page(frame, recording), encoding="utf-8")
        return f"wrote {len(frame)} segments to {out}"
    frame = frame.drop(columns=["thumbnail"], errors="ignore")
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    elif suffix == ".json":
        out.write_text(json.dumps(records(frame), indent=2, ensure_ascii=False))
    elif suffix in (".srt", ".vtt"):
        out.write_text(subtitles(frame, vtt=suffix == ".vtt"), encoding="utf-8")
    else:
        from pipeline.errors import InputError

        raise InputError(f"--timeline {out}: write .csv, .json, .srt, .vtt or .html")
    return f"wrote {len(frame)} segments to {out}"


def records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.drop(columns=["thumbnail"], errors="ignore").to_dict("records"):
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        probs = {name.removeprefix("prob_"): row.pop(name) for name in [c for c in row if c.startswith("prob_")]}
        out.append(row | {"probabilities": None if row["error"] else probs})
    return out


def subtitles(frame: pd.DataFrame, vtt: bool = False) -> str:
    """One cue per segment: the label with its probability and the valence, or why there is none."""
    probs = [c for c in frame.columns if c.startswith("prob_")]
    cues = ["WEBVTT\n"] if vtt else []
    for i, row in enumerate(frame.itertuples(index=False), start=1):
        if row.error:
            text = f"(no prediction: {row.error})"
        else:
            p = max(getattr(row, c) for c in probs)
            text = f"{row.label} {p:.0%}" + ("" if pd.isna(row.valence) else f", valence {row.valence:+.2f}")
        times = f"{_stamp(row.start, vtt)} --> {_stamp(row.end, vtt)}"
        cues.append(f"{times}\n{text}\n" if vtt else f"{i}\n{times}\n{text}\n")
    return "\n".join(cues)


def _stamp(seconds: float, vtt: bool) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{'.' if vtt else ','}{ms:03d}"


def chart(frame: pd.DataFrame):
    """Stacked label probabilities over time (a step per segment, gaps where there is none) and the valence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = [c for c in frame.columns if c.startswith("prob_")]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 4.5), sharex=True, height_ratios=[3, 1.4])
    starts, ends = frame["start"].to_numpy(float), frame["end"].to_numpy(float)
    x = np.ravel(np.column_stack([starts, starts, ends, ends]))   # a block per segment, nothing between them
    p = np.nan_to_num(frame[probs].to_numpy(float))
    y = np.ravel(np.stack([np.zeros_like(p), p, p, np.zeros_like(p)], axis=1).transpose(2, 0, 1).reshape(len(probs), -1))
    top.stackplot(x, y.reshape(len(probs), -1), labels=[c.removeprefix("prob_") for c in probs], alpha=0.85)
    top.set(ylim=(0, 1), ylabel="probability", title="emotion over time")
    top.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    valence = frame["valence"].to_numpy(float)
    bottom.plot(np.ravel(np.column_stack([starts, ends, ends])),
                np.ravel(np.column_stack([valence, valence, np.full_like(valence, np.nan)])), color="black",
                label="valence")
    bottom.axhline(0.0, color="grey", linewidth=0.5)
    bottom.set(ylabel="valence", xlabel="time (s)")
    return fig


def _text(value) -> str:
    return "" if value is None or pd.isna(value) else html.escape(str(value))


def page(frame: pd.DataFrame, recording: str = "") -> str:
    """One self-contained page: the chart (PNG) and a row per segment with its thumbnail."""
    from pipeline.reporting import figures

    uri, plotted = figures.render(chart(frame))
    rows = []
    for row in frame.to_dict("records"):
        picture = f'<img src="{row["thumbnail"]}" alt="">' if row.get("thumbnail") else ""
        what = html.escape(row["error"]) if row["error"] else f'{html.escape(str(row["label"]))} ' + \
            f'{max(v for k, v in row.items() if k.startswith("prob_")):.0%}'
        valence = "" if pd.isna(row["valence"]) else f"{row['valence']:+.2f}"
        rows.append(f"<tr><td>{_stamp(row['start'], True)}</td><td>{_stamp(row['end'], True)}</td><td>{picture}</td>"
                    f"<td>{what}</td><td>{valence}</td><td>{html.escape(str(row['modalities'] or ''))}</td>"
                    f"<td>{html.escape(str(row['transcript'] or ''))}</td><td>{html.escape(row['warnings'])}</td></tr>")
    title = html.escape(f"Emotion timeline: {recording}" if recording else "Emotion timeline")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:middle}}img{{display:block}}</style>
</head><body><h1>{title}</h1>
<figure data-plotted="{html.escape(json.dumps(plotted))}"><img src="{uri}" alt="emotion over time"></figure>
<table><thead><tr><th>start</th><th>end</th><th>face</th><th>emotion</th><th>valence</th><th>modalities</th>
<th>face track</th><th>transcript</th><th>notes</th></tr></thead><tbody>{"".join(rows)}</tbody></table></body></html>
"""
