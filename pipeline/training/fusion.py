"""The attention-fusion family's cross-validation with the MER 2023 protocol (§5.3), trained fast.

Protocol, as `main-release.py`: per fold a fresh model, Adam(lr, weight_decay) for `epochs` epochs of
shuffled mini-batches (last batch smaller), loss = CE + MSE averaged over the batch; after every
epoch the validation fold is scored and the epoch with the best F1_w - 0.25*MSE is kept (first one on
ties), with its validation ("out-of-fold") and test predictions. Test predictions are the mean of the
folds' emotion logits (argmax) and of their valence; the CV figures are the mean of the folds'
best-epoch figures.

Speed, without changing the protocol:
- all folds train at once as one stacked model: each step is one batched matmul per layer and one
  fused Adam update for every fold; on a CPU with several cores the folds split into one shard per
  core, trained side by side in forked processes (threads where the OS does not fork: `shard_map`), each
  on one torch thread (batch-32 matmuls are too small to share between threads, and shards in threads
  wait for each other's per-step Python on the GIL). Every fold draws its dropout masks from its own
  generator (one per subset and fold: `SubsetFusion.seed_dropout`) and keeps its own Adam state, so the
  results are the same however the folds are sharded;
- jobs on the same rows, folds and seed (the ablation subsets of train.ablation) train together too, as
  one `SubsetFusion`: they share every batch, so a modality's first layer is one wide matmul for all
  the subsets that read it; each subset's results are those it gets alone (tests/test_cv.py);
- the gradients are computed by hand, not by autograd: the forward records a tape and
  `SubsetFusion.backward` walks it, from the loss's gradients at the outputs (`_step_gradients`), into
  gradient buffers kept from step to step: fewer, larger ops than autograd's graph. A layer's ReLU and
  dropout are one clamp, and the kept units' 1/(1-p) is the alpha of the matmuls that read them;
- every fold keeps its own Adam state and step count, so a fold whose epoch has fewer batches skips
  those steps exactly as it would alone; folds at the same count update as one slice (`_FoldAdam`);
- features stay resident as tensors: a per-fold torch.randperm per epoch, then slicing (no DataLoader);
- validation is one inference-mode forward per epoch; test sets are evaluated once, with each fold's
  weights from its best epoch (the baseline ran every test set at every epoch and kept the same
  best-epoch outputs).

What it cannot remove: at the MER 2023 shape (2,700 training rows per fold, 1024+1024+512-d inputs)
the protocol itself is ~6 TFLOP of fp32 matmuls (500 fold-epochs x 2,700 rows x ~4 MFLOP for forward
and backward, plus validation) and Adam streams ~1 TB of weights, gradients and moments (42,500
fold-steps x 0.89 M parameters x 28 bytes). Even at the theoretical FP32 peak of two 2 GHz AVX2 cores
(2 x 2 GHz x 32 FLOP/cycle = 128 GFLOP/s) the matmuls alone take 47 s, however the loop is written;
benchmarks/bench_train.py measures this floor (the same matmuls and Adam updates on preallocated
tensors) beside the trainer. The speed-up over the baseline's loop is the overhead on top of that
floor (DataLoader, per-step Python, unfused Adam, test sets every epoch). Stacking the 7 ablation
subsets removes their per-step overhead but not their arithmetic: together they hold ~4x the full
subset's weights (each modality's layers are in 4 of the 7), and every step writes each weight's
gradient and streams its Adam state, so they cost ~4x the full subset's time, not 7x.

Extensions: rows with y = -1 are unused; rows with fold -1 train in every fold and are never
validated (pseudo-labels); `sample_weight` scales each row's loss (batch loss = sum_i w_i * loss_i / B,
so weight 1 everywhere is the baseline's mean); rows with NaN valence add CE only.
The baseline's loop shape (DataLoader, per-step Python, every test set each epoch) lives outside the
package, in benchmarks/baseline_loop.py, for the speed benchmark and the equivalence test.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch

from pipeline import interrupts
from pipeline.config import FusionParams
from pipeline.models.fusion import AttentionFusion, SubsetFusion
from pipeline.progress import Progress, progress
from pipeline.training.cv import (
    CVResult,
    TestPrediction,
    TestSet,
    fold_figures,
    mean_figures,
    predict_chunks,
)
from pipeline.training.folds import CVInputs, CVJob, fold_seed, label_arrays
from pipeline.training.runtime import autocast, available_cores, shard_map, training_runtime

CURVE_KEYS = {"val_f1": "f1_weighted", "val_mse": "valence_mse", "val_combined": "combined",
              "val_selection": "selection"}  # curve name -> fold_figures key


@dataclass(frozen=True)
class FusionRun:
    """A fusion cross-validation's settings: the train.fusion params plus what a run decides."""
    params: FusionParams = field(default_factory=FusionParams)
    n_classes: int = field(kw_only=True)  # the run's label set's size
    ce_weight: float = 1.0
    mse_weight: float = 1.0
    device: str = "cpu"              # train.device
    threads: int = 0                 # cores (0 = every core): on CPU the folds train in that many shards side by
                                     # side, each on one torch thread (benchmarks/bench_train.py: at batch-32 shapes
                                     # one thread per shard beats threads inside a matmul); results do not depend on it


