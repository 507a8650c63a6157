"""The MER 2023 baseline's attention fusion (`main-release.py` L248-290, protocol §5.2).

Per modality m: h_m = MLP_m(x_m), MLP = [Linear-ReLU-Dropout] x len(hidden). Attention: the same MLP
shape over concat(h_1..h_M), then Linear(hidden[-1], M) gives one score per modality. fused = sum_m
alpha_m h_m; heads: Linear(hidden[-1], n_classes) for emotion logits and Linear(hidden[-1], 1) for valence.

Differences from the baseline code, all deliberate:
- any number of modalities M >= 1 (the baseline duplicated a feature to fill its three slots);
- a presence mask: an absent modality's h_m is replaced by 0 everywhere (attention input and fused
  sum) and its weight is 0; under softmax its score is -inf, so weights renormalise over present ones;
- `attention_norm="none"` (the default) reproduces the code, which never applies the paper's softmax;
- no `.squeeze()` on the fused vector, so batch size 1 works;
- in eval mode, valence is clipped to the label range (labels.VALENCE_RANGE; training keeps the plain MSE).

`n_models=K` builds K independent copies with stacked weights; inputs then carry a leading K axis and
every Linear is one batched matmul. Cross-validation trains all folds at once this way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from pipeline.labels import VALENCE_RANGE

ATTENTION_NORMS = ("none", "softmax")


class FusionOutput(NamedTuple):
    logits: torch.Tensor   # (..., B, n_classes)
    valence: torch.Tensor  # (..., B)
    weights: torch.Tensor  # (..., B, M) attention weights; 0 for absent modalities


class StackedLinear(nn.Module):
    """K independent Linear layers on a (K, B, in) input in one batched matmul.

    Weights are stored (K, in, out) so the forward is a plain baddbmm; each copy is initialised like
    nn.Linear (uniform in +-1/sqrt(in) for weight and bias).
    """

    def __init__(self, n_models: int, d_in: int, d_out: int):
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)
        self.weight = nn.Parameter(torch.empty(n_models, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_models, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class Dropout(nn.Module):
    """Inverted dropout; with `rng` (a numpy Generator) set, the CPU mask comes from numpy.

    torch's CPU bernoulli_ costs ~15 ns per element, which made dropout a sixth of a small-batch
    training step; numpy's float32 generator is ~4x cheaper and is seeded independently of torch.
    """

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.rng: np.random.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.rng is None or not x.is_cpu:
            return F.dropout(x, self.p, training=True)
        keep = torch.from_numpy(self.rng.random(x.shape, dtype=np.float32) >= self.p)
        return x * keep.to(x.dtype).mul_(1.0 / (1.0 - self.p))


def _linear(n_models: int | None, d_in: int, d_out: int) -> nn.Module:
    return nn.Linear(d_in, d_out) if n_models is None else StackedLinear(n_models, d_in, d_out)


def _mlp(n_models: int | None, d_in: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_out in hidden:
        layers += [_linear(n_models, d_in, d_out), nn.ReLU(), Dropout(dropout)]
        d_in = d_out
    return nn.Sequential(*layers)


class AttentionFusion(nn.Module):
    def __init__(self, dims: Sequence[int], n_classes: int = 6, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.3, attention_norm: str = "none", n_models: int | None = None):
        super().__init__()
        if not dims:
            raise ValueError("AttentionFusion needs at least one modality")
        if attention_norm not in ATTENTION_NORMS:
            raise ValueError(f"attention_norm must be one of {ATTENTION_NORMS}, got {attention_norm!r}")
        self.dims, self.hidden = tuple(dims), tuple(hidden)
        self.n_classes, self.dropout, self.attention_norm, self.n_models = n_classes, dropout, attention_norm, n_models
        width, m = self.hidden[-1], len(self.dims)
        self.encoders = nn.ModuleList(_mlp(n_models, d, self.hidden, dropout) for d in self.dims)
        self.attention_mlp = _mlp(n_models, width * m, self.hidden, dropout)
        self.fc_att = _linear(n_models, width, m)
        self.fc_emotion = _linear(n_models, width, n_classes)
        self.fc_valence = _linear(n_models, width, 1)

    def forward(self, xs: Sequence[torch.Tensor], present: torch.Tensor | None = None) -> FusionOutput:
        """xs[m]: (B, d_m), or (K, B, d_m) when n_models=K; present: (..., B, M) bool, None = all present."""
        if len(xs) != len(self.dims):
            raise ValueError(f"expected {len(self.dims)} modalities, got {len(xs)}")
        if present is not None and bool(present.all()):
            present = None  # nothing to mask: skip the masking ops (most training batches)
        hs = [self._encode(m, x, None if present is None else present[..., m]) for m, x in enumerate(xs)]
        weights = self._attend(hs, present)
        fused = (torch.stack(hs, dim=-2) * weights.unsqueeze(-1)).sum(dim=-2)
        valence = self.fc_valence(fused).squeeze(-1)
        if not self.training:  # predictions stay in the label range; training keeps the unclipped MSE gradient
            valence = valence.clamp(*VALENCE_RANGE)
        return FusionOutput(self.fc_emotion(fused), valence, weights)

    def _encode(self, m: int, x: torch.Tensor, present_m: torch.Tensor | None) -> torch.Tensor:
        if present_m is None:
            return self.encoders[m](x)
        # Absent rows may hold NaN: zero them first, or 0 * NaN would poison the weight gradient.
        absent = ~present_m.unsqueeze(-1)
        return self.encoders[m](x.masked_fill(absent, 0.0)).masked_fill(absent, 0.0)

    def _attend(self, hs: list[torch.Tensor], present: torch.Tensor | None) -> torch.Tensor:
        scores = self.fc_att(self.attention_mlp(torch.cat(hs, dim=-1)))
        if present is None:
            return torch.softmax(scores, dim=-1) if self.attention_norm == "softmax" else scores
        if self.attention_norm == "softmax":
            # Rows with nothing present keep finite scores (no NaN); their weights are zeroed below.
            hide = ~present & present.any(dim=-1, keepdim=True)
            scores = torch.softmax(scores.masked_fill(hide, float("-inf")), dim=-1)
        return scores.masked_fill(~present, 0.0)

    def architecture(self) -> dict:
        """The constructor's arguments: what a checkpoint records to rebuild the model."""
        return {"dims": list(self.dims), "n_classes": self.n_classes, "hidden": list(self.hidden),
                "dropout": self.dropout, "attention_norm": self.attention_norm, "n_models": self.n_models}

    def seed_dropout(self, seed: int | None) -> None:
        """Draw dropout masks from one numpy Generator seeded with `seed` (None: torch's global RNG)."""
        rng = None if seed is None else np.random.default_rng(seed)
        for module in self.modules():
            if isinstance(module, Dropout):
                module.rng = rng

    def member(self, k: int) -> AttentionFusion:
        """Copy k of a stacked model as a plain AttentionFusion (same weights, eval mode)."""
        if self.n_models is None:
            raise ValueError("member() needs a stacked model (n_models=K)")
        plain = AttentionFusion(self.dims, self.n_classes, self.hidden, self.dropout, self.attention_norm)
        stacked = dict(self.named_modules())
        with torch.no_grad():
            for name, module in plain.named_modules():
                if isinstance(module, nn.Linear):
                    module.weight.copy_(stacked[name].weight[k].T)
                    module.bias.copy_(stacked[name].bias[k, 0])
        return plain.eval()
