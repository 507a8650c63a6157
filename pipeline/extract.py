"""The `extract` stage's logic: manifest rows -> media store items (audio, aligned faces, transcript).

Work is split into parts of at most `clips_per_part` items; each task decodes its clips once, finds
faces, settles the transcript and writes one store part. Where the corpus ships a clip's aligned faces or
its audio (the manifest's face_path, audio_path), extract.face_source and extract.audio_source choose
them over detecting and decoding (a clip lacking one side is read from the other). A clip
whose source and extraction params are unchanged is already in the store and is skipped, which is what
makes re-runs and interrupted runs cheap. Failed clips go to a failures file with the step that failed
(open, decode, audio, corrupt, faces, asr) and the tool's message. A corrupted view
(pipeline.corrupt_views) is extracted the same way, its corruption applied between decoding and face
detection.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from pipeline.config import ExtractConfig, RunConfig
from pipeline.environment import versions
from pipeline.executors import run_tasks
from pipeline.fingerprint import fingerprint
from pipeline.media.decode import (
    IMAGE_SUFFIXES,
    SAMPLE_RATE,
    MediaError,
    check_unchanged,
    decode_clip,
    read_audio_file,
    read_face_array,
    read_frames,
    read_image,
)
from pipeline.media.faces import FaceTrack, extract_faces
from pipeline.registry import loaded
from pipeline.store.media import MediaItem, MediaStore, digest

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus"}
OUTPUT_KEYS = ExtractConfig.OUTPUT_KEYS
SHIPPED_FILES = {"faces": "face_path", "audio": "audio_path"}   # what a corpus may ship -> its manifest column


@contextmanager
def step(name: str):
    """Tag an error raised inside with the step it came from (a MediaError names its own), for the
    failures file."""
    try:
        yield
    except Exception as err:
        if not isinstance(err, MediaError):
            err.step = name
        raise


class ViewCorruption(Protocol):
    """What a corrupted view (pipeline.corrupt_views.Corruption) gives extraction; sent to the workers."""

    def params(self) -> dict:
        """Hashed with the extraction params into each item's params hash."""

    def libraries(self) -> dict[str, str]:
        """The versions of the libraries the corruption runs, hashed likewise."""

    def corrupter(self):
        """Built once per worker: `reuse_clean(row, item) -> bool` (fills the item from the clean view
        when the clip's frames come out unchanged) and `(sample_id, audio, frames, fps) -> (audio, frames,
        meta)`."""


@dataclass(frozen=True)
class PartTask:
    rows: list[dict]
    root: str
    store: str
    cfg: ExtractConfig
    corruption: ViewCorruption | None = None


VERSION = "1"   # bump when extraction's own code changes what an item holds: every item is made again
# decoding, resampling, frame sampling and alignment; the store's face crops (JPEG, PNG) and audio (FLAC)
DECODING = ("av", "numpy", "opencv-python-headless", "soundfile")

# Keys added after stores were written: left out at their default so existing items keep their hash.
LATER_KEYS = {"asr_language": "", "face_source": "detect", "audio_source": "video", "face_quality": 0}


def output_params(cfg: ExtractConfig) -> dict:
    """What shapes a store item: the output keys, and the audio rate (a constant, recorded all the same).
    The ASR options are hashed resolved, as asr_<option> (their keys before extract.asr_options, so stores
    keep their items); the window only where the engine reads it: it came later and shapes nothing else."""
    params = {k: v for k, v in asdict(cfg).items() if k in OUTPUT_KEYS and k != "asr_options"}
    params |= {f"asr_{k}": v for k, v in asdict(cfg.asr.config).items()
               if k != "window" or cfg.asr.cls.reads_window}
    return {k: v for k, v in params.items() if LATER_KEYS.get(k, object()) != v} | {"sample_rate": SAMPLE_RATE}


def item_fingerprint(cfg: ExtractConfig, corruption: ViewCorruption | None = None, code: str = "extract") -> str:
    """The fingerprint (pipeline.fingerprint) of a store item made by this config: the index's params_hash."""
    params, libraries = output_params(cfg), item_libraries(cfg)
    if corruption is not None:
        params, libraries = params | corruption.params(), libraries | corruption.libraries()
    return fingerprint((code, VERSION), params, libraries)


def item_libraries(cfg: ExtractConfig) -> dict[str, str]:
    """Decoding's libraries, and those of the face detector and the ASR engine this config runs."""
    return versions(*DECODING) | cfg.face_detector.library_versions() | cfg.asr.library_versions()


def wanted_rows(manifest: pd.DataFrame, cfg: ExtractConfig, corruption: ViewCorruption | None = None) -> pd.DataFrame:
    """The manifest with the (source_hash, params_hash) each item must have in the store."""
    frame = manifest.copy()
    # Absent values may be None or NaN, depending on how the manifest was built.
    frame["source_hash"] = [digest(m if isinstance(m, str) else "", t if isinstance(t, str) else "\0none")
                            for m, t in zip(frame["media_hash"], frame["transcript"])]
    frame["params_hash"] = item_fingerprint(cfg, corruption)
    return frame


