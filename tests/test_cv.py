"""pipeline.training.folds, fusion and lgbm: folds, determinism, fusion gain, batched == per-fold reference."""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline import interrupts
from pipeline.config import FusionParams, LightGBMParams
from pipeline.models.fusion import SubsetFusion, keep_threshold, keep_units
from pipeline.store.parts import parallel_map
from pipeline.training import fusion, lgbm
from pipeline.training.cv import TestSet
from pipeline.training.folds import CVJob, fold_indices, fold_seed, make_folds
from pipeline.training.fusion import FusionRun, build_model, fold_shards
from pipeline.training.runtime import FORKS, shard_map, training_runtime

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
from baseline_loop import train_fold_reference  # noqa: E402  (the baseline's loop shape, outside the package)

FAST = FusionRun(FusionParams(epochs=12, batch_size=32, hidden=(32, 16)), n_classes=6, threads=1)


def cross_validate(X, present, y, v, folds, run: FusionRun = FAST, tests=None, sample_weight=None, seed: int = 0):
    """One fusion cross-validation."""
    return fusion.cross_validate([CVJob(X, present, y, v, folds, tests or {}, sample_weight, seed)], run)[0]


def with_params(run: FusionRun = FAST, **changes) -> FusionRun:
    return dataclasses.replace(run, params=dataclasses.replace(run.params, **changes))


