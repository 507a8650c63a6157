"""Small corpora in the layouts of the later MER releases, made of demo clips (for tests and benchmarks).

`mer2025` and `mer2026`: audio/<name>.wav, openface_face/<name>/<name>.npy (aligned faces, BGR; an empty
array where "no face was aligned"), subtitle_chieng.csv, the track CSVs of that year and, with
`with_video`, video/<name>.mp4. `mer2024`: video-labeled/ and video-unlabeled-with-test2noise/ clips,
label-disdim.csv, label-transcription.csv, candidate_20000.csv, and the shipped audio and subtitles of
the unlabelled clips. Content comes from pipeline.demo's faces and voices, so it is learnable; the
`chinese` subtitle column is the English sentence marked with CHINESE_MARK (the demo speaks English).
"""

from __future__ import annotations

import csv
import wave
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from pipeline.config import DemoConfig
from pipeline.demo import voice
from pipeline.demo.corpus import clip_slots, render_clip, run_slots, write_mp4

SHAPES = ("mer2024", "mer2025", "mer2026")
FACE_SIZE = 112
CHINESE_MARK = "（中）"
NO_FACE_EVERY, NO_SUBTITLE_EVERY = 9, 11  # clip i has an empty faces array when i % 9 == 4, no subtitle when i % 11 == 7
# Fine-grained words per class, for the label lists (MER-FG): one to three per clip.
FG_WORDS = {"neutral": ("calm", "neutral", "relaxed"), "angry": ("angry", "annoyed", "furious"),
            "happy": ("happy", "joyful", "excited"), "sad": ("sad", "disappointed", "lonely"),
            "worried": ("worried", "anxious", "nervous"), "surprise": ("surprised", "amazed", "shocked")}
# Per shape: training CSV, candidate list, test label file, label-list files (human, automatic).
FILES = {
    "mer2024": ("label-disdim.csv", "candidate_20000.csv", "test-label.csv", ()),
    "mer2025": ("track1_train_disdim.csv", "track_all_candidates.csv", "track1_test.csv",
                ("track2_train_ovmerd.csv", "track2_train_mercaptionplus.csv")),
    "mer2026": ("track1_train.csv", "track1_track2_candidate.csv", "track1_test.csv",
                ("track2_train_human.csv", "track2_train_mercaptionplus.csv")),
}
MER2024_VIDEOS = {"train": "video-labeled", "test1": "video-unlabeled-with-test2noise",
                  "test3": "video-unlabeled-with-test2noise"}


@dataclass(frozen=True)
class ReleaseSpec:
    shape: str = "mer2025"
    n_train: int = 24
    n_candidates: int = 12     # all labelled in the test label file
    n_pool: int = 12
    seconds: float = 1.0
    fps: int = 10              # the source video's rate: one aligned face per frame
    size: int = 160            # the video's frame side
    with_video: bool = False   # mer2025/2026: also video/ (mer2024 always has its videos)
    seed: int = 0


def write_release(out: Path, spec: ReleaseSpec, workers: int = 1) -> list[dict]:
    """Lay out a release of `spec.shape` at `out`; returns one row per clip: name, split (train, test1 for
    the candidates, test3 for the pool), label (its true class), label_list (";"-joined), no_face, subtitle."""
    if spec.shape not in SHAPES:
        raise ValueError(f"shape {spec.shape!r}; known: {', '.join(SHAPES)}")
    demo = DemoConfig(seed=spec.seed, n_train=spec.n_train, n_test1=spec.n_candidates, n_test2=0,
                      n_test3_labelled=0, n_unlabelled=spec.n_pool, seconds=spec.seconds, fps=spec.fps,
                      size=spec.size)
    out.mkdir(parents=True, exist_ok=True)
    rows = run_slots(demo, clip_slots(demo), out, workers, progress=False, make=partial(_make, spec))
    _write_tables(out, spec, rows)
    return rows


def _make(spec: ReleaseSpec, demo: DemoConfig, slot, out: Path) -> dict:
    clip = render_clip(demo, slot, face_size=FACE_SIZE)
    name = f"{'sample' if slot.split == 'train' else 'samplenew'}_{slot.index:08d}"
    rng = np.random.default_rng([spec.seed, slot.index, 1])
    label = clip.row["true_label"]
    words = rng.choice(FG_WORDS[label], size=int(rng.integers(1, 4)), replace=False)
    row = {"name": name, "split": slot.split, "label": label, "valence": clip.row["true_valence"],
           "label_list": ";".join(words), "no_face": False,
           "subtitle": None if slot.index % NO_SUBTITLE_EVERY == 7 else clip.row["transcript"]}
    if spec.shape == "mer2024":
        folder = out / MER2024_VIDEOS[slot.split]
        folder.mkdir(exist_ok=True)
        write_mp4(folder / f"{name}.mp4", clip.frames, clip.audio, demo)
        if slot.split != "train":  # audio shipped with the candidate list, for the unlabelled clips
            _write_wav(out / "audio" / f"{name}.wav", clip.audio)
        return row
    if spec.with_video:
        (out / "video").mkdir(exist_ok=True)
        write_mp4(out / "video" / f"{name}.mp4", clip.frames, clip.audio, demo)
    _write_wav(out / "audio" / f"{name}.wav", clip.audio)
    faces = out / "openface_face" / name
    faces.mkdir(parents=True, exist_ok=True)
    row["no_face"] = slot.index % NO_FACE_EVERY == 4
    # As the organisers' script saves them: cv2 (BGR) images stacked; an empty list when none was aligned.
    np.save(faces / f"{name}.npy", np.array([]) if row["no_face"] else clip.faces[..., ::-1].copy())
    return row


def _write_wav(path: Path, audio: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(voice.SAMPLE_RATE)
        wav.writeframes(np.clip(np.round(audio * 32767), -32768, 32767).astype("<i2").tobytes())


def _write_tables(out: Path, spec: ReleaseSpec, rows: list[dict]) -> None:
    train_file, candidates_file, test_file, list_files = FILES[spec.shape]
    train = [r for r in rows if r["split"] == "train"]
    candidates = [r for r in rows if r["split"] == "test1"]
    with_valence = spec.shape != "mer2026"   # MER 2026's track1_train.csv is name, discrete
    _csv(out / train_file, ["name", "discrete", *(["valence"] if with_valence else [])],
         [[r["name"], r["label"], *([r["valence"]] if with_valence else [])] for r in train])
    _csv(out / candidates_file, ["name"], [[r["name"]] for r in candidates])
    _csv(out / test_file, ["name", "discrete"], [[r["name"], r["label"]] for r in candidates])
    for i, path in enumerate(list_files):  # human lists for the training clips, automatic ones for the pool
        mine = train if i == 0 else [r for r in rows if r["split"] == "test3"]
        _csv(out / path, ["name", "openset"], [[r["name"], str(r["label_list"].split(";"))] for r in mine])
    if spec.shape == "mer2024":
        _csv(out / "label-transcription.csv", ["name", "chinese"], [[r["name"], _chinese(r)] for r in train])
        _csv(out / "subtitle.csv", ["name", "chinese", "english"],
             [[r["name"], _chinese(r), r["subtitle"]] for r in rows if r["split"] != "train"])
    else:
        _csv(out / "subtitle_chieng.csv", ["name", "chinese", "english"],
             [[r["name"], _chinese(r), r["subtitle"]] for r in rows])


def _chinese(row: dict) -> str | None:
    return CHINESE_MARK + row["subtitle"] if row["subtitle"] else row["subtitle"]


def _csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        writer.writerows([["" if v is None else v for v in row] for row in rows])