# ---------------------------------------------------------------- inputs

@dataclass
class _Inputs:
    xs: list[torch.Tensor]       # per modality (N, d_m)
    present: torch.Tensor        # (N, M) bool


def model_inputs(X: Mapping[str, np.ndarray], present: Mapping[str, np.ndarray] | None,
            modalities: tuple[str, ...], device: str) -> _Inputs:
    n = len(X[modalities[0]])
    xs, masks = [], []
    for m in modalities:
        x = np.asarray(X[m], dtype=np.float32)
        p = np.ones(n, dtype=bool) if present is None or m not in present else np.asarray(present[m], dtype=bool)
        if x.shape[0] != n or p.shape != (n,):
            raise ValueError(f"modality {m!r}: {x.shape[0]} rows and presence {p.shape}, expected {n}")
        bad = p & ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise ValueError(f"modality {m!r}: {int(bad.sum())} rows marked present hold NaN/inf")
        xs.append(torch.from_numpy(np.where(p[:, None], x, 0.0).astype(np.float32)).to(device))
        masks.append(p)
    return _Inputs(xs, torch.from_numpy(np.stack(masks, axis=1)).to(device))


@dataclass
class _Targets:
    y: torch.Tensor      # (N,) long, -1 = unused
    v: torch.Tensor      # (N,) float, NaN replaced by 0
    has_v: torch.Tensor  # (N,) float 0/1
    w: torch.Tensor      # (N,) float loss weight


def targets(y, v, w, device: str) -> _Targets:
    """Tensors of label_arrays' y, v (NaN allowed) and w."""
    has_v = np.isfinite(v)
    as_t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return _Targets(as_t(y, torch.long), as_t(np.where(has_v, v, 0.0), torch.float32),
                    as_t(has_v, torch.float32), as_t(w, torch.float32))


# ---------------------------------------------------------------- model and optimiser

def build_model(dims, run: FusionRun, seed: int, n_models: int | None) -> AttentionFusion:
    """The initial model(s) for `seed`, without touching torch's global RNG state."""
    p = run.params
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AttentionFusion(dims, run.n_classes, p.hidden, p.dropout, p.attention_norm, n_models)
    return model.to(run.device)