def synthetic(n: int, seed: int = 0, dim: int = 16, noise: float = 0.6):
    """6 classes; audio sees class // 3, text sees class % 3: each alone is partial, together complete.

    Valence follows class // 3 (audio's half), so it is learnable too.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    proto_a, proto_t = rng.normal(size=(2, dim)), rng.normal(size=(3, dim))
    X = {"audio": (proto_a[y // 3] + noise * rng.normal(size=(n, dim))).astype(np.float32),
         "text": (proto_t[y % 3] + noise * rng.normal(size=(n, dim))).astype(np.float32)}
    v = np.where(y // 3 == 0, -2.0, 2.0) + 0.3 * rng.normal(size=n)
    return X, y, v


# ---------------------------------------------------------------- folds

def test_folds_are_stratified_and_seeded():
    y = np.repeat(np.arange(6), [50, 40, 30, 20, 12, 7])
    folds = make_folds(len(y), 5, seed=3, y=y)
    for c in range(6):
        counts = np.bincount(folds[y == c], minlength=5)
        assert counts.max() - counts.min() <= 1
    assert np.array_equal(folds, make_folds(len(y), 5, seed=3, y=y))
    assert not np.array_equal(folds, make_folds(len(y), 5, seed=4, y=y))


def test_unlabelled_rows_get_no_fold():
    y = np.array([0, 1, -1] * 20)
    folds = make_folds(len(y), 5, seed=0, y=y)
    assert (folds[y < 0] == -1).all() and (folds[y >= 0] >= 0).all()


def test_grouped_folds_never_share_a_group():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 23, 400)
    y = rng.integers(0, 6, 400)
    folds = make_folds(400, 5, seed=0, y=y, groups=groups)
    for g in np.unique(groups):
        assert len(np.unique(folds[groups == g])) == 1
    for train, val in fold_indices(y, folds):
        assert not set(groups[train]) & set(groups[val])


# ---------------------------------------------------------------- the batched trainer

def test_same_seed_same_result():
    X, y, v = synthetic(200)
    folds = make_folds(200, 5, 0, y)
    a = cross_validate(X, None, y, v, folds, with_params(FAST, epochs=3))
    b = cross_validate(X, None, y, v, folds, with_params(FAST, epochs=3))
    assert a.cv == b.cv and np.array_equal(a.oof_logits, b.oof_logits)
    c = cross_validate(X, None, y, v, folds, with_params(FAST, epochs=3), seed=1)
    assert not np.array_equal(a.oof_logits, c.oof_logits)


def test_result_shapes_and_test_averaging():
    X, y, v = synthetic(150)
    Xt, yt, vt = synthetic(40, seed=1)
    folds = make_folds(150, 5, 0, y)
    res = cross_validate(X, None, y, v, folds, with_params(FAST, epochs=3), {"t": TestSet(Xt, None, yt, vt)})
    assert res.oof_logits.shape == (150, 6) and np.isfinite(res.oof_logits).all()
    assert res.curves["val_selection"].shape == (5, 3) and len(res.fold_scores) == 5
    assert res.cv["combined"] == pytest.approx(np.mean([f["combined"] for f in res.fold_scores]))
    for k, e in enumerate(res.best_epoch):
        assert res.curves["val_selection"][k, e] == res.curves["val_selection"][k].max()
        assert np.argmax(res.curves["val_selection"][k]) == e  # first epoch on ties
    t = res.tests["t"]
    assert t.fold_logits.shape == (5, 40, 6)
    assert np.allclose(t.logits, t.fold_logits.mean(0)) and np.allclose(t.valence, t.fold_valence.mean(0))
    assert set(t.scores) >= {"f1_weighted", "valence_mse", "combined"}


def test_fusion_beats_each_single_modality():
    X, y, v = synthetic(600, noise=0.8)
    folds = make_folds(600, 5, 0, y)
    cfg = with_params(FAST, epochs=15)
    fused = cross_validate(X, None, y, v, folds, cfg).cv["f1_weighted"]
    for m in X:
        single = cross_validate({m: X[m]}, None, y, v, folds, cfg).cv["f1_weighted"]
        assert fused > single + 0.15, (m, fused, single)


def test_missing_valence_and_train_only_rows():
    X, y, v = synthetic(160)
    v[::3] = np.nan
    folds = make_folds(160, 4, 0, y)
    folds[:20] = -1  # e.g. pseudo-labels: train in every fold, never validated
    res = cross_validate(X, None, y, v, folds, with_params(FAST, epochs=2), sample_weight=np.full(160, 0.5))
    assert np.isnan(res.oof_logits[:20]).all() and np.isfinite(res.oof_logits[20:]).all()
    assert np.isfinite(res.cv["valence_mse"])


def test_without_valence_selection_is_f1():
    X, y, _ = synthetic(120)
    res = cross_validate(X, None, y, None, make_folds(120, 3, 0, y), with_params(FAST, epochs=3))
    assert np.isnan(res.cv["valence_mse"]) and np.isnan(res.cv["combined"])
    assert np.array_equal(res.curves["val_selection"], res.curves["val_f1"])


def test_batched_trainer_equals_per_fold_reference():
    """Dropout 0 removes the only RNG the two loops do not share: the batched all-folds trainer must
    then reproduce K separate DataLoader trainings step for step (uneven folds, so some folds run out
    of batches first; absent modalities; NaN valence; sample weights)."""
    X, y, v = synthetic(90, dim=6)
    present = {"audio": np.arange(90) % 7 != 0, "text": np.ones(90, dtype=bool)}
    X["audio"][~present["audio"]] = np.nan
    v[::5] = np.nan
    w = np.random.default_rng(1).uniform(0.5, 1.5, 90)
    folds = np.repeat([0, 1, 2, 3], [10, 20, 30, 30])
    cfg = FusionRun(FusionParams(epochs=4, batch_size=16, dropout=0.0, hidden=(8, 4), attention_norm="softmax"),
                    n_classes=6, threads=1)
    Xt, _, _ = synthetic(7, seed=2, dim=6)
    tests = {"t": TestSet(Xt)}
    res = cross_validate(X, present, y, v, folds, cfg, tests, sample_weight=w)
    init = build_model([6, 6], cfg, 0, 4)
    for k, (train, val) in enumerate(fold_indices(y, folds)):
        ref = train_fold_reference(X, present, y, v, train, val, cfg, tests, model=init.member(k),
                                   generator=torch.Generator().manual_seed(fold_seed(0, k)), sample_weight=w)
        ref_curve = [h["selection"] for h in ref["history"]]
        assert np.allclose(res.curves["val_selection"][k], ref_curve, atol=1e-4)
        assert res.best_epoch[k] == ref["best_epoch"]
        assert np.allclose(res.oof_logits[val], ref["val_logits"], atol=1e-4)
        assert np.allclose(res.tests["t"].fold_logits[k], ref["tests"]["t"][0], atol=1e-4)


def test_stacked_ablation_subsets_equal_each_subset_trained_alone():
    """The 7 ablation subsets (and a second seed) trained together give each one's results alone: dropout on,
    absent rows, softmax attention; one stacked model per seed, since a seed's batches are its own."""
    X, y, v = synthetic(120, dim=6)
    X["visual"] = X["audio"][:, ::-1] + X["text"]
    present = {"audio": np.arange(120) % 5 != 0, "visual": np.arange(120) % 7 != 0, "text": np.ones(120, bool)}
    folds = make_folds(120, 3, 0, y)
    Xt, _, _ = synthetic(9, seed=2, dim=6)
    tests = {"t": TestSet({**Xt, "visual": Xt["audio"]})}
    run = with_params(FAST, epochs=5, batch_size=16, dropout=0.3, hidden=(8, 4), attention_norm="softmax")
    subsets = [("audio",), ("visual",), ("text",), ("audio", "visual"), ("audio", "text"), ("visual", "text"),
               ("audio", "visual", "text")]
    jobs = [CVJob({m: X[m] for m in sub}, {m: present[m] for m in sub}, y, v, folds,
                  {"t": TestSet({m: tests["t"].X[m] for m in sub})}, seed=seed)
            for seed in (0, 1) for sub in subsets]
    assert fusion.job_groups(jobs) == [list(range(7)), list(range(7, 14))]
    stacked = fusion.cross_validate(jobs, run)
    for job, together in zip(jobs, stacked):
        alone = fusion.cross_validate([job], run)[0]
        assert np.array_equal(together.best_epoch, alone.best_epoch), job.X.keys()
        assert np.allclose(together.oof_logits, alone.oof_logits, atol=1e-5)
        assert np.allclose(together.oof_valence, alone.oof_valence, atol=1e-5)
        assert np.allclose(together.curves["val_selection"], alone.curves["val_selection"], atol=1e-5)
        assert np.allclose(together.curves["train_loss"], alone.curves["train_loss"], atol=1e-5)
        assert np.allclose(together.tests["t"].fold_logits, alone.tests["t"].fold_logits, atol=1e-5)


