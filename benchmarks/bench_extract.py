"""Extract stage benchmark on the generated demo corpus; writes benchmarks/results/extract_<figure>.json.

Figures (each the median of --runs runs, all measured side by side in one invocation):
  overhead     extract (1 worker, in-process) vs the sum of its unavoidable parts measured alone on the same
               clips: a decode-only pass at the same fps, and the face detector's forward passes over the
               same sampled frames. Also clips/s, frames/s, and the detector's cost and face-found rate
               against the Haar fallback's.
  incremental  a re-run with nothing changed, and a run adding 10% new clips, against the full run.
  scaling      throughput of 2 workers vs 1 worker (spawned process pool): the `mer extract` command in fresh
               processes, and extract() in this warm process.
  memory       peak RSS of the stage (fresh process, 1 worker) on a quarter of --corpus vs all of it
               (100 vs 400 clips by default).

Wall times are what the figures are about; CPU times (process + children) are recorded too, because the
machine may be shared: the load average is recorded before and after each figure.

  python benchmarks/bench_extract.py --clips 200 --runs 3 [--figures overhead incremental scaling memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _measure import load, machine, median, timed, write_result  # noqa: E402

from pipeline.config import DemoConfig, ExtractConfig, PrepareConfig  # noqa: E402
from pipeline.datasets.prepare import prepare  # noqa: E402
from pipeline.demo import generate_corpus  # noqa: E402
from pipeline.executors import single_thread_worker  # noqa: E402
from pipeline.extract import extract, face_detector  # noqa: E402
from pipeline.media.decode import decode_clip  # noqa: E402
from pipeline.media.faces import make_detector  # noqa: E402
from pipeline.store.media import MediaStore  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
# Parts small enough that 2 workers get balanced work on a few hundred clips.
CFG = ExtractConfig(workers=1, clips_per_part=16)
BEFORE = ("haar",)  # the detector compared against: the fallback, with its defaults


def corpus(work: Path, n: int) -> tuple[Path, pd.DataFrame]:
    """n demo clips and their manifest (generated once, reused by later invocations; subsets of it are
    the smaller corpora)."""
    root = work / f"demo{n}"
    manifest = work / f"manifest{n}.parquet"
    if not manifest.is_file():
        shutil.rmtree(root, ignore_errors=True)
        spec = DemoConfig(n_train=n, n_test1=0, n_test2=0, n_test3_labelled=0, n_unlabelled=0)
        generate_corpus(root, spec, progress=True)
        prepare(PrepareConfig(root=str(root)), manifest, work / f"rejects{n}.csv")
    return root, pd.read_parquet(manifest)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    return path


def run_extract(manifest, root, store, cfg) -> tuple[dict, float, float]:
    (summary, failures), wall, cpu = timed(extract, manifest, root, store, cfg)
    assert not failures, failures[:3]
    return summary, wall, cpu


def decode_pass(root: Path, manifest: pd.DataFrame, cfg: ExtractConfig) -> list[np.ndarray]:
    return [decode_clip(root / p, cfg.fps, cfg.max_frames).frames for p in manifest["path"]]


def detect_pass(detector, clips: list[np.ndarray]) -> int:
    return sum(len(detector.detect(frame)) > 0 for frames in clips for frame in frames)


def stored_found_rate(store: Path) -> float:
    """Share of sampled frames where extraction (detection + tracking) kept a face."""
    view = MediaStore(store).view()
    return round(float(view["n_faces"].sum() / view["n_frames"].sum()), 4)


def overhead(work: Path, root: Path, manifest: pd.DataFrame, runs: int) -> dict:
    detector = face_detector(CFG)
    before = make_detector(*BEFORE)
    rows = []
    for run in range(runs):
        clips, decode_wall, decode_cpu = timed(decode_pass, root, manifest, CFG)
        found, detect_wall, detect_cpu = timed(detect_pass, detector, clips)
        # The former settings only once: they are the slowest pass and only the found rate is compared.
        found_before, before_wall, before_cpu = timed(detect_pass, before, clips) if run == 0 else (None, None, None)
        summary, wall, cpu = run_extract(manifest, root, fresh(work / "store_overhead"), CFG)
        frames = sum(len(c) for c in clips)
        rows.append({"extract_wall": wall, "extract_cpu": cpu, "decode_wall": decode_wall, "decode_cpu": decode_cpu,
                     "detect_wall": detect_wall, "detect_cpu": detect_cpu, "frames": frames,
                     "detect_before_wall": before_wall, "detect_before_cpu": before_cpu,
                     "frames_with_face": found, "frames_with_face_before": found_before,
                     "ratio_wall": wall / (decode_wall + detect_wall), "ratio_cpu": cpu / (decode_cpu + detect_cpu),
                     "load": load()})
        print(f"overhead run {run}: {rows[-1]}", flush=True)
    med = {k: median(r[k] for r in rows if r[k] is not None) for k in rows[0] if k != "load"}
    frames = rows[0]["frames"]
    return {
        "figure": "extract wall time / (decode-only pass + detector forward passes), same clips, 1 worker",
        "ratio": med["ratio_wall"], "ratio_cpu": med["ratio_cpu"], "target": 1.25,
        "clips_per_s": round(len(manifest) / med["extract_wall"], 2), "frames_per_s": round(frames / med["extract_wall"], 1),
        "ms_per_clip": round(1000 * med["extract_wall"] / len(manifest), 1),
        "floor_ms_per_clip": round(1000 * (med["decode_wall"] + med["detect_wall"]) / len(manifest), 1),
        "sampled_frames": frames, "medians_s": med,
        "detector_ms_per_frame_cpu": round(1000 * med["detect_cpu"] / frames, 2),
        "detector_before_ms_per_frame_cpu": round(1000 * med["detect_before_cpu"] / frames, 2),
        "face_found_rate": round(rows[0]["frames_with_face"] / frames, 4),
        "face_found_rate_before": round(rows[0]["frames_with_face_before"] / frames, 4),
        "face_kept_rate_in_store": stored_found_rate(work / "store_overhead"),
        "detector": {"name": CFG.face_detector, "options": CFG.face_options},
        "detector_before": {"name": BEFORE[0], "options": {}},
        "per_run": rows,
    }


def incremental(work: Path, root: Path, manifest: pd.DataFrame, n: int, runs: int) -> dict:
    base, grown = manifest.iloc[:n], manifest.iloc[:n + n // 10]
    rows = []
    for run in range(runs):
        store = fresh(work / "store_incremental")
        _, full, _ = run_extract(base, root, store, CFG)
        noop_summary, noop, _ = run_extract(base, root, store, CFG)
        add_summary, add, _ = run_extract(grown, root, store, CFG)
        assert noop_summary["processed"] == 0 and add_summary["processed"] == len(grown) - n
        rows.append({"full_s": full, "noop_s": noop, "add_10pct_s": add,
                     "noop_ratio": noop / full, "add_ratio": add / full, "load": load()})
        print(f"incremental run {run}: {rows[-1]}", flush=True)
    med = {k: median(r[k] for r in rows) for k in rows[0] if k != "load"}
    return {"figure": "re-run with nothing changed, and +10% new clips, vs the full run (wall, 1 worker)",
            "noop_ratio": med["noop_ratio"], "noop_target": 0.05, "add_10pct_ratio": med["add_ratio"],
            "add_10pct_target": "about 0.10", "new_clips": len(grown) - n, "medians": med, "per_run": rows}


def busy_loop(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


def machine_ceiling(n: int = 20_000_000) -> float:
    """Throughput of 2 processes / 1 process on a loop that shares nothing: what 2 workers can reach at
    best on this machine (virtual cores may share a physical one)."""
    start = time.perf_counter()
    busy_loop(n)
    one = time.perf_counter() - start
    with get_context("spawn").Pool(2) as pool:
        pool.map(busy_loop, [1, 1])  # workers started before timing
        start = time.perf_counter()
        pool.map(busy_loop, [n, n])
        two = time.perf_counter() - start
    return 2 * one / two


def stage_command(work: Path, root: Path, manifest: pd.DataFrame, workers: int) -> tuple[float, float]:
    """`mer extract` as `dvc repro` runs it, in a fresh process (cold: imports, detector load), on a fresh
    store; (wall, CPU of the process and its workers). One worker is held to one core (OMP_NUM_THREADS=1
    and pinned with taskset), as a pool worker is: otherwise OpenCV's and FFmpeg's threads would use
    the second core too."""
    (work / "stage").mkdir(exist_ok=True)
    params, rows = work / "stage" / "params.yaml", work / "stage" / "manifest.parquet"
    extract_params = {"workers": workers, "clips_per_part": CFG.clips_per_part}
    params.write_text(json.dumps({"prepare": {"root": str(root)}, "extract": extract_params}))  # JSON is YAML
    manifest.to_parquet(rows, index=False)
    store = fresh(work / "store_stage")
    command = [sys.executable, "-c", "from pipeline.cli import main; main()", "extract", "--params", str(params),
               "--manifest", str(rows), "--store", str(store), "--failures", str(work / "stage" / "failures.jsonl"),
               "--faces", str(work / "stage" / "faces.json")]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    if workers == 1:
        env["OMP_NUM_THREADS"] = "1"
        command = ["taskset", "-c", "0", *command]
    _, wall, cpu = timed(subprocess.run, command, check=True, env=env, capture_output=True)
    return wall, cpu


def scaling(work: Path, root: Path, manifest: pd.DataFrame, runs: int, warm: bool = True) -> dict:
    """Two ways, side by side in each run: the stage command in fresh processes (what users run), and
    (with `warm`) extract() called in this already warm process (1 worker: no start-up at all; 2 workers:
    spawned)."""
    rows = []
    for run in range(runs):
        row = {}
        for workers in (1, 2):
            wall, cpu = stage_command(work, root, manifest, workers)
            row |= {f"stage_w{workers}_wall": wall, f"stage_w{workers}_cpu": cpu}
            if warm:
                _, wall, cpu = run_extract(manifest, root, fresh(work / "store_scaling"), replace(CFG, workers=workers))
                row |= {f"w{workers}_wall": wall, f"w{workers}_cpu": cpu}
        row["stage_speedup"] = row["stage_w1_wall"] / row["stage_w2_wall"]
        if warm:
            row["speedup"] = row["w1_wall"] / row["w2_wall"]
        row["machine_ceiling"] = machine_ceiling()
        rows.append(row | {"load": load()})
        print(f"scaling run {run}: {rows[-1]}", flush=True)
    med = {k: median(r[k] for r in rows) for k in rows[0] if k != "load"}
    return {"figure": "throughput with 2 workers / 1 worker (spawned process pool, parts of at most 16 clips, "
                      "balanced over the workers): `ratio` for the stage command in fresh processes, "
                      "`ratio_warm_in_process` for extract() in a warm process; beside the machine's own "
                      "2-vs-1-process ceiling on a loop that shares nothing, all measured in the same runs",
            "ratio": med["stage_speedup"], "ratio_warm_in_process": med.get("speedup"),
            "machine_ceiling": med["machine_ceiling"], "ratio_of_ceiling": med["stage_speedup"] / med["machine_ceiling"],
            "stage_clips_per_s": {w: round(len(manifest) / med[f"stage_w{w}_wall"], 2) for w in (1, 2)},
            "target": 1.8, "medians": med, "per_run": rows}


def memory(work: Path, size: int, sizes: tuple[int, ...]) -> dict:
    peaks = {}
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--work", str(work), "--corpus", str(size), "--rss-child", str(n)],
                             check=True, capture_output=True, text=True).stdout
        peaks[n] = json.loads(out.strip().splitlines()[-1])
        print(f"memory {n} clips: {peaks[n]}", flush=True)
    small, large = peaks[sizes[0]]["peak_rss_mb"], peaks[sizes[-1]]["peak_rss_mb"]
    return {"figure": f"peak RSS of extract (fresh process, 1 worker): {sizes[-1]} vs {sizes[0]} clips",
            "ratio": round(large / small, 3), "target": "no growth with corpus size", "peaks": peaks}


def rss_child(work: Path, size: int, n: int) -> None:
    root, manifest = corpus(work, size)
    single_thread_worker()
    _, wall, _ = run_extract(manifest.iloc[:n], root, fresh(work / f"store_rss{n}"), CFG)
    print(json.dumps({"clips": n, "peak_rss_mb": round(peak_rss_mb(), 1), "wall_s": round(wall, 2)}))


def peak_rss_mb() -> float:
    """This process image's peak RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent
    that forked this process (a benchmark that has decoded hundreds of clips), VmHWM starts at exec."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_extract"))
    parser.add_argument("--corpus", type=int, default=400, help="demo clips generated (at least clips + 10%%)")
    parser.add_argument("--figures", nargs="+", default=["overhead", "incremental", "scaling", "memory"])
    parser.add_argument("--no-warm", action="store_true", help="scaling: the stage command only (large corpora)")
    parser.add_argument("--out-suffix", default="", help="results file extract_<figure><suffix>.json")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    n = args.clips
    size = max(args.corpus, n + n // 10)  # the extra 10% are the incremental run's new clips
    if args.rss_child:
        return rss_child(args.work, size, args.rss_child)
    single_thread_worker()  # the in-process (1 worker) runs get the same threading as pool workers
    root, manifest = corpus(args.work, size)
    figures = {
        "overhead": lambda: overhead(args.work, root, manifest.iloc[:n], args.runs),
        "incremental": lambda: incremental(args.work, root, manifest, n, args.runs),
        "scaling": lambda: scaling(args.work, root, manifest.iloc[:n], args.runs, warm=not args.no_warm),
        "memory": lambda: memory(args.work, size, (size // 4, size)),
    }
    for name in args.figures:
        start_load = load()
        result = figures[name]()
        result |= {"corpus_clips": n, "runs": args.runs, "load_avg_start": start_load, "load_avg_end": load(),
                   "extract_params": {"fps": CFG.fps, "max_frames": CFG.max_frames, "face_size": CFG.face_size,
                                      "face_detector": CFG.face_detector, "clips_per_part": CFG.clips_per_part},
                   "command": " ".join(["python", *sys.argv])} | machine()
        write_result(result, RESULTS / f"extract_{name}{args.out_suffix}.json")


if __name__ == "__main__":
    main()