class _FoldAdam:
    """Adam for the stacked model with per-fold state: every fold has its own moments and step count, and a
    fold without a batch at some step is skipped, exactly as if it trained alone. The update is torch's fused
    Adam kernel, the one torch.optim.Adam(fused=True) calls; calling it directly saves the optimiser's
    per-tensor bookkeeping on every step.

    Consecutive folds at the same step count update together, as one slice of each stacked weight, where
    that gives every fold the bytes it gets alone: the kernel runs vector instructions over each tensor and
    a scalar loop over its last numel % (vector width) elements, which round differently, so a weight whose
    per-fold size is not a multiple of `VECTOR_SPAN` (the widest vector, AVX-512's 16 floats, with room to
    spare) updates fold by fold."""

    BETAS, EPS = (0.9, 0.999), 1e-8
    VECTOR_SPAN = 64

    def __init__(self, model: SubsetFusion, params: FusionParams):
        weights = [p.detach() for p in model.parameters()]  # what the kernel updates in place
        self.lr, self.weight_decay = params.lr, params.weight_decay
        self.counts = [0] * model.n_models  # each fold's steps taken
        self.stackable = [p[0].numel() % self.VECTOR_SPAN == 0 for p in weights]
        self.state = [weights, [torch.zeros_like(p) for p in weights], [torch.zeros_like(p) for p in weights]]
        self.plans: dict[tuple, tuple[list, list[list[torch.Tensor]]]] = {}
        self.step_values = torch.arange(1025, dtype=torch.float32, device=weights[0].device)  # the kernel's step counts

    def step(self, grads: list[torch.Tensor], active: list[bool]) -> None:
        """One update from the parameters' gradients (in parameters() order), for the active folds."""
        on = [k for k, a in enumerate(active) if a]
        for k in on:
            self.counts[k] += 1
        runs = self._runs(on)
        pieces, state = self._plan(runs)
        steps = [self._step_value(self.counts[folds.start]) for folds in runs]
        torch._fused_adam_(state[0], [grads[i] if piece is None else grads[i][piece] for i, piece, _ in pieces],
                           state[1], state[2], [], [steps[r] for _, _, r in pieces], lr=self.lr,
                           beta1=self.BETAS[0], beta2=self.BETAS[1], weight_decay=self.weight_decay, eps=self.EPS,
                           amsgrad=False, maximize=False)

    def _step_value(self, count: int) -> torch.Tensor:
        """count as the 0-d float tensor the kernel reads: a view of a table, not a new tensor every step."""
        if count >= len(self.step_values):
            self.step_values = torch.arange(2 * count, dtype=torch.float32, device=self.step_values.device)
        return self.step_values[count]

    def _plan(self, runs: list[slice]) -> tuple[list, list[list[torch.Tensor]]]:
        """For these runs of folds: (weight index, its slice or fold (None: the whole tensor), run index) per
        tensor the kernel updates, and the weights', first and second moments' views in that order."""
        key = tuple((r.start, r.stop) for r in runs)
        if key not in self.plans:
            everything = len(runs) == 1 and runs[0] == slice(0, len(self.counts))
            pieces = [(i, None if everything and stackable else piece, r)
                      for r, folds in enumerate(runs) for i, stackable in enumerate(self.stackable)
                      for piece in ([folds] if stackable else range(folds.start, folds.stop))]
            state = [[t[i] if piece is None else t[i][piece] for i, piece, _ in pieces] for t in self.state]
            self.plans[key] = pieces, state
        return self.plans[key]

    def _runs(self, on: list[int]) -> list[slice]:
        """The active folds as runs of consecutive folds at the same step count."""
        runs: list[slice] = []
        for k in on:
            last = runs[-1] if runs else None
            if last is not None and last.stop == k and self.counts[k] == self.counts[last.start]:
                runs[-1] = slice(last.start, k + 1)
            else:
                runs.append(slice(k, k + 1))
        return runs


# ---------------------------------------------------------------- the batched trainer

