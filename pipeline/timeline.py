"""`mer predict --segments`: a recording in, an emotion timeline out.

The recording is cut into segments (pipeline.recordings), each segment's media goes through the
checkpoint's own extraction steps (its face detector and alignment, its ASR engine when the segment has
no subtitle text) into a media store, part by part as the stream goes, and the stored segments are
encoded and scored like any clip (pipeline.predict.score_media). The timeline has a row per segment:
start, end, label, the probability of every label, valence, the modalities used, the face-found rate,
the transcript and its source, and what went wrong in that stretch, if anything.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.extract import face_detector
from pipeline.media.asr import transcribe
from pipeline.media.decode import file_hash
from pipeline.media.faces import extract_faces
from pipeline.predict import Settings, prob_columns, score_media, settings
from pipeline.recordings import Segment, SegmentConfig, SegmentMedia, find_segments, segment_media
from pipeline.store.lock import store_lock
from pipeline.store.media import MediaItem, MediaStore, digest, params_hash
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
        ids, notes = store_segments(path, segments, found, media)
        manifest = pd.DataFrame({"sample_id": ids, "split": "test1", "label": None, "valence": np.nan})
        frame = score_media(ckpt, found, manifest, media, Path(work))
    return timeline_frame(segments, ids, notes, frame, ckpt.labels)


def store_segments(path: Path, segments: list[Segment], found: Settings, media: Path) -> tuple[list[str], list[str]]:
    """Every segment's item written into `media` (parts of SEGMENTS_PER_PART); returns their sample ids
    and the decoding notes per segment."""
    store = MediaStore(media).create()
    source = file_hash(path)
    settings_hash = params_hash({"extract": found.extract.__dict__, "what": "recording segment"})
    detector = face_detector(found.extract)
    ids, notes, batch = [], [], []
    for seg in segment_media(path, segments, found.extract.fps, found.extract.max_frames):
        batch.append(segment_item(seg, f"{path.stem}@{seg.segment.name}", digest(source, seg.segment.name),
                                  settings_hash, found, detector))
        ids.append(batch[-1].sample_id)
        notes.append("; ".join(seg.warnings))
        if len(batch) == SEGMENTS_PER_PART:
            store.write(batch)
            batch = []
    if batch:
        store.write(batch)
    store = MediaStore(media)
    store.write_view(store.index().drop_duplicates("sample_id", keep="last"))
    return ids, notes


def segment_item(seg: SegmentMedia, sample_id: str, source_hash: str, settings_hash: str, found: Settings,
                 detector) -> MediaItem:
    item = MediaItem(sample_id, source_hash, settings_hash, audio=seg.audio, meta={"warnings": seg.warnings})
    if seg.frames is not None:
        track = extract_faces(seg.frames, detector, found.extract.face_size)
        item.faces, item.found, item.boxes = track.crops, track.found, track.boxes
        item.frame_time = seg.times.astype(np.float32)
    if seg.segment.text:
        item.transcript, item.transcript_source = seg.segment.text, "given"
    elif seg.audio is not None and len(seg.audio):
        item.transcript, item.transcript_source = transcribe(seg.audio, found.extract.asr, found.extract.asr_model,
                                                             found.extract.asr_language)
    return item


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

def write_timeline(frame: pd.DataFrame, out: Path) -> str:
    """By the file's suffix: .csv, .json (a list of segments), .srt or .vtt (an emotion subtitle track)."""
    suffix = out.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    elif suffix == ".json":
        out.write_text(json.dumps(records(frame), indent=2, ensure_ascii=False))
    elif suffix in (".srt", ".vtt"):
        out.write_text(subtitles(frame, vtt=suffix == ".vtt"), encoding="utf-8")
    else:
        from pipeline.errors import InputError

        raise InputError(f"--timeline {out}: write .csv, .json, .srt or .vtt")
    return f"wrote {len(frame)} segments to {out}"


def records(frame: pd.DataFrame) -> list[dict]:
    out = []
    for row in frame.to_dict("records"):
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
