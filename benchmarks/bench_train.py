"""Training speed, measured side by side in one run: the pipeline's trainer, the MER 2023 baseline's loop
shape and the compute floor, on MER 2023-shaped random features.

Random features of the MER 2023 shape (3,373 training items; audio 1024, text 1024, visual 512; test
sets of 411 and 412 items); 5 folds x --epochs (100 = the protocol), batch 32, validation every epoch:

- fast: `cross_validate` (the pipeline's trainer), at each --threads count (train.threads: the folds train
  in that many groups side by side, each on one torch thread, in forked processes on Linux: `shard_map`);
  `fast_in_threads`: the same at the last --threads count with the groups in threads instead, as the trainer
  runs them where the OS does not fork (`threads_over_processes` compares the two);
- ablation: the trainer on the 7 ablation subsets of train.ablation (A, V, T, AV, AT, VT, AVT) in one call, as
  the train stage runs them (stacked into one model), at the last --threads count; `ablation_over_fast` is
  its time over the full subset's alone (fast at the same thread count);
- baseline: benchmarks/baseline_loop.py, the baseline's loop shape (per fold: DataLoader batches of 32,
  torch.optim.Adam, every epoch validation plus test1 and test2), torch's default threads;
- floor: the trainer's kernels at the trainer's shapes and nothing else: per step each stacked layer's
  batch-32 forward GEMM, weight-gradient GEMM and (past the input layers) input-gradient GEMM, then one
  fused Adam update; per epoch one validation forward; with T threads, in the trainer's T fold shards side by
  side, each on one torch thread. Its GEMM rate (all folds in one group, T torch threads) is checked against plain torch.mm
  at the same (32 x in) @ (in x out) shapes in the same run (`floor_gemm_gflops` vs `mm_gflops`). At the last
  --threads count the floor is also timed in parts (its GEMMs alone, its Adam updates alone) and for the 7
  ablation subsets stacked as the trainer stacks them (`ablation_floor_over_floor`: what stacking cannot remove);
  `five_x_seconds` is the baseline's time over 5, which `floor_over_five_x` compares the floor with.

Every figure is the median of --runs runs (interleaved, so a load spike hits all three), full folds and
epochs, nothing scaled. A run on a busy machine (load average above 0.5 per core) is refused unless
--force is given; then the JSON says `"under_load": true` and the figures are not the machine's.

    python benchmarks/bench_train.py [--epochs 100] [--runs 3] [--threads 1,2] [--device cpu|cuda]
        [--precision fp32|bf16] [--force]

On a shared machine set OMP_WAIT_POLICY=PASSIVE (libgomp reads it when torch loads): with spin-waiting,
a 2-thread run whose second thread is preempted spins at every barrier.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _measure import cpu_model
from baseline_loop import train_fold_reference

from pipeline.config import FusionParams
from pipeline.labels import MER_LABELS
from pipeline.modalities import parse_subset
from pipeline.models.fusion import AttentionFusion, StackedLinear, SubsetFusion
from pipeline.store.parts import parallel_map
from pipeline.training import runtime
from pipeline.training.cv import TestSet
from pipeline.training.folds import CVJob, fold_indices, make_folds
from pipeline.training.fusion import FusionRun, cross_validate, fold_shards
from pipeline.training.runtime import available_cores

ITEMS, DIMS, TESTS = 3373, {"audio": 1024, "text": 1024, "visual": 512}, {"test1": 411, "test2": 412}
CLASSES = len(MER_LABELS)  # MER 2023's shapes
SUBSETS = ("A", "V", "T", "AV", "AT", "VT", "AVT")  # train.ablation's default
FOLDS, MAX_LOAD_PER_CORE = 5, 0.5
OUT = Path(__file__).parent / "results" / "train_speed.json"


def random_features(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {m: rng.normal(size=(n, d)).astype(np.float32) for m, d in DIMS.items()}


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    X, y, v = random_features(ITEMS, rng), rng.integers(0, CLASSES, ITEMS), rng.uniform(-5, 5, ITEMS)
    tests = {name: TestSet(random_features(n, rng), None, rng.integers(0, CLASSES, n), rng.uniform(-5, 5, n))
             for name, n in TESTS.items()}
    return X, y, v, tests


def subset_jobs(X, y, v, folds, tests) -> list[CVJob]:
    """One job per ablation subset, as the train stage builds them (every item has every modality here)."""
    jobs = []
    for code in SUBSETS:
        modalities = parse_subset(code)
        sub_tests = {name: TestSet({m: t.X[m] for m in modalities}, None, t.y, t.v) for name, t in tests.items()}
        jobs.append(CVJob({m: X[m] for m in modalities}, None, y, v, folds, sub_tests))
    return jobs


def timed(fn, device: str) -> float:
    """Wall seconds of fn() (CUDA work included)."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