@dataclass
class _Epoch:
    """One epoch's row order for every fold, padded to a common number of steps. Targets are gathered once
    per epoch (a few numbers a row); features are gathered per step into the same (K, B, d) buffers, so an
    epoch never copies the feature tables (K copies of the training rows, new memory every epoch)."""
    rows: torch.Tensor            # (steps, K*B): step s's rows, fold-major
    present: torch.Tensor         # (K, S*B, M)
    y: torch.Tensor               # (K, S*B)
    v: torch.Tensor
    has_v: torch.Tensor
    coef: torch.Tensor            # loss weight / real batch size; 0 on padding
    active: list[list[bool]]      # [step][fold]: the fold has a batch at this step
    steps: int

    def batch(self, s: int, b: int, data: _Inputs, buffers: list[torch.Tensor]):
        sl = slice(s * b, (s + 1) * b)
        xs = [torch.index_select(x, 0, self.rows[s], out=buf).view(len(self.y), b, -1)
              for x, buf in zip(data.xs, buffers)]
        return xs, self.present[:, sl], self.y[:, sl], self.v[:, sl], self.has_v[:, sl], self.coef[:, sl]


def _row_order(train: list[torch.Tensor], gens: list[torch.Generator], batch: int):
    """Each fold's shuffled training rows (the baseline's SubsetRandomSampler order), padded by
    repeating a training row to a common length; returns (rows (K, S*B), valid, steps)."""
    steps = max(math.ceil(len(t) / batch) for t in train)
    rows = torch.stack([t[:1].expand(steps * batch).clone() for t in train])
    valid = torch.zeros(rows.shape, dtype=torch.bool)
    for k, (t, g) in enumerate(zip(train, gens)):
        rows[k, :len(t)] = t[torch.randperm(len(t), generator=g)]
        valid[k, :len(t)] = True
    return rows, valid, steps


def _epoch(train, gens, data: _Inputs, tg: _Targets, batch: int) -> _Epoch:
    rows, valid, steps = _row_order(train, gens, batch)
    k = len(train)
    real = valid.view(k, steps, batch).sum(-1, keepdim=True)                 # real rows per step
    coef = (valid.view(k, steps, batch) / real.clamp(min=1)).view(k, -1) * tg.w.cpu()[rows]
    active = (real.squeeze(-1) > 0).T.tolist()
    rows = rows.to(tg.y.device)
    by_step = rows.view(k, steps, batch).transpose(0, 1).reshape(steps, k * batch)
    return _Epoch(by_step, data.present[rows], tg.y[rows], tg.v[rows], tg.has_v[rows], coef.to(tg.y.device), active,
                  steps)


def _step_gradients(model: SubsetFusion, xs, present, y, v, has_v, coef, run: FusionRun):
    """One training step's loss per fold and subset, (K, S), and every parameter's gradient (`SubsetFusion.backward`).
    The loss is the sum over rows of coef * (ce_w * CE + mse_w * has_v * squared error), in fp32."""
    tape: list = []
    with torch.no_grad(), autocast(run.params.precision, run.device):
        out = model(xs, present, tape)
        logits, valence = out.logits.float(), out.valence.float()                 # (K, S, B, C), (K, S, B)
        log_p = torch.log_softmax(logits, dim=-1)
        target = y.view(y.shape[0], 1, -1, 1).expand(*valence.shape, 1)
        error = (valence - v.unsqueeze(1)) * has_v.unsqueeze(1)
        weight = coef.unsqueeze(1)
        loss = (weight * (run.ce_weight * -log_p.gather(-1, target).squeeze(-1) + run.mse_weight * error.square())).sum(dim=-1)
        d_logits = log_p.exp_().scatter_add_(-1, target, torch.full_like(target, -1, dtype=log_p.dtype))  # softmax - one-hot
        d_logits *= (run.ce_weight * weight).unsqueeze(-1)
        grads = model.backward(tape, d_logits, 2 * run.mse_weight * weight * error)
    return loss, grads


