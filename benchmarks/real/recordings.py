"""Long recordings from real dev clips, through `mer predict --segments vad`.

A checkpoint is trained as `dvc repro` trains one (audio only, eGeMAPS; the RAVDESS adapter, actors
01-08 train, the label set folded onto MER 2023's six as params.yaml folds it). Per held-out actor
(09-12), that actor's clips are joined end to end in a seeded order, with 1 s of silence between them
and with none; the 6 CREMA-D clips (one actor, video and audio) are joined the same way. Each recording
is predicted per segment, and each clip is predicted alone. Figures:
- accuracy of the segment that overlaps each clip most, against the clips' own accuracy alone;
- boundary error: |segment start - speech start| and |segment end - speech end|, where speech starts and
  ends inside each clip as the VAD finds it in that clip alone (a clip's own leading and trailing
  silence is no error). Clips joined without silence may share a segment: their boundaries count too.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import yaml

from pipeline.config import load_section
from pipeline.datasets.prepare import prepare
from pipeline.predict import predict_clips
from pipeline.recordings import speech_spans
from pipeline.timeline import predict_recording

from . import _ravdess as ravdess

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))
from checkpoint_fixtures import train_checkpoint  # noqa: E402
from recording_fixtures import join_clips  # noqa: E402

CREMAD = "cremad-av-dev"
GAPS = (1.0, 0.0)


def run(data_dir: Path) -> dict:
    root = Path(data_dir) / ravdess.FOLDER
    if not root.is_dir():
        return {"skipped": f"{root} is absent"}
    work = Path(tempfile.mkdtemp(prefix="bench_recordings_"))
    ckpt, manifest = checkpoint(root, work)
    truth = manifest.set_index("path")["label"]
    result = {"checkpoint": "fusion, audio only (eGeMAPS), RAVDESS actors 01-08, MER 2023's six labels"}
    for actor in sorted(manifest.loc[manifest["split"] == "test1", "speaker"].unique()):
        rows = manifest[(manifest["speaker"] == actor) & manifest["label"].notna()]
        clips = [root / p for p in rows["path"].sample(frac=1.0, random_state=0)]
        for gap in GAPS:
            result[f"ravdess_{actor}_gap{gap:g}"] = compare(clips, [truth[str(c.relative_to(root))] for c in clips],
                                                            ckpt, work / f"{actor}_{gap:g}.wav", gap)
    cremad = Path(data_dir) / CREMAD
    if cremad.is_dir():
        labels = pd.read_csv(cremad / "labels.csv").set_index("file")["emotion"]
        fold = yaml.safe_load((REPO / "params.yaml").read_text())["prepare"]["label_map"]
        keep = [f for f in sorted(labels.index) if fold.get(labels[f], labels[f]) != ""]
        for gap in GAPS:
            result[f"cremad_gap{gap:g}"] = compare([cremad / f for f in keep], [fold.get(labels[f], labels[f]) for f in keep],
                                                   ckpt, work / f"cremad_{gap:g}.mp4", gap)
    result["summary"] = summary(result)
    return result


def checkpoint(root: Path, work: Path) -> tuple[Path, pd.DataFrame]:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["prepare"] |= {"adapter": "ravdess", "root": str(root), "options": {"test_speakers": [str(a) for a in range(9, 13)]}}
    params["train"] |= {"features": {"audio": "egemaps"}, "ablation": [], "seeds": [0]}
    params["encode"]["features"] = {"egemaps": params["encode"]["features"]["egemaps"]}
    path = work / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    manifest = prepare(load_section("prepare", path), work / "manifest.parquet", work / "rejects.csv").manifest
    return train_checkpoint(work, root, path), manifest   # encode.features holds egemaps alone


def compare(clips: list[Path], labels: list[str], ckpt: Path, out: Path, gap: float) -> dict:
    spans = join(clips, out, gap)
    alone = predict_clips(clips, ckpt)["emotion"].tolist()
    timeline = predict_recording(out, ckpt, "vad")
    matched, starts, ends = [], [], []
    for clip, (a, b) in zip(clips, spans):
        overlap = (np.minimum(timeline["end"], b) - np.maximum(timeline["start"], a)).clip(lower=0)
        best = int(overlap.idxmax()) if overlap.max() > 0 else None
        matched.append(timeline["label"].iloc[best] if best is not None else None)
        speech = speech_spans(clip)
        if best is not None and speech:
            starts.append(abs(timeline["start"].iloc[best] - (a + speech[0][0])))
            ends.append(abs(timeline["end"].iloc[best] - (a + speech[-1][1])))
    accuracy = lambda pred: float(np.mean([p == t for p, t in zip(pred, labels)]))  # noqa: E731
    return {"clips": len(clips), "segments": len(timeline), "gap_s": gap,
            "clip_accuracy": round(accuracy(alone), 3), "segment_accuracy": round(accuracy(matched), 3),
            "agreement_with_clips": round(float(np.mean([m == c for m, c in zip(matched, alone)])), 3),
            "boundary_error_median_s": round(float(np.median(starts + ends)), 3) if starts else None,
            "start_error_median_s": round(float(np.median(starts)), 3) if starts else None,
            "end_error_median_s": round(float(np.median(ends)), 3) if ends else None}


def join(clips: list[Path], out: Path, gap: float) -> list[tuple[float, float]]:
    """Audio clips into one WAV, video clips into one MP4 (tests/recording_fixtures.join_clips)."""
    if out.suffix == ".mp4":
        return join_clips(clips, out, gap)
    from pipeline.media.decode import read_audio_file

    pause = np.zeros(round(gap * 16000), np.float32)
    parts, spans, at = [pause], [], len(pause)
    for clip in clips:
        audio = read_audio_file(clip, 16000)
        spans.append((at / 16000, (at + len(audio)) / 16000))
        parts += [audio, pause]
        at += len(audio) + len(pause)
    sf.write(out, np.concatenate(parts), 16000, subtype="PCM_16")
    return spans


def summary(result: dict) -> dict:
    rows = [v for v in result.values() if isinstance(v, dict) and "clips" in v]
    weights = np.array([r["clips"] for r in rows], float)
    mean = lambda key: round(float(np.average([r[key] for r in rows], weights=weights)), 3)  # noqa: E731
    errors = [r["boundary_error_median_s"] for r in rows if r["boundary_error_median_s"] is not None]
    return {"clip_accuracy": mean("clip_accuracy"), "segment_accuracy": mean("segment_accuracy"),
            "segment_minus_clip_points": round(100 * (mean("segment_accuracy") - mean("clip_accuracy")), 1),
            "boundary_error_median_s": round(float(np.median(errors)), 3) if errors else None}


def markdown(result: dict) -> str:
    if "skipped" in result:
        return f"skipped: {result['skipped']}\n"
    lines = [result["checkpoint"], "", "| recording | clips | segments | clip accuracy | segment accuracy | "
             "boundary error (median s) |", "|---|---|---|---|---|---|"]
    for name, r in result.items():
        if isinstance(r, dict) and "clips" in r:
            lines.append(f"| {name} | {r['clips']} | {r['segments']} | {r['clip_accuracy']:.3f} | "
                         f"{r['segment_accuracy']:.3f} | {r['boundary_error_median_s']} |")
    s = result["summary"]
    lines += ["", f"Over all recordings: segment accuracy {s['segment_accuracy']:.3f} against {s['clip_accuracy']:.3f} "
              f"per clip ({s['segment_minus_clip_points']:+.1f} points); median boundary error "
              f"{s['boundary_error_median_s']} s."]
    return "\n".join(lines) + "\n"