def extract(manifest: pd.DataFrame, root: Path, store_path: Path, cfg: ExtractConfig,
            corruption: ViewCorruption | None = None, run: RunConfig | None = None) -> tuple[dict, list[dict]]:
    """Bring one view's store up to date with the manifest, its tasks sent to `run`'s executor (default:
    local); returns (summary, failures)."""
    run = run or RunConfig()
    executor = run.executor.make()
    store = MediaStore(store_path).create()
    store.parts.remove_uncommitted()
    wanted = wanted_rows(manifest, cfg, corruption)
    done = set(store.current(wanted)["sample_id"])
    todo = wanted[~wanted["sample_id"].isin(done)].sort_values("sample_id")
    workers = executor.processes(cfg.workers)
    tasks = [PartTask(chunk.to_dict("records"), str(root), str(store_path), cfg, corruption)
             for chunk in balanced_parts(todo, cfg.clips_per_part, workers)]
    failures = []
    desc = f"extract {store_path.name}" if corruption else "extract"
    for result in run_tasks(extract_part, tasks, executor, cfg.workers, desc):
        failures.extend(result["failures"])
    view = MediaStore(store_path).current(wanted)
    store.write_view(view)
    splits = wanted[["sample_id", "split"]] if "split" in wanted else wanted[["sample_id"]].assign(split="")
    faces = face_summary(view.merge(splits, on="sample_id"), cfg.face_detector)
    summary = {"items": len(wanted), "reused": len(done), "failed": len(failures),
               "processed": len(todo) - len(failures), "no_face": faces["all"]["no_face"],
               "no_face_items": faces["all"]["no_face_items"][:NO_FACE_LISTED]}
    return summary | {"faces": faces}, failures


NO_FACE_LISTED = 20  # items without a face named in the printed summary (all of them in faces.json)


def face_summary(view: pd.DataFrame, detector: str) -> dict:
    """Per split (and "all"): items with frames (an empty shipped faces array counts: its clip has no
    face), those where no frame has a face (with the reason), and the share of sampled frames with a face,
    from the store index (n_frames, n_faces per item)."""
    with_frames = view[view["n_frames"] >= 0]
    groups = {"all": with_frames, **{s: rows for s, rows in with_frames.groupby("split", sort=True) if s}}
    return {split: _face_stats(rows, detector) for split, rows in groups.items()}


def _face_stats(rows: pd.DataFrame, detector: str) -> dict:
    frames, found = int(rows["n_frames"].sum()), int(rows["n_faces"].sum())
    missing = rows[rows["n_faces"] == 0].sort_values("sample_id")
    return {"items": len(rows), "no_face": len(missing), "frames": frames,
            "face_found_rate": found / frames if frames else None,
            "no_face_items": [f"{r.sample_id}: " + (f"no face in its {r.n_frames} sampled frame(s) ({detector} detector)"
                                                    if r.n_frames else "no face (its shipped faces array is empty)")
                              for r in missing.itertuples()]}


