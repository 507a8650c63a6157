"""Extract on a real Dask cluster: a scheduler and 1 or 2 workers started with Dask's own CLI on this
machine, beside the local executor, on the same demo clips; writes benchmarks/results/cluster.json.

What a user gets from `run.executor: dask` on the machines they have: the cluster's overhead against
the local pool (task shipping, the scheduler's round trips) and its scaling from 1 to 2 workers. Each
figure is the median of --runs runs into a fresh store, measured side by side in one invocation; the
cluster's start-up (scheduler and workers up) is timed apart. The load average is recorded around each.

  python benchmarks/bench_cluster.py --clips 64 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import DemoConfig, ExtractConfig, PrepareConfig, RunConfig  # noqa: E402
from pipeline.datasets.prepare import prepare  # noqa: E402
from pipeline.demo import generate_corpus  # noqa: E402
from pipeline.extract import extract  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
DASK = str(Path(sys.executable).with_name("dask"))   # Dask's own command line, installed beside this Python


@contextmanager
def dask_cluster(folder: Path, workers: int):
    """`dask scheduler` and `workers` x `dask worker` on the loopback, found through a scheduler file."""
    scheduler_file = folder / "scheduler.json"
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}  # workers import the pipeline like this process
    logs = folder / "logs"
    logs.mkdir()
    common = ["--scheduler-file", str(scheduler_file), "--no-dashboard"]
    procs = [subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1",
                               "--port", "0", *common], env=env, stderr=(logs / "scheduler").open("w"))]
    deadline = time.monotonic() + 60
    while not scheduler_file.exists():
        assert time.monotonic() < deadline and procs[0].poll() is None, (logs / "scheduler").read_text()
        time.sleep(0.2)
    procs += [subprocess.Popen([DASK, "worker", "--nworkers", "1",
                                "--nthreads", "1", "--host", "127.0.0.1", *common], env=env,
                               stderr=(logs / f"worker{i}").open("w")) for i in range(workers)]
    try:
        from distributed import Client

        with Client(scheduler_file=str(scheduler_file), timeout=60) as client:
            client.wait_for_workers(workers, timeout=120)
        yield {"scheduler_file": str(scheduler_file)}
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def timed_extract(manifest, root: Path, work: Path, cfg: ExtractConfig, runs: int, executor: RunConfig | None = None
                  ) -> dict:
    seconds = []
    for run in range(runs):
        store = work / f"store{run}.zarr"
        start = time.perf_counter()
        summary, failures = extract(manifest, root, store, cfg, run=executor)
        seconds.append(time.perf_counter() - start)
        assert not failures and summary["processed"] == len(manifest), (summary, failures)
        shutil.rmtree(store)
    median = statistics.median(seconds)
    return {"seconds": seconds, "median_s": round(median, 3), "clips_per_s": round(len(manifest) / median, 2),
            "load_after": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clips-per-part", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_cluster_"))
    root = work / "demo"
    generate_corpus(root, DemoConfig(n_train=args.clips, n_test1=0, n_test2=0, n_test3_labelled=0, n_unlabelled=0),
                    progress=False, workers=os.cpu_count() or 1)
    manifest = prepare(PrepareConfig(root=str(root)), work / "manifest.parquet", work / "rejects.csv").manifest
    cfg = ExtractConfig(clips_per_part=args.clips_per_part)
    figures = {"load_before": os.getloadavg()}
    for workers in (1, 2):
        figures[f"local_{workers}"] = timed_extract(manifest, root, work, replace(cfg, workers=workers), args.runs)
    for workers in (1, 2):
        folder = work / f"cluster{workers}"
        folder.mkdir()
        start = time.perf_counter()
        with dask_cluster(folder, workers) as options:
            up = time.perf_counter() - start
            figures[f"dask_{workers}"] = timed_extract(
                manifest, root, work, cfg, args.runs, RunConfig("dask", options))
            figures[f"dask_{workers}"]["cluster_start_s"] = round(up, 2)
    figures["dask_2_over_1_speedup"] = round(figures["dask_1"]["median_s"] / figures["dask_2"]["median_s"], 3)
    figures["dask_1_over_local_1"] = round(figures["dask_1"]["median_s"] / figures["local_1"]["median_s"], 3)
    result = {"command": " ".join(["python", *sys.argv]), "clips": args.clips, "clips_per_part": args.clips_per_part,
              "runs": args.runs, "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
              "figures": figures}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
