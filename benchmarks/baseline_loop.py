"""The MER 2023 baseline's training loop shape (`main-release.py` L149-220, L590-660), re-implemented.

Per fold: a fresh single model, a DataLoader over the fold's training rows (SubsetRandomSampler,
batch 32), torch.optim.Adam, one Python step per batch (forward, loss, zero_grad, backward, step); after
every epoch the validation fold and every test set are run through DataLoaders, and the epoch with the
best validation F1 - 0.25 MSE keeps its outputs. Not part of the pipeline: the speed benchmark measures
the trainer against it, and tests/test_cv.py checks that the stacked trainer reproduces it step for step.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, SubsetRandomSampler, TensorDataset

from pipeline.models.fusion import AttentionFusion
from pipeline.training.cv import TestSet, fold_figures
from pipeline.training.folds import label_arrays
from pipeline.training.fusion import FusionRun, build_model, model_inputs, targets


def train_fold_reference(X: Mapping[str, np.ndarray], present, y, v, train_rows: np.ndarray, val_rows: np.ndarray,
                         run: FusionRun, tests: Mapping[str, TestSet] | None = None,
                         model: AttentionFusion | None = None, generator: torch.Generator | None = None,
                         sample_weight=None, seed: int = 0) -> dict:
    """One fold trained like `main-release.py`; returns best_epoch, the per-epoch val figures, and the
    best epoch's val and test outputs."""
    cfg, modalities = run.params, tuple(X)
    device = run.device
    data = model_inputs(X, present, modalities, device)
    tg = targets(*label_arrays(y, v, sample_weight), device)
    model = (model or build_model([x.shape[1] for x in data.xs], run, seed, None)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ds = TensorDataset(*data.xs, data.present, tg.y, tg.v, tg.has_v, tg.w)
    loader = DataLoader(ds, batch_size=cfg.batch_size, sampler=SubsetRandomSampler(train_rows, generator=generator))
    yv = np.asarray(y)[val_rows]
    vv = (np.full(len(y), np.nan) if v is None else np.asarray(v, dtype=np.float64))[val_rows]
    test_data = {name: model_inputs(ts.X, ts.present, modalities, device) for name, ts in (tests or {}).items()}
    best = {"selection": -np.inf, "best_epoch": -1}
    history = []
    for epoch in range(cfg.epochs):
        _train_epoch(model, opt, loader, run)
        logits, vhat = _predict(model, [x[val_rows] for x in data.xs], data.present[val_rows], cfg.batch_size)
        figures = fold_figures(yv, vv, logits, vhat)
        history.append(figures)
        test_out = {name: _predict(model, td.xs, td.present, cfg.batch_size) for name, td in test_data.items()}
        if figures["selection"] > best["selection"]:
            best = {"selection": figures["selection"], "best_epoch": epoch, "figures": figures,
                    "val_logits": logits, "val_valence": vhat, "tests": test_out}
    return best | {"history": history}


def _train_epoch(model: AttentionFusion, opt, loader: DataLoader, run: FusionRun) -> None:
    model.train()
    for *xs, pres, yb, vb, hb, wb in loader:
        out = model(xs, pres)
        ce = F.cross_entropy(out.logits, yb, reduction="none")
        se = (out.valence - vb).square() * hb
        loss = (wb * (run.ce_weight * ce + run.mse_weight * se)).sum() / len(yb)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _predict(model, xs, present, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    logits, vals = [], []
    with torch.no_grad():
        for *xb, pb in DataLoader(TensorDataset(*xs, present), batch_size=batch_size):
            out = model(xb, pb)
            logits.append(out.logits.cpu().numpy())
            vals.append(out.valence.cpu().numpy())
    return np.concatenate(logits), np.concatenate(vals)
