"""Extract from what a MER 2025-style release ships against decoding and detecting; writes
benchmarks/results/extract_shipped.json.

A generated release (pipeline.demo.releases) with video/, audio/ and openface_face/ (one aligned face per
video frame, as OpenFace writes them) goes through extract() with 1 worker, in this process, under each
pair of sources, side by side in every run: face_source detect + audio_source video (decode the video,
find and align faces: what a release without shipped inputs costs) and shipped + shipped (read the .npy
and the .wav). Each beside its floor, timed in the same run on the same clips: decoding the videos at
extract.fps plus the detector's forward passes over the sampled frames; reading the shipped face arrays
and wavs alone. Per-clip wall and CPU times are medians over --runs runs; the load average is recorded
before and after each run, because the machine may be shared.

  python benchmarks/bench_shipped.py --clips 48 --seconds 3 --fps 25 --size 320 --runs 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import pandas as pd  # noqa: E402
from _measure import load, machine, timed, write_result  # noqa: E402
from bench_extract import decode_pass, detect_pass  # noqa: E402

from pipeline.config import ExtractConfig, PrepareConfig  # noqa: E402
from pipeline.datasets.prepare import prepare  # noqa: E402
from pipeline.demo.releases import ReleaseSpec, write_release  # noqa: E402
from pipeline.executors import single_thread_worker  # noqa: E402
from pipeline.extract import extract, face_detector  # noqa: E402
from pipeline.media.decode import read_audio_file, read_face_array  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
SOURCES = {"decode_and_detect": {"face_source": "detect", "audio_source": "video"},
           "shipped": {"face_source": "shipped", "audio_source": "shipped"}}


def release(work: Path, args) -> tuple[Path, pd.DataFrame]:
    """The generated release and its manifest (made once per shape of corpus, reused by later invocations)."""
    root = work / f"release_{args.clips}_{args.seconds}_{args.fps}_{args.size}"
    manifest = root.with_suffix(".parquet")
    if not manifest.is_file():
        shutil.rmtree(root, ignore_errors=True)
        spec = ReleaseSpec(n_train=args.clips, n_candidates=0, n_pool=0, seconds=args.seconds, fps=args.fps,
                           size=args.size, with_video=True)
        write_release(root, spec, workers=os.cpu_count() or 1)
        prepare(PrepareConfig(adapter="mer2025", root=str(root), options={"label_lists": []}), manifest,
                work / "rejects.csv")
    return root, pd.read_parquet(manifest)


def floor(root: Path, manifest, name: str, cfg: ExtractConfig) -> tuple[float, float]:
    """(wall, CPU) seconds of what extraction under these sources cannot do without: decoding and the
    detector's forward passes, or reading the shipped files."""
    if name == "shipped":
        def read():
            for face, audio in zip(manifest["face_path"], manifest["audio_path"]):
                read_face_array(root / face, cfg.max_frames, cfg.face_size)
                read_audio_file(root / audio)
        _, wall, cpu = timed(read)
        return wall, cpu
    clips, decode_wall, decode_cpu = timed(decode_pass, root, manifest, cfg)
    _, detect_wall, detect_cpu = timed(detect_pass, face_detector(cfg), clips)
    return decode_wall + detect_wall, decode_cpu + detect_cpu


def run_once(root: Path, manifest, store: Path, name: str) -> dict:
    shutil.rmtree(store, ignore_errors=True)
    cfg = ExtractConfig(workers=1, **SOURCES[name])
    before = load()
    floor_wall, floor_cpu = floor(root, manifest, name, cfg)
    (summary, failures), wall, cpu = timed(extract, manifest, root, store, cfg)
    assert not failures and summary["processed"] == len(manifest), (summary, failures[:3])
    return {"wall_s": wall, "cpu_s": cpu, "floor_wall_s": floor_wall, "floor_cpu_s": floor_cpu,
            "load_before": before, "load_after": load(), "face_found_rate": summary["faces"]["all"]["face_found_rate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=48)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_shipped"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    root, manifest = release(args.work, args)
    single_thread_worker()  # one pool worker's threading: the per-clip figures are one core's
    n = len(manifest)
    runs = {name: [] for name in SOURCES}
    for run in range(args.runs):
        for name in SOURCES:  # side by side: each run times both
            runs[name].append(run_once(root, manifest, args.work / f"store_{name}", name))
            print(f"run {run} {name}: {runs[name][-1]}", flush=True)
    per_clip = {name: {f"{key}_ms": round(1000 * statistics.median(r[f"{key}_s"] for r in rows) / n, 1)
                       for key in ("wall", "cpu", "floor_wall", "floor_cpu")}
                for name, rows in runs.items()}
    for figures in per_clip.values():
        figures["ratio_to_floor"] = round(figures["wall_ms"] / figures["floor_wall_ms"], 2)
    result = {
        "figure": "extract per clip, 1 worker: decode + detect (face_source detect, audio_source video) against "
                  "the release's shipped faces and audio (shipped, shipped), each beside its floor (decode + "
                  "detector forward; reading the shipped files); medians of the runs",
        "command": f"python benchmarks/bench_shipped.py --clips {args.clips} --seconds {args.seconds} "
                   f"--fps {args.fps} --size {args.size} --runs {args.runs}",
        "clips": n, "seconds_per_clip": args.seconds, "video_fps": args.fps, "video_side_px": args.size,
        "aligned_faces_per_clip": round(args.seconds * args.fps), "extract": {
            k: v for k, v in ExtractConfig().__dict__.items() if k in ("fps", "max_frames", "face_size", "face_detector")},
        "per_clip": per_clip,
        "speedup_wall": round(per_clip["decode_and_detect"]["wall_ms"] / per_clip["shipped"]["wall_ms"], 1),
        "speedup_cpu": round(per_clip["decode_and_detect"]["cpu_ms"] / per_clip["shipped"]["cpu_ms"], 1),
        "runs": runs,
    } | machine()
    write_result(result, RESULTS / "extract_shipped.json")


if __name__ == "__main__":
    main()