def balanced_parts(frame: pd.DataFrame, max_size: int, workers: int) -> list[pd.DataFrame]:
    """Parts of at most max_size rows and near-equal size, as many as a multiple of the worker count,
    so that the workers finish together instead of one idling while another does a last full part."""
    n_parts = -(-len(frame) // max_size)
    n_parts = min(-(-n_parts // workers) * workers, len(frame))
    bounds = np.linspace(0, len(frame), n_parts + 1).round().astype(int)
    return [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def extract_part(task: PartTask) -> dict:
    """Runs in a worker: extract every row of the task and write them as one store part."""
    detector = face_detector(task.cfg)
    corrupt = task.corruption.corrupter() if task.corruption else None
    items, failures = [], []
    for row in task.rows:
        try:
            items.append(extract_item(row, Path(task.root), task.cfg, detector, corrupt))
        except Exception as err:  # noqa: BLE001 - any clip-level error is recorded, never lost
            failures.append(_failure(row["sample_id"], err))
    items, asr_failures = transcribe_items(items, task.cfg)
    failures += asr_failures
    if items:
        MediaStore(task.store).write(items, task.cfg.face_quality)
    return {"written": len(items), "failures": failures, "pid": os.getpid()}


def _failure(sample_id: str, err: Exception) -> dict:
    return {"sample_id": sample_id, "step": getattr(err, "step", "extract"), "error": type(err).__name__,
            "message": str(err)}


def transcribe_items(items: list[MediaItem], cfg: ExtractConfig) -> tuple[list[MediaItem], list[dict]]:
    """Transcribe the items with audio and no transcript in one call, which the engine may batch across
    clips; if that call fails, clip by clip, so that a clip that fails fails alone. Returns the items
    whose transcript is settled and the failures of the others."""
    todo = [item for item in items if item.transcript_source == "missing" and item.audio is not None
            and len(item.audio)]
    if not todo or cfg.asr == "none":
        return items, []
    try:
        texts = _transcribe(cfg, [item.audio for item in todo])
    except Exception:  # noqa: BLE001 - retried one by one below, where each error is recorded
        texts = [_transcribe_or_error(cfg, item.audio) for item in todo]
    failures = []
    for item, text in zip(todo, texts, strict=True):
        if isinstance(text, Exception):
            failures.append(_failure(item.sample_id, text))
        else:
            item.transcript, item.transcript_source = text, loaded(cfg.asr).source
    failed = {f["sample_id"] for f in failures}
    return [item for item in items if item.sample_id not in failed], failures


def _transcribe(cfg: ExtractConfig, audios: list[np.ndarray]) -> list[str | None]:
    with step("asr"):
        return loaded(cfg.asr).transcribe_batch(audios)


def _transcribe_or_error(cfg: ExtractConfig, audio: np.ndarray) -> str | None | Exception:
    try:
        return _transcribe(cfg, [audio])[0]
    except Exception as err:  # noqa: BLE001 - any clip-level error is recorded, never lost
        return err


def face_detector(cfg: ExtractConfig):
    """The configured detector, loaded once per worker process."""
    return loaded(cfg.face_detector)


def extract_item(row: dict, root: Path, cfg: ExtractConfig, detector, corrupt=None) -> MediaItem:
    item = MediaItem(row["sample_id"], row["source_hash"], row["params_hash"])
    with step("corrupt"):
        reused = corrupt is not None and corrupt.reuse_clean(row, item)
    files = media_files(row)
    if not reused and any(files.values()):  # text-only rows have none
        if isinstance(row.get("media_hash"), str):
            check_unchanged([root / f for f in files.values() if f], row["media_hash"])
        with step("decode"):
            frames, item.audio, times, warnings, shipped = _read_clip(files, root, cfg)
        item.meta["warnings"] = warnings
        if shipped:
            item.meta["shipped"] = shipped
        if corrupt is not None:
            with step("corrupt"):
                item.audio, frames, item.meta["corruption"] = corrupt(row["sample_id"], item.audio, frames, cfg.fps)
        if frames is not None:
            with step("faces"):
                track = (shipped_track(frames) if "faces" in shipped else
                         extract_faces(frames, detector, cfg.face_size))
            item.faces, item.found, item.boxes = track.crops, track.found, track.boxes
            item.frame_time = times
            item.meta["no_face"] = not bool(track.found.any())
    given = row.get("transcript")
    if isinstance(given, str):   # otherwise transcribe_items settles it
        item.transcript, item.transcript_source = given, "given"
    return item


def media_files(row: dict) -> dict[str, str | None]:
    """A manifest row's media files relative to the root: its media file and the corpus's own per-modality
    files, None where absent (None or NaN, depending on how the manifest was built)."""
    return {key: row.get(key) if isinstance(row.get(key), str) and row.get(key) else None
            for key in ("path", "audio_path", "face_path")}


def _read_clip(files: dict[str, str | None], root: Path, cfg: ExtractConfig):
    """(frames, audio, frame times, warnings, what came from the corpus's own files) of a clip: the media
    file decoded unless both are taken from the shipped files (extract.face_source / audio_source:
    shipped); what the media file lacks (or a clip without one) also comes from them. Shipped faces are
    frames already aligned, at unknown times (NaN)."""
    chosen = {"faces": cfg.face_source == "shipped", "audio": cfg.audio_source == "shipped"}
    shipped = [m for m, key in SHIPPED_FILES.items() if files[key] is not None and chosen[m]]
    frames = audio = times = None
    warnings = []
    if files["path"] is not None and len(shipped) < len(SHIPPED_FILES):
        frames, audio, times, warnings = _read_media(root / files["path"], cfg)
    lacking = {"faces": frames is None, "audio": audio is None}
    shipped = [m for m, key in SHIPPED_FILES.items() if files[key] is not None and (m in shipped or lacking[m])]
    if "faces" in shipped:
        frames, _ = read_face_array(root / files["face_path"], cfg.max_frames, cfg.face_size)
        times = np.full(len(frames), np.nan, np.float32)
    if "audio" in shipped:
        audio = read_audio_file(root / files["audio_path"])
    return frames, audio, times, warnings, shipped


def shipped_track(faces: np.ndarray) -> FaceTrack:
    """Shipped aligned faces as a track: every frame a face, its box in the source frame unknown."""
    return FaceTrack(faces, np.ones(len(faces), bool), np.full((len(faces), 4), np.nan, np.float32))


def _read_media(path: Path, cfg: ExtractConfig):
    suffix = path.suffix.lower()
    if path.is_dir():
        frames, times = read_frames(path, cfg.fps, cfg.max_frames)
        return frames, None, times, []
    if suffix in IMAGE_SUFFIXES:
        return read_image(path), None, np.zeros(1, np.float32), []
    if suffix in AUDIO_SUFFIXES:
        return None, read_audio_file(path), None, []
    clip = decode_clip(path, cfg.fps, cfg.max_frames)
    return clip.frames, clip.audio, clip.frame_times, clip.warnings
