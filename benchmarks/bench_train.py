"""Training speed: the batched all-folds trainer vs the baseline's DataLoader loop, same run, same data.

Random features of the MER 2023 shape (3,373 train items; audio 1024, text 1024, visual 512; test
sets of 411 and 412 items). The fast path runs the full protocol (5 folds x 100 epochs, batch 32,
validation every epoch, test sets at the best epochs). The reference loop is timed on
`--ref-folds` folds x `--ref-epochs` epochs with every test set evaluated each epoch, as the baseline
does, and scaled linearly to the full protocol (its per-epoch cost is constant); the JSON says so.

    python benchmarks/bench_train.py [--runs 3] [--ref-epochs 10] [--ref-folds 1] [--threads N]

On a machine shared with other jobs, run with OMP_WAIT_POLICY=PASSIVE (read by libgomp when torch
loads): with the default spin-waiting, a 2-thread run whose second thread gets preempted spins at
every barrier and ran 7x slower than 1 thread here. The JSON records the policy and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.training.cv import (TestSet, TrainConfig, available_cores, cross_validate, fold_indices, make_folds,
                                  train_fold_reference)

ITEMS, DIMS, TESTS = 3373, {"audio": 1024, "text": 1024, "visual": 512}, {"test1": 411, "test2": 412}
OUT = Path(__file__).parent / "results" / "train_speed.json"


def random_features(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in DIMS.items()}


def make_data(seed: int):
    rng = np.random.default_rng(seed)
    X, y, v = random_features(ITEMS, rng), rng.integers(0, 6, ITEMS), rng.uniform(-5, 5, ITEMS)
    tests = {name: TestSet(random_features(n, rng), None, rng.integers(0, 6, n), rng.uniform(-5, 5, n))
             for name, n in TESTS.items()}
    return X, y, v, tests


def timed(fn) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--ref-epochs", type=int, default=10)
    ap.add_argument("--ref-folds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all available cores")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    X, y, v, tests = make_data(0)
    folds = make_folds(ITEMS, 5, seed=0, y=y)
    cfg = TrainConfig(epochs=args.epochs, threads=threads)
    ref_cfg = TrainConfig(epochs=args.ref_epochs, threads=threads)
    load_before = os.getloadavg()

    fast, ref = [], []
    for run in range(args.runs):
        fast.append(timed(lambda: cross_validate(X, None, y, v, folds, cfg, tests)))
        splits = fold_indices(y, folds)[: args.ref_folds]
        ref.append(timed(lambda: [train_fold_reference(X, None, y, v, tr, va, ref_cfg, tests) for tr, va in splits]))
        print(f"run {run}: fast {fast[-1][0]:.1f}s, reference {ref[-1][0]:.1f}s "
              f"({args.ref_folds} fold(s) x {args.ref_epochs} epochs)", flush=True)

    scale = (5 / args.ref_folds) * (args.epochs / args.ref_epochs)
    fast_s = statistics.median(w for w, _ in fast)
    ref_measured = statistics.median(w for w, _ in ref)
    result = {
        "figure": "wall seconds of one 5-fold x 100-epoch CV of AttentionFusion (batch 32, Adam, validation "
                  "every epoch, two test sets), MER 2023-shaped random features",
        "fast_seconds": round(fast_s, 2),
        "reference_seconds": round(ref_measured * scale, 2),
        "ratio": round(ref_measured * scale / fast_s, 2),
        "reference_scaled": scale != 1,
        "reference_measured_seconds": round(ref_measured, 2),
        "reference_measured_folds": args.ref_folds,
        "reference_measured_epochs": args.ref_epochs,
        "reference_scale_factor": scale,
        "fast_cpu_seconds": round(statistics.median(c for _, c in fast), 2),
        "reference_cpu_seconds_scaled": round(statistics.median(c for _, c in ref) * scale, 2),
        "fast_runs_seconds": [round(w, 2) for w, _ in fast],
        "reference_runs_seconds_measured": [round(w, 2) for w, _ in ref],
        "items": ITEMS, "dims": DIMS, "tests": TESTS, "folds": 5, "epochs": args.epochs, "batch_size": cfg.batch_size,
        "runs": args.runs, "cores": available_cores(), "threads": threads,
        "cpu": cpu_model(), "torch": torch.__version__, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