@pytest.mark.parametrize("p", [0.3, 0.5, 0.0001, 0.9999])
def test_dropout_keeps_units_at_rate_one_minus_p(p):
    """keep_units decides each unit on its own 16-bit word: kept at or above ceil(p * 2**16), so the kept share is
    1 - p (to 2**-16) and decisions are independent: the share kept among the units after a kept one is 1 - p too."""
    assert keep_threshold(0.5) == 2**15 and keep_threshold(0.3) == 19661
    n = 2_000_003
    keep = keep_units(np.random.default_rng(7), n, p)
    assert keep.shape == (n,) and keep.dtype == bool
    sigma = np.sqrt(p * (1 - p) / n)
    assert abs(keep.mean() - (1 - p)) < 5 * sigma + 2**-16
    after = keep[1:][keep[:-1]]  # mostly units of the same 64-bit output
    assert abs(after.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / len(after)) + 1 / len(after) + 2**-16
    assert np.array_equal(keep_units(np.random.default_rng(7), 5, p), keep[:5])  # a short draw: the same first units


def test_each_folds_dropout_masks_come_from_its_own_generator():
    """A step's masks for subset s and fold k are keep_units from the generator seeded (seed_s, k), its blocks in
    the subset model's order (its modalities' layers, then attention); a shard of folds draws the same masks."""
    uses, dims, hidden, batch = [(0,), (0, 1)], [5, 7], (8, 4), 6
    model = SubsetFusion(uses, dims, n_classes=3, hidden=hidden, dropout=0.3, attention_norm="none", n_models=4)
    model.seed_dropout([21, 22])
    shard = model.take_folds(range(1, 3))
    model._draw_step(batch)
    shard._draw_step(batch)
    for s, (seed, u) in enumerate(zip((21, 22), uses)):
        blocks = model.masks.blocks[s]
        assert len(blocks) == len(hidden) * (len(u) + 1)
        for k in range(4):
            units = keep_units(np.random.default_rng([seed, k]), sum(block[k].size for block in blocks), 0.3)
            assert np.array_equal(np.concatenate([block[k].ravel() for block in blocks]), units), (s, k)
        for mine, theirs in zip(shard.masks.blocks[s], blocks):
            assert np.array_equal(mine, theirs[1:3])
    assert np.array_equal(model.masks.caps, np.where(model.masks.keep, np.finfo(np.float32).max, 0))