def _train_epoch(model, opt: _FoldAdam, epoch: _Epoch, data: _Inputs, run: FusionRun) -> np.ndarray:
    """One epoch for every fold; returns each fold's and subset's mean batch loss, (K, S)."""
    model.train()
    b = run.params.batch_size
    total = torch.zeros(len(epoch.y), len(model.uses), device=run.device)
    buffers = [x.new_empty(len(epoch.y) * b, x.shape[1]) for x in data.xs]  # each step's features, overwritten
    for s in range(epoch.steps):
        interrupts.check()   # a fold shard in a thread (where the OS does not fork) sees a Ctrl-C only through this flag
        loss, grads = _step_gradients(model, *epoch.batch(s, b, data, buffers), run)
        opt.step(grads, epoch.active[s])
        total += loss
    n_steps = torch.tensor(epoch.active, dtype=torch.float32).sum(0).clamp(min=1)
    return (total.cpu() / n_steps.unsqueeze(1)).numpy()


@dataclass
class _ValSets:
    rows: list[np.ndarray]       # per fold: validation row ids
    xs: list[torch.Tensor]       # per modality (K, Vmax, d), padded with row 0
    present: torch.Tensor        # (K, Vmax, M)
    y: list[np.ndarray]
    v: list[np.ndarray]          # NaN = no valence


def _val_sets(data: _Inputs, y, v, val_rows: list[np.ndarray]) -> _ValSets:
    vmax = max(len(r) for r in val_rows)
    pad = torch.tensor(np.stack([np.pad(r, (0, vmax - len(r))) for r in val_rows]), device=data.present.device)
    v = np.full(len(y), np.nan) if v is None else np.asarray(v, dtype=np.float64)
    return _ValSets(val_rows, [x[pad] for x in data.xs], data.present[pad],
                    [np.asarray(y)[r] for r in val_rows], [v[r] for r in val_rows])


class _BestTracker:
    """Per fold of one subset: the first epoch with the highest selection metric, its val outputs and weights."""

    def __init__(self, model: SubsetFusion, s: int):
        self.s, k = s, model.n_models
        self.score = np.full(k, -np.inf)
        self.epoch = np.full(k, -1)
        self.figures: list[dict] = [{} for _ in range(k)]
        self.outputs: list[tuple[np.ndarray, np.ndarray] | None] = [None] * k
        self.weights = model.subset_state(s)

    @staticmethod
    def join(pieces: list[_BestTracker]) -> _BestTracker:
        """One tracker over the folds of consecutive fold shards' trackers (of the same subset)."""
        out = pieces[0]
        out.score, out.epoch = np.concatenate([t.score for t in pieces]), np.concatenate([t.epoch for t in pieces])
        out.figures, out.outputs = [f for t in pieces for f in t.figures], [o for t in pieces for o in t.outputs]
        out.weights = {name: torch.cat([t.weights[name] for t in pieces]) for name in out.weights}
        return out

    def update(self, model: SubsetFusion, epoch: int, figures: list[dict],
               outputs: list[tuple[np.ndarray, np.ndarray]]) -> None:
        better = [f["selection"] > s for f, s in zip(figures, self.score)]
        if not any(better):
            return
        folds = torch.tensor(np.flatnonzero(better), device=next(iter(self.weights.values())).device)
        for name, value in model.subset_state(self.s).items():
            self.weights[name][folds] = value[folds]
        for k in np.flatnonzero(better):
            self.score[k], self.epoch[k], self.figures[k], self.outputs[k] = \
                figures[k]["selection"], epoch, figures[k], outputs[k]


def _validate(model: SubsetFusion, val: _ValSets) -> list[tuple[list[dict], list[tuple[np.ndarray, np.ndarray]]]]:
    """Per subset: its validation figures and outputs, per fold."""
    model.eval()
    with torch.inference_mode():
        out = model(val.xs, val.present)
    logits, vhat = out.logits.float().cpu().numpy(), out.valence.float().cpu().numpy()
    per_subset = []
    for s in range(logits.shape[1]):
        outputs = [(logits[k, s, :len(r)], vhat[k, s, :len(r)]) for k, r in enumerate(val.rows)]
        per_subset.append(([fold_figures(val.y[k], val.v[k], lo, vh) for k, (lo, vh) in enumerate(outputs)], outputs))
    return per_subset