# ---------------------------------------------------------------- the compute floor

def gemm_layers(model: AttentionFusion | SubsetFusion) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """(weights (G, in, out), bias (G, 1, out), reads the input features?) of each of the model's matmuls,
    stacked matrices flattened into one batch dimension as the model multiplies them."""
    if isinstance(model, AttentionFusion):
        first = {id(enc[0]) for enc in model.encoders}
        return [(m.weight.detach(), m.bias.detach(), id(m) in first)
                for m in model.modules() if isinstance(m, StackedLinear)]
    stacked = lambda t: t.detach().flatten(0, -3)  # noqa: E731 - (K, [S or n,] in, out) -> (G, in, out)
    return [(stacked(w), stacked(b), w.dim() == 3) for w, b in zip(model.enc_w, model.enc_b)] \
        + [(stacked(w), stacked(b), False) for w, b in zip(model.att_w, model.att_b)] \
        + [(stacked(p[:, :, :-1]), stacked(p[:, :, -1:]), False) for p in model.heads.values()]


def full_model(folds: int) -> AttentionFusion:
    """The full subset (every modality), `folds` stacked, with the trainer's architecture."""
    run = FusionRun(n_classes=CLASSES)
    p = run.params
    return AttentionFusion(list(DIMS.values()), run.n_classes, p.hidden, p.dropout, p.attention_norm, folds)


def subset_model(folds: int) -> SubsetFusion:
    """The 7 ablation subsets stacked as the trainer stacks them (weights left at zero: the floor times, it does not learn)."""
    order = list(DIMS)
    uses = [[order.index(m) for m in parse_subset(code)] for code in SUBSETS]
    run = FusionRun(n_classes=CLASSES)
    p = run.params
    return SubsetFusion(uses, list(DIMS.values()), run.n_classes, p.hidden, p.dropout, p.attention_norm, folds)


class Floor:
    """The trainer's arithmetic on preallocated tensors (no autograd, dropout, loss or indexing): each of the
    model's matmuls at batch 32 (forward, weight gradient, input gradient past the input layers), one fused
    Adam update of all its parameters, one validation forward per epoch."""

    def __init__(self, model: AttentionFusion | SubsetFusion, batch: int, val_rows: int, device: str):
        model = model.to(device)
        self.layers = gemm_layers(model)
        self.params = [p.detach() for p in model.parameters()]
        self.grads = [torch.randn_like(p) * 1e-3 for p in self.params]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.steps = [torch.zeros((), device=device) for _ in self.params]
        self.shapes = [(w.shape[0], w.shape[1], w.shape[2], first) for w, _, first in self.layers]
        new = lambda *s: torch.randn(*s, device=device)  # noqa: E731
        self.x = [new(g, batch, i) for g, i, _, _ in self.shapes]
        self.xt = [x.transpose(1, 2).contiguous() for x in self.x]
        self.g = [new(g, batch, o) for g, _, o, _ in self.shapes]
        self.out = [new(g, batch, o) for g, _, o, _ in self.shapes]
        self.gw = [torch.empty_like(w) for w, _, _ in self.layers]
        self.gx = [new(g, batch, i) for g, i, _, _ in self.shapes]
        self.vx = [new(g, val_rows, i) for g, i, _, _ in self.shapes]
        self.vo = [new(g, val_rows, o) for g, _, o, _ in self.shapes]
        self.batch = batch

    def gemms(self) -> None:
        for j, (w, b, first) in enumerate(self.layers):
            torch.baddbmm(b, self.x[j], w, out=self.out[j])
            torch.bmm(self.xt[j], self.g[j], out=self.gw[j])
            if not first:
                torch.bmm(self.g[j], w.transpose(1, 2), out=self.gx[j])

    def adam(self) -> None:
        for s in self.steps:
            s += 1
        torch._fused_adam_(self.params, self.grads, self.m, self.v, [], self.steps, lr=1e-3, beta1=0.9, beta2=0.999,
                           weight_decay=1e-5, eps=1e-8, amsgrad=False, maximize=False)

    def epoch(self, steps: int, parts: tuple[str, ...] = ("gemm", "adam")) -> None:
        for _ in range(steps):
            if "gemm" in parts:
                self.gemms()
            if "adam" in parts:
                self.adam()
        for j, (w, b, _) in enumerate(self.layers):
            torch.baddbmm(b, self.vx[j], w, out=self.vo[j])

    def step_flop(self) -> int:
        """FLOPs of one step's GEMMs (2 per multiply-add)."""
        return sum(2 * g * self.batch * i * o * (2 if first else 3) for g, i, o, first in self.shapes)

    def mm_seconds(self, device: str, reps: int) -> float:
        """The same GEMMs as plain 2-D torch.mm calls, one per stacked matrix: the reference rate at these shapes."""
        pairs = []
        for n, i, o, first in self.shapes:
            x, w, g = torch.randn(self.batch, i, device=device), torch.randn(i, o, device=device), \
                torch.randn(self.batch, o, device=device)
            pairs += [((x, w), n), ((x.T.contiguous(), g), n)] + ([] if first else [((g, w.T.contiguous()), n)])
        run = lambda: [torch.mm(a, b) for _ in range(reps) for (a, b), n in pairs for _ in range(n)]  # noqa: E731
        run()
        return timed(run, device)