def test_fold_adam_gives_each_fold_torch_adam_alone():
    """The stacked update (consecutive folds at one step count as one slice; weights whose per-fold size is
    not a multiple of the vector span fold by fold) equals torch.optim.Adam(fused=True) on each fold's own
    copy, to the last bit, with folds sitting out steps."""
    uses, dims, k = [[0], [0, 1]], [5, 7], 4
    model = SubsetFusion(uses, dims, n_classes=3, hidden=(8, 4), dropout=0.0, attention_norm="none", n_models=k)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(generator=torch.Generator().manual_seed(p.numel()))
    assert not all(p[0].numel() % fusion._FoldAdam.VECTOR_SPAN == 0 for p in model.parameters())
    alone = [[p.detach()[f].clone().requires_grad_() for p in model.parameters()] for f in range(k)]
    torch_adams = [torch.optim.Adam(ps, lr=0.01, weight_decay=1e-3, fused=True) for ps in alone]
    ours = fusion._FoldAdam(model, FusionParams(lr=0.01, weight_decay=1e-3))
    rng = np.random.default_rng(0)
    for step in range(12):
        active = [True] * k if step < 3 else list(rng.random(k) < 0.7)
        grads = [torch.randn(p.shape, generator=torch.Generator().manual_seed(100 * step + i))
                 for i, p in enumerate(model.parameters())]
        ours.step(grads, active)
        for f in np.flatnonzero(active):
            for p, g in zip(alone[f], grads):
                p.grad = g[f].clone()
            torch_adams[f].step()
    for f in range(k):
        for mine, theirs in zip(model.parameters(), alone[f]):
            assert torch.equal(mine.detach()[f], theirs.detach())


def test_jobs_on_other_rows_train_apart():
    X, y, v = synthetic(60, dim=4)
    folds = make_folds(60, 3, 0, y)
    a = CVJob({"audio": X["audio"]}, None, y, v, folds)
    shifted = CVJob({"text": X["text"]}, None, y, v, np.roll(folds, 1))
    other_audio = CVJob({"audio": X["audio"] + 1}, None, y, v, folds)
    assert fusion.job_groups([a, shifted, other_audio, CVJob(X, None, y, v, folds)]) == [[0, 3], [1], [2]]


# ---------------------------------------------------------------- LightGBM

def test_lightgbm_on_the_same_folds():
    X, y, v = synthetic(300)
    Xt, yt, vt = synthetic(30, seed=1)
    folds = make_folds(300, 5, 0, y)
    present = {"audio": np.arange(300) % 5 != 0}
    cfg = lgbm.LightGBMRun(LightGBMParams(n_estimators=30, num_leaves=7), n_classes=6, n_jobs=1)
    job = CVJob(X, present, y, v, folds, {"t": TestSet(Xt, None, yt, vt)})
    res = lgbm.cross_validate([job], cfg)[0]
    assert res.model == "lightgbm" and np.array_equal(res.folds, folds) and len(res.fold_scores) == 5
    assert np.isfinite(res.oof_logits).all() and np.allclose(res.oof_probs.sum(1), 1)
    assert res.cv["f1_weighted"] > 0.5 and res.tests["t"].fold_logits.shape == (5, 30, 6)
    again = lgbm.cross_validate([job], cfg)[0]
    assert np.array_equal(res.oof_logits, again.oof_logits)  # deterministic


# ---------------------------------------------------------------- precision, device, threads

def test_bf16_figures_stay_within_the_seed_spread_of_fp32():
    """bf16 autocast changes the arithmetic (other logits) but not what the model learns: its CV
    figures lie within the spread of fp32 over seeds."""
    X, y, v = synthetic(400, noise=1.0)
    folds = make_folds(400, 5, 0, y)
    fp32 = [cross_validate(X, None, y, v, folds, FAST, seed=s) for s in range(3)]
    bf16 = cross_validate(X, None, y, v, folds, with_params(FAST, precision="bf16"))
    assert not np.array_equal(bf16.oof_logits, fp32[0].oof_logits)  # bf16 did run
    for key in ("f1_weighted", "combined"):
        runs = np.array([r.cv[key] for r in fp32])
        spread = runs.max() - runs.min()
        assert runs.min() - spread <= bf16.cv[key] <= runs.max() + spread, (key, runs, bf16.cv[key])


@pytest.mark.parametrize("shape", [{}, {"batch_size": 15, "hidden": (7, 3)}], ids=["even", "odd-blocks"])
def test_results_do_not_depend_on_the_thread_count(shape):
    """Threads are fold shards trained side by side (6 folds: one shard; 3 + 3; 2 + 2 + 2), with dropout on; a
    shard skips the other folds' dropout draws, by jumping the generator or (odd blocks: 15 x 7 floats a fold)
    by drawing them."""
    X, y, v = synthetic(240)
    folds = make_folds(240, 6, 0, y)
    threads = (1, 2, 3)
    assert [[len(g) for g in fold_shards(6, dataclasses.replace(FAST, threads=t))] for t in threads] == \
        [[6], [3, 3], [2, 2, 2]]
    assert [len(g) for g in fold_shards(5, dataclasses.replace(FAST, threads=8))] == [3, 2]  # never a lone fold
    assert FAST.params.dropout > 0
    tests = {"test": TestSet({m: x[:40] for m, x in X.items()}, None, y[:40], v[:40])}
    runs = [cross_validate(X, None, y, v, folds, dataclasses.replace(with_params(FAST, epochs=3, **shape), threads=t), tests)
            for t in threads]
    for other in runs[1:]:
        assert np.array_equal(runs[0].oof_logits, other.oof_logits)
        assert np.array_equal(runs[0].best_epoch, other.best_epoch)
        assert np.array_equal(runs[0].curves["val_f1"], other.curves["val_f1"])
        for name, test in runs[0].tests.items():
            assert np.array_equal(test.logits, other.tests[name].logits)