def _predict_stacked(model: AttentionFusion, data: _Inputs) -> tuple[np.ndarray, np.ndarray]:
    """Every fold's outputs on every row of `data`: (K, n, C) logits and (K, n) valence."""
    model.eval()
    k = model.n_models
    with torch.inference_mode():
        out = model([x.expand(k, -1, -1) for x in data.xs], data.present.expand(k, -1, -1))
    return out.logits.float().cpu().numpy(), out.valence.float().cpu().numpy()


def cross_validate(jobs: list[CVJob], run: FusionRun) -> list[CVResult]:
    """K-fold CV of AttentionFusion for each job, over the modalities of its X (in X's key order). Jobs on
    the same rows, folds and seed (ablation subsets of one corpus) train together as one SubsetFusion."""
    results: list[CVResult | None] = [None] * len(jobs)
    for group in job_groups(jobs):
        for i, result in zip(group, _cross_validate([jobs[i] for i in group], run)):
            results[i] = result
    return results


def job_groups(jobs: list[CVJob]) -> list[list[int]]:
    """Jobs that can share every batch: same seed, folds, targets and weights, the same features and
    presence for the modalities they share, and modalities in one order (each subset's dropout draws)."""
    groups: list[list[int]] = []
    for i, job in enumerate(jobs):
        home = next((g for g in groups
                     if all(_compatible(jobs[j], job) for j in g) and _ordered([jobs[j] for j in g] + [job])), None)
        if home is None:
            groups.append([i])
        else:
            home.append(i)
    return groups


def _compatible(a: CVJob, b: CVJob) -> bool:
    same = lambda x, y: x is y or np.array_equal(x, y, equal_nan=True)  # noqa: E731
    ya, va, wa = label_arrays(a.y, a.v, a.sample_weight)
    yb, vb, wb = label_arrays(b.y, b.v, b.sample_weight)
    return a.seed == b.seed and len(ya) == len(yb) and same(np.asarray(a.folds), np.asarray(b.folds)) \
        and same(ya, yb) and same(va, vb) and same(wa, wb) \
        and all(same(a.X[m], b.X[m]) and same(_present(a, m), _present(b, m)) for m in set(a.X) & set(b.X))


def _present(job: CVJob, m: str) -> np.ndarray:
    n = len(job.X[m])
    return np.ones(n, dtype=bool) if job.present is None or m not in job.present else np.asarray(job.present[m], bool)


def _ordered(jobs: list[CVJob]) -> bool:
    order = list(dict.fromkeys(m for job in jobs for m in job.X))
    return all(list(job.X) == sorted(job.X, key=order.index) for job in jobs)


def _cross_validate(jobs: list[CVJob], run: FusionRun) -> list[CVResult]:
    inputs = [job.inputs() for job in jobs]
    a, p = inputs[0], run.params
    k = len(a.splits)
    order = tuple(dict.fromkeys(m for job in jobs for m in job.X))
    reader = {m: next(job for job in jobs if m in job.X) for m in order}
    shards = fold_shards(k, run)
    with training_runtime(1 if len(shards) > 1 else run.threads):
        data = model_inputs({m: reader[m].X[m] for m in order}, {m: _present(reader[m], m) for m in order}, order,
                            run.device)
        tg = targets(a.y, a.v, a.w, run.device)
        models = [build_model([job.X[m].shape[1] for m in job.X], run, job.seed, k) for job in jobs]
        model = SubsetFusion.from_models(models, [[order.index(m) for m in job.X] for job in jobs],
                                         [x.shape[1] for x in data.xs]).to(run.device)
        model.seed_dropout([int(np.random.SeedSequence([job.seed, k]).generate_state(1)[0]) for job in jobs])
        with progress(p.epochs * len(shards), f"train seed {jobs[0].seed}, {len(jobs)} subset(s)",
                      "fold-shard epoch") as bar:
            parts = shard_map(lambda folds, tick: _fit(model.take_folds(folds), folds, data, tg, a, jobs[0].seed, run, tick),
                              shards, bar)
        trackers = [_BestTracker.join(pieces) for pieces in zip(*(t for t, _ in parts))]
        curves = [{name: np.concatenate([c[name] for c in pieces]) for name in pieces[0]}
                  for pieces in zip(*(c for _, c in parts))]
        results = []
        for job, ai, ensemble, tracker, curve in zip(jobs, inputs, models, trackers, curves):
            ensemble.load_state_dict(tracker.weights)
            tests = {name: predict_folds(ensemble, ts, ai.modalities, run.device) for name, ts in job.tests.items()}
            result = _result("fusion", ai, tracker, curve, tests, run.n_classes)
            result.ensemble = ensemble.cpu().eval()  # checkpoints and `mer predict` read CPU weights
            results.append(result)
    return results