def gemm_rates(floor: Floor, device: str, reps: int = 200) -> dict:
    floor.gemms()
    flop = floor.step_flop() * reps
    stacked = timed(lambda: [floor.gemms() for _ in range(reps)], device)
    return {"floor_gemm_gflops": round(flop / stacked / 1e9, 1),
            "mm_gflops": round(flop / floor.mm_seconds(device, reps) / 1e9, 1)}


# ---------------------------------------------------------------- the three loops

def floor_seconds(model, parts, groups: list[range], steps: int, val_rows: int, args) -> float:
    """Wall seconds of the floor of model(folds) in the trainer's fold shards side by side, `parts` of each step."""
    floors = [Floor(model(len(g)), FusionParams.batch_size, val_rows, args.device) for g in groups]
    return timed(lambda: parallel_map(lambda f: [f.epoch(steps, parts) for _ in range(args.epochs)], floors,
                                      threads=len(floors)), args.device)


def run_all(args, data, folds) -> dict:
    X, y, v, tests = data
    splits = fold_indices(y, folds)
    batch = FusionParams.batch_size
    steps = max(-(-len(tr) // batch) for tr, _ in splits)
    threads = [int(t) for t in args.threads.split(",")]
    val_rows = max(len(va) for _, va in splits)
    floor = Floor(full_model(FOLDS), batch, val_rows, args.device)
    default_threads = torch.get_num_threads()
    runs: dict[str, list[float]] = {}
    rates: dict[str, list[dict]] = {}
    for i in range(args.runs):
        for t in threads:
            trainer = FusionRun(FusionParams(epochs=args.epochs, precision=args.precision), device=args.device,
                                n_classes=CLASSES, threads=t)
            job = CVJob(X, None, y, v, folds, tests)
            runs.setdefault(f"fast_{t}t", []).append(
                timed(lambda job=job, trainer=trainer: cross_validate([job], trainer), args.device))
            if t == threads[-1] and runtime.FORKS:
                runtime.FORKS = False  # the groups in threads, as where the OS does not fork
                try:
                    runs.setdefault(f"fast_in_threads_{t}t", []).append(
                        timed(lambda job=job, trainer=trainer: cross_validate([job], trainer), args.device))
                finally:
                    runtime.FORKS = True
            if t == threads[-1]:
                jobs = subset_jobs(X, y, v, folds, tests)
                runs.setdefault(f"ablation_{t}t", []).append(
                    timed(lambda jobs=jobs, trainer=trainer: cross_validate(jobs, trainer), args.device))
            groups = fold_shards(FOLDS, trainer)
            torch.set_num_threads(1 if len(groups) > 1 else t)
            floor_runs = {f"floor_{t}t": (full_model, ("gemm", "adam"))}
            if t == threads[-1]:  # the floor's parts, and the 7 subsets' floor
                floor_runs |= {f"floor_gemm_only_{t}t": (full_model, ("gemm",)), f"floor_adam_only_{t}t": (full_model, ("adam",)),
                               f"floor_ablation_{t}t": (subset_model, ("gemm", "adam"))}
            for name, (model, parts) in floor_runs.items():
                runs.setdefault(name, []).append(floor_seconds(model, parts, groups, steps, val_rows, args))
            torch.set_num_threads(t)
            rates.setdefault(f"{t}t", []).append(gemm_rates(floor, args.device))
        torch.set_num_threads(default_threads)
        ref = FusionRun(FusionParams(epochs=args.epochs), n_classes=CLASSES, device=args.device)
        runs.setdefault("baseline", []).append(timed(
            lambda ref=ref: [train_fold_reference(X, None, y, v, tr, va, ref, tests) for tr, va in splits], args.device))
        print(f"run {i}: " + ", ".join(f"{k} {r[-1]:.1f}s" for k, r in runs.items()), file=sys.stderr, flush=True)
    return {"runs": runs, "rates": rates, "baseline_threads": default_threads}


def summary(measured: dict) -> dict:
    med = {k: round(statistics.median(r), 2) for k, r in measured["runs"].items()}
    fast = min((k for k in med if k.startswith("fast_") and "in_threads" not in k), key=med.get)
    t = fast.removeprefix("fast_")
    rates = {k: round(statistics.median(r[k] for r in measured["rates"][t]), 1) for k in measured["rates"][t][0]}
    last = max(k for k in med if k.startswith("ablation_")).removeprefix("ablation_")
    return {"fast_seconds": med[fast], "fast_threads": int(t.rstrip("t")), "baseline_seconds": med["baseline"],
            "floor_seconds": med[f"floor_{t}"],
            "baseline_over_fast": round(med["baseline"] / med[fast], 2),
            "ablation_seconds": med[f"ablation_{last}"], "ablation_threads": int(last.rstrip("t")),
            "ablation_over_fast": round(med[f"ablation_{last}"] / med[f"fast_{last}"], 2),
            "ablation_over_floor": round(med[f"ablation_{last}"] / med[f"floor_ablation_{last}"], 2),
            **({"fast_in_threads_seconds": med[f"fast_in_threads_{last}"],
                "threads_over_processes": round(med[f"fast_in_threads_{last}"] / med[f"fast_{last}"], 2)}
               if f"fast_in_threads_{last}" in med else {}),
            "fast_over_floor": round(med[fast] / med[f"floor_{t}"], 2),
            "five_x_seconds": round(med["baseline"] / 5, 2),
            "floor_over_five_x": round(med[f"floor_{t}"] / (med["baseline"] / 5), 2),
            "floor_parts_threads": int(last.rstrip("t")),
            "floor_gemm_only_seconds": med[f"floor_gemm_only_{last}"], "floor_adam_only_seconds": med[f"floor_adam_only_{last}"],
            "ablation_floor_seconds": med[f"floor_ablation_{last}"],
            "ablation_floor_over_floor": round(med[f"floor_ablation_{last}"] / med[f"floor_{last}"], 2),
            **rates, "floor_gemm_over_mm": round(rates["floor_gemm_gflops"] / rates["mm_gflops"], 2),
            "medians_seconds": med, "runs_seconds": {k: [round(x, 2) for x in r] for k, r in measured["runs"].items()},
            "gemm_rates_by_threads": {k: r for k, r in measured["rates"].items()}}


def load_check(force: bool) -> tuple[list[float], bool]:
    load, cores = os.getloadavg(), available_cores()
    busy = load[0] / cores > MAX_LOAD_PER_CORE
    if busy and not force:
        sys.exit(f"bench_train: load average {load[0]:.2f} on {cores} cores is above {MAX_LOAD_PER_CORE} per core; "
                 "these figures would not be the machine's. Rerun on an idle machine, or pass --force to record "
                 "them flagged as taken under load.")
    return [round(x, 2) for x in load], busy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=100, help="epochs per fold (100 = the MER 2023 protocol)")
    ap.add_argument("--threads", default="1,2", help="comma-separated train.threads for the trainer (fold shards side by side)")
    ap.add_argument("--device", default="cpu", help="cpu | cuda")
    ap.add_argument("--precision", default="fp32", help="the trainer's train.fusion.precision: fp32 | bf16 (baseline: fp32)")
    ap.add_argument("--force", action="store_true", help="run even above load 0.5 per core (flagged in the JSON)")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.runs < 3:
        print("bench_train: fewer than 3 runs: medians of 1-2 runs are not the committed figure", file=sys.stderr)
    load_before, busy = load_check(args.force)
    data = make_data()
    folds = make_folds(ITEMS, FOLDS, seed=0, y=data[1])
    measured = run_all(args, data, folds)
    load_after = [round(x, 2) for x in os.getloadavg()]
    # the load after is recorded, not judged: the benchmark's own threads raise it
    result = {
        "figure": f"wall seconds of one {FOLDS}-fold x {args.epochs}-epoch CV of AttentionFusion (batch 32, Adam, "
                  "validation every epoch, test1 and test2), MER 2023-shaped random features; trainer, baseline "
                  "loop shape and compute floor measured side by side, and the trainer on the 7 ablation "
                  "subsets in one call; medians of the runs",
        "under_load": busy,
        "note": ("TAKEN UNDER LOAD: other jobs shared the cores; not the machine's figures" if busy
                 else "idle machine (load average at most 0.5 per core before the run)"),
        **summary(measured),
        "epochs": args.epochs, "folds": FOLDS, "runs": args.runs, "items": ITEMS, "dims": DIMS, "tests": TESTS,
        "device": args.device, "precision": args.precision, "baseline_threads": measured["baseline_threads"],
        "cores": available_cores(), "cpu": cpu_model(), "torch": torch.__version__,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
        "loadavg_before": load_before, "loadavg_after": load_after,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if busy:
        print("\n*** figures taken UNDER LOAD (load average above 0.5 per core): not the machine's ***", file=sys.stderr)


if __name__ == "__main__":
    main()