class CountingBar:
    def __init__(self):
        self.n = 0

    def update(self, n: int = 1) -> None:
        self.n += n


def test_training_flushes_subnormal_floats_in_its_shards():
    """Inside training_runtime a product below float32's normal range is 0, in the fold shards' threads and
    child processes too (they inherit it); outside, it is the subnormal again."""
    tiny = torch.tensor([1e-20])
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush subnormal floats")
    assert (tiny * tiny).item() > 0
    with training_runtime(1):
        assert (tiny * tiny).item() == 0
        assert parallel_map(lambda _: (tiny * tiny).item(), [0, 1], threads=2) == [0.0, 0.0]
        assert shard_map(lambda _, bar: (tiny * tiny).item(), [0, 1, 2], CountingBar()) == [0.0, 0.0, 0.0]
    assert (tiny * tiny).item() > 0


@pytest.mark.skipif(not FORKS, reason="fold shards train in threads where the OS does not fork")
def test_fold_shards_train_in_child_processes_that_report_progress():
    def shard(item, bar):
        for _ in range(3):
            bar.update()
        return item, os.getpid(), torch.get_num_threads()

    bar = CountingBar()
    with training_runtime(1):
        out = shard_map(shard, [0, 1, 2], bar)
    assert [item for item, _, _ in out] == [0, 1, 2] and bar.n == 9
    pids = [pid for _, pid, _ in out]
    assert pids[0] == os.getpid() and len(set(pids)) == 3
    assert all(threads == 1 for _, _, threads in out)   # the children keep the runtime's one torch thread
    for pid in pids[1:]:   # reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


@pytest.mark.skipif(not FORKS, reason="fold shards train in threads where the OS does not fork")
def test_a_child_shards_error_is_raised_here_and_a_failed_parent_kills_its_children(tmp_path):
    def broken(item, bar):
        if item == 2:
            raise ValueError(f"shard {item} broke")
        return item

    with pytest.raises(ValueError, match="shard 2 broke"):
        shard_map(broken, [0, 1, 2], CountingBar())

    def stopped(item, bar):
        if item == 1:
            raise interrupts.Interrupted(signal.SIGTERM)   # a signal that reached the child
        return item

    with pytest.raises(interrupts.Interrupted) as caught:
        shard_map(stopped, [0, 1], CountingBar())
    assert caught.value.signum == signal.SIGTERM

    def parent_fails(item, bar):
        if item == 0:
            time.sleep(0.5)
            raise ValueError("the parent's shard broke")
        (tmp_path / f"{os.getpid()}.started").touch()
        time.sleep(30)
        (tmp_path / f"{os.getpid()}.finished").touch()

    with pytest.raises(ValueError, match="the parent's shard broke"):
        shard_map(parent_fails, [0, 1], CountingBar())
    assert len(list(tmp_path.glob("*.started"))) == 1 and not list(tmp_path.glob("*.finished"))  # killed, not awaited


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_gives_the_cpu_figures():
    X, y, v = synthetic(300)
    Xt, yt, vt = synthetic(40, seed=1)
    folds = make_folds(300, 5, 0, y)
    cfg = with_params(FAST, dropout=0.0)  # dropout masks come from different generators on CUDA
    tests = {"t": TestSet(Xt, None, yt, vt)}
    cpu = cross_validate(X, None, y, v, folds, cfg, tests)
    gpu = cross_validate(X, None, y, v, folds, with_params(cfg, device="cuda"), tests)
    for key in ("f1_weighted", "valence_mse"):
        assert gpu.cv[key] == pytest.approx(cpu.cv[key], abs=0.05), key
    assert np.allclose(gpu.tests["t"].logits, cpu.tests["t"].logits, atol=0.05)