def fold_shards(k: int, run: FusionRun) -> list[range]:
    """The folds in consecutive shards trained side by side (`shard_map`): one shard per core on CPU,
    one on a GPU (not train.group_by's speaker groups, which folds must not split). A shard holds at least two
    folds: torch runs a lone fold's batched matmuls through another kernel, whose last bits differ, and the
    results must not depend on the sharding."""
    cores = run.threads if run.threads > 0 else available_cores()
    n = min(cores, max(1, k // 2)) if torch.device(run.device).type == "cpu" else 1
    return [range(g[0], g[-1] + 1) for g in np.array_split(np.arange(k), n)]


def _fit(model: SubsetFusion, folds: range, data, tg, a: CVInputs, seed: int, run: FusionRun, bar: Progress):
    """Every subset's best epochs (trackers) and training curves for `folds` (the model's stacked folds)."""
    p, splits, n_subsets = run.params, [a.splits[k] for k in folds], len(model.uses)
    train = [torch.as_tensor(tr) for tr, _ in splits]
    gens = [torch.Generator().manual_seed(fold_seed(seed, k)) for k in folds]
    val = _val_sets(data, a.y, a.v, [va for _, va in splits])
    opt, trackers = _FoldAdam(model, p), [_BestTracker(model, s) for s in range(n_subsets)]
    curves = [{name: np.zeros((len(splits), p.epochs))
               for name in ("train_loss", "val_f1", "val_mse", "val_combined", "val_selection")} for _ in trackers]
    for epoch in range(p.epochs):
        losses = _train_epoch(model, opt, _epoch(train, gens, data, tg, p.batch_size), data, run)
        for s, (tracker, curve, (figures, outputs)) in enumerate(zip(trackers, curves, _validate(model, val))):
            curve["train_loss"][:, epoch] = losses[:, s]
            for k, f in enumerate(figures):
                for name, key in CURVE_KEYS.items():
                    curve[name][k, epoch] = f[key]
            tracker.update(model, epoch, figures, outputs)
        bar.update()
    return trackers, curves


def predict_folds(model: AttentionFusion, ts: TestSet, modalities: tuple[str, ...], device: str = "cpu") -> TestPrediction:
    """The stacked fold ensemble's prediction on a test set (scored when it has labels)."""
    missing = [m for m in modalities if m not in ts.X]
    if missing:
        raise ValueError(f"test set lacks modalities {missing}")
    return predict_chunks(ts, lambda X, present: _predict_stacked(model, model_inputs(X, present, modalities, device)))


def _result(model_name, a: CVInputs, tracker: _BestTracker, curves, test_preds, n_classes) -> CVResult:
    oof_logits = np.full((len(a.y), n_classes), np.nan)
    oof_val = np.full(len(a.y), np.nan)
    for (_, val_rows), out in zip(a.splits, tracker.outputs):
        if out is not None:
            oof_logits[val_rows], oof_val[val_rows] = out
    return CVResult(model_name, a.modalities, a.folds, oof_logits, oof_val, tracker.figures,
                    mean_figures(tracker.figures), test_preds, tracker.epoch, curves, time.perf_counter() - a.start)
