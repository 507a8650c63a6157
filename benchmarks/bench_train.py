"""Training speed: the batched all-folds trainer vs the baseline's DataLoader loop and vs the compute floor.

Random features of the MER 2023 shape (3,373 train items; audio 1024, text 1024, visual 512; test
sets of 411 and 412 items), full protocol: 5 folds x 100 epochs, batch 32, validation every epoch,
test sets at the best epochs. Measured side by side in one run, for each torch thread count:

- fast: `cross_validate` (the pipeline's trainer);
- floor: the same work with no framework around it: per step exactly the trainer's batched matmuls
  (forward, weight and input gradients) and one fused Adam update of every fold's parameters, plus
  one validation forward per epoch, on preallocated tensors (no autograd, dropout, loss, indexing);
- reference: the baseline's loop shape (DataLoader, per-step Python, every test set each epoch).

Every loop's per-epoch cost is constant, so each is timed on a few epochs (and the reference on one
fold) and scaled linearly to the protocol; the JSON records measured and scaled figures. It also
records the protocol's FLOP count, the machine's measured GEMM rate and its theoretical FP32 peak
(cores x clock x 32 FLOP/cycle: two 256-bit FMA units), so the figure can be judged against what
the hardware can do at all.

    python benchmarks/bench_train.py [--runs 3] [--epochs 4] [--ref-epochs 3] [--threads 1,2]

On a machine shared with other jobs, run with OMP_WAIT_POLICY=PASSIVE (read by libgomp when torch
loads): with the default spin-waiting, a 2-thread run whose second thread gets preempted spins at
every barrier. The JSON records the policy and the load average.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.models.fusion import AttentionFusion, StackedLinear
from pipeline.training.cv import (TestSet, TrainConfig, available_cores, cross_validate, fold_indices, make_folds,
                                  train_fold_reference)

ITEMS, DIMS, TESTS = 3373, {"audio": 1024, "text": 1024, "visual": 512}, {"test1": 411, "test2": 412}
PROTOCOL_EPOCHS, FOLDS, TARGET_SECONDS = 100, 5, 20.0
FLOP_PER_CYCLE = 32  # FP32 per core: two 256-bit FMA units x 8 lanes x 2
OUT = Path(__file__).parent / "results" / "train_speed.json"


def write_result(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


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


def cpu_mhz() -> float:
    try:
        return max(float(line.split(":")[1]) for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("cpu MHz"))
    except (OSError, ValueError):
        return float("nan")


# ---------------------------------------------------------------- the compute floor

class Floor:
    """The trainer's arithmetic on preallocated tensors: per step, each StackedLinear's forward
    baddbmm, weight-gradient bmm and (except input layers) input-gradient bmm, then one fused Adam
    update of all parameters; per epoch one validation forward."""

    def __init__(self, batch: int, val_rows: int):
        self.model = AttentionFusion(list(DIMS.values()), n_models=FOLDS)
        first = {id(enc[0]) for enc in self.model.encoders}
        self.layers = [(m.weight.detach(), m.bias.detach(), id(m) in first)
                       for m in self.model.modules() if isinstance(m, StackedLinear)]
        self.params = [p.detach() for p in self.model.parameters()]
        self.grads = [torch.randn_like(p) * 1e-3 for p in self.params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros(()) for _ in self.params]
        shapes = [(w.shape[1], w.shape[2]) for w, _, _ in self.layers]
        self.x = [torch.randn(FOLDS, batch, i) for i, _ in shapes]
        self.g = [torch.randn(FOLDS, batch, o) for _, o in shapes]
        self.xt = [x.transpose(1, 2).contiguous() for x in self.x]
        self.out = [torch.empty(FOLDS, batch, o) for _, o in shapes]
        self.gw = [torch.empty_like(w) for w, _, _ in self.layers]
        self.gx = [torch.empty(FOLDS, batch, i) for i, _ in shapes]
        self.vx = [torch.randn(FOLDS, val_rows, i) for i, _ in shapes]
        self.vo = [torch.empty(FOLDS, val_rows, o) for _, o in shapes]

    def step(self) -> None:
        for j, (w, b, first) in enumerate(self.layers):
            torch.baddbmm(b, self.x[j], w, out=self.out[j])
            torch.bmm(self.xt[j], self.g[j], out=self.gw[j])
            if not first:
                torch.bmm(self.g[j], w.transpose(1, 2), out=self.gx[j])
        for s in self.steps:
            s += 1
        torch._fused_adam_(self.params, self.grads, self.m, self.v, [], self.steps, lr=1e-3, beta1=0.9, beta2=0.999,
                           weight_decay=1e-5, eps=1e-8, amsgrad=False, maximize=False)

    def epoch(self, steps: int) -> None:
        for _ in range(steps):
            self.step()
        for j, (w, b, _) in enumerate(self.layers):
            torch.baddbmm(b, self.vx[j], w, out=self.vo[j])


def protocol_flops(train_rows: int, val_rows: int, epochs: int, batch: int) -> dict:
    """FLOPs of the protocol's matmuls (2 per multiply-add) and bytes Adam streams (p, g, m, v read;
    p, m, v written; fp32), for one fold, times FOLDS."""
    model = AttentionFusion(list(DIMS.values()))
    first = {id(enc[0]) for enc in model.encoders}
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    fwd = sum(2 * m.in_features * m.out_features for m in linears)          # per row
    bwd = sum(2 * m.in_features * m.out_features * (1 if id(m) in first else 2) for m in linears)
    steps = math.ceil(train_rows / batch)
    params = sum(p.numel() for p in model.parameters())
    train = FOLDS * epochs * train_rows * (fwd + bwd)
    val = FOLDS * epochs * val_rows * fwd
    return {"tflop": round((train + val) / 1e12, 3), "train_tflop": round(train / 1e12, 3),
            "validation_tflop": round(val / 1e12, 3), "adam_tb": round(FOLDS * epochs * steps * params * 28 / 1e12, 3),
            "params_per_fold": params, "steps_per_fold_epoch": steps}


def gemm_gflops(threads: int, n: int = 1024, reps: int = 8) -> float:
    """Measured FP32 GEMM rate (a large square matmul: the best case for the hardware)."""
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    wall, _ = timed(lambda: [a @ b for _ in range(reps)])
    return 2 * n**3 * reps / wall / 1e9


def measure(threads: int, args, data, folds) -> dict:
    """One thread count: fast, floor and reference loops, each `args.runs` times, interleaved."""
    X, y, v, tests = data
    splits = fold_indices(y, folds)
    fast_cfg = TrainConfig(epochs=args.epochs, threads=threads)
    ref_cfg = TrainConfig(epochs=args.ref_epochs, threads=threads)
    floor = Floor(fast_cfg.batch_size, max(len(va) for _, va in splits))
    steps = math.ceil(max(len(tr) for tr, _ in splits) / fast_cfg.batch_size)
    runs = {"fast": [], "floor": [], "reference": []}
    for run in range(args.runs):
        torch.set_num_threads(threads)
        runs["fast"].append(timed(lambda: cross_validate(X, None, y, v, folds, fast_cfg, tests)))
        runs["floor"].append(timed(lambda: [floor.epoch(steps) for _ in range(args.epochs)]))
        runs["reference"].append(timed(lambda: [train_fold_reference(X, None, y, v, tr, va, ref_cfg, tests)
                                                for tr, va in splits[: args.ref_folds]]))
        print(f"threads {threads} run {run}: " + ", ".join(f"{k} {r[-1][0]:.1f}s" for k, r in runs.items()), flush=True)
    scale = {"fast": PROTOCOL_EPOCHS / args.epochs, "floor": PROTOCOL_EPOCHS / args.epochs,
             "reference": (FOLDS / args.ref_folds) * (PROTOCOL_EPOCHS / args.ref_epochs)}
    out = {f"{k}_seconds": round(statistics.median(w for w, _ in r) * scale[k], 1) for k, r in runs.items()}
    out |= {f"{k}_cpu_seconds": round(statistics.median(c for _, c in r) * scale[k], 1) for k, r in runs.items()}
    out |= {"fast_over_floor": round(out["fast_seconds"] / out["floor_seconds"], 2),
            "reference_over_fast": round(out["reference_seconds"] / out["fast_seconds"], 2),
            "gemm_gflops": round(gemm_gflops(threads), 1),
            "measured_runs_seconds": {k: [round(w, 2) for w, _ in r] for k, r in runs.items()},
            "scale_factors": scale}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4, help="epochs timed for the fast and floor loops")
    ap.add_argument("--ref-epochs", type=int, default=2)
    ap.add_argument("--ref-folds", type=int, default=1)
    ap.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to compare")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    data = make_data(0)
    folds = make_folds(ITEMS, FOLDS, seed=0, y=data[1])
    splits = fold_indices(data[1], folds)
    load_before = os.getloadavg()
    by_threads = {t: measure(t, args, data, folds) for t in (int(x) for x in args.threads.split(","))}
    best = min(by_threads, key=lambda t: by_threads[t]["fast_seconds"])
    flops = protocol_flops(max(len(tr) for tr, _ in splits), max(len(va) for _, va in splits), PROTOCOL_EPOCHS,
                           TrainConfig().batch_size)
    cores, mhz = available_cores(), cpu_mhz()
    peak = cores * mhz * 1e6 * FLOP_PER_CYCLE
    best_gemm = max(r["gemm_gflops"] for r in by_threads.values())
    result = {
        "figure": "wall seconds of one 5-fold x 100-epoch CV of AttentionFusion (batch 32, Adam, validation "
                  "every epoch, two test sets), MER 2023-shaped random features; fast, compute floor and "
                  "reference loops measured side by side",
        "fast_seconds": by_threads[best]["fast_seconds"], "floor_seconds": by_threads[best]["floor_seconds"],
        "reference_seconds": by_threads[best]["reference_seconds"],
        "ratio": by_threads[best]["reference_over_fast"], "fast_over_floor": by_threads[best]["fast_over_floor"],
        "best_threads": best, "target_seconds": TARGET_SECONDS,
        "protocol": flops,
        "theoretical_peak_gflops": round(peak / 1e9, 1),
        "seconds_at_theoretical_peak": round(flops["tflop"] * 1e12 / peak, 1),
        "seconds_at_measured_gemm_rate": round(flops["tflop"] * 1e12 / (best_gemm * 1e9), 1),
        "target_reachable": flops["tflop"] * 1e12 / peak <= TARGET_SECONDS,
        "by_threads": by_threads,
        "scaled_from": {"fast_and_floor_epochs": args.epochs, "reference_epochs": args.ref_epochs,
                        "reference_folds": args.ref_folds},
        "items": ITEMS, "dims": DIMS, "tests": TESTS, "folds": FOLDS, "epochs": PROTOCOL_EPOCHS, "runs": args.runs,
        "cores": cores, "cpu": cpu_model(), "cpu_mhz": mhz, "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
