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
every Linear is one batched matmul: a fold ensemble, as checkpoints and predictions use it.
`SubsetFusion` trains several such ensembles (ablation subsets) at once, and gives each one back.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.labels import VALENCE_RANGE


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


def _linear(n_models: int | None, d_in: int, d_out: int) -> nn.Module:
    return nn.Linear(d_in, d_out) if n_models is None else StackedLinear(n_models, d_in, d_out)


def _mlp(n_models: int | None, d_in: int, hidden: Sequence[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for d_out in hidden:
        layers += [_linear(n_models, d_in, d_out), nn.ReLU(), nn.Dropout(dropout)]
        d_in = d_out
    return nn.Sequential(*layers)


class AttentionFusion(nn.Module):
    def __init__(self, dims: Sequence[int], n_classes: int = 6, hidden: Sequence[int] = (256, 128),
                 dropout: float = 0.3, attention_norm: str = "none", n_models: int | None = None):
        super().__init__()
        if not dims:
            raise ValueError("AttentionFusion needs at least one modality")
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


class SubsetFusion(nn.Module):
    """S stacked AttentionFusion models (K folds each) over subsets of M modalities, trained as one.

    Built from the S models (`from_models`), it computes exactly what they compute on the same rows, with
    fewer and larger matmuls: a modality's first layer is one (B, d) @ (d, n*hidden) matmul for the n
    subsets that read it (their inputs are the same rows), later layers are batched over (K, subset).
    A subset's attention input has zero blocks for the modalities it lacks, multiplied by zero weight
    rows that stay zero in training (no gradient, no weight decay on 0), and those modalities' scores
    are masked. `subset_state(s)` gives subset s's weights back as an AttentionFusion state dict.
    Dropout draws each subset's masks from its own generator in the order its model would (its
    modalities' layers in order, then attention), so the masks are the ones it would draw alone.
    """

    def __init__(self, uses: Sequence[Sequence[int]], dims: Sequence[int], n_classes: int, hidden: Sequence[int],
                 dropout: float, attention_norm: str, n_models: int):
        super().__init__()
        self.uses = [tuple(u) for u in uses]                    # per subset: its modalities, in global order
        self.dims, self.hidden, self.n_classes = tuple(dims), tuple(hidden), n_classes
        self.dropout, self.attention_norm, self.n_models = dropout, attention_norm, n_models
        k, s, m, width = n_models, len(self.uses), len(self.dims), self.hidden[-1]
        self.readers = [[i for i, u in enumerate(self.uses) if j in u] for j in range(m)]  # subsets per modality
        zeros = lambda *shape: nn.Parameter(torch.zeros(*shape))  # noqa: E731 - filled by from_models
        self.enc_w, self.enc_b = nn.ParameterList(), nn.ParameterList()
        for j, d in enumerate(self.dims):
            n, d_in = len(self.readers[j]), d
            for i, d_out in enumerate(self.hidden):
                first = i == 0
                self.enc_w.append(zeros(k, d_in, n * d_out) if first else zeros(k, n, d_in, d_out))
                self.enc_b.append(zeros(k, 1, n * d_out) if first else zeros(k, n, 1, d_out))
                d_in = d_out
        self.att_w, self.att_b = nn.ParameterList(), nn.ParameterList()
        d_in = width * m
        for d_out in self.hidden:
            self.att_w.append(zeros(k, s, d_in, d_out))
            self.att_b.append(zeros(k, s, 1, d_out))
            d_in = d_out
        self.heads = nn.ParameterDict({name: zeros(k, s, width + 1, n) for name, n in
                                       (("fc_att", m), ("fc_emotion", n_classes), ("fc_valence", 1))})
        self.mask = nn.Buffer(torch.tensor([[j in u for j in range(m)] for u in self.uses]), persistent=False)
        self.rngs: list[np.random.Generator] | None = None
        self.drawn_folds, self.kept_folds = n_models, slice(None)  # the generators' folds, these trained (take_folds)

    @classmethod
    def from_models(cls, models: Sequence[AttentionFusion], uses: Sequence[Sequence[int]],
                    dims: Sequence[int]) -> SubsetFusion:
        first = models[0]
        out = cls(uses, dims, first.n_classes, first.hidden, first.dropout, first.attention_norm, first.n_models)
        with torch.no_grad():
            for s in range(len(models)):
                for name, value in out._layout(s):
                    value.copy_(models[s].state_dict()[name])
        return out

    def _layout(self, s: int) -> list[tuple[str, torch.Tensor]]:
        """(AttentionFusion state-dict name, view of this model's weights holding it) for subset s."""
        width, views = self.hidden[-1], []
        layer = 0
        for j in range(len(self.dims)):
            for i in range(len(self.hidden)):
                w, b = self.enc_w[layer], self.enc_b[layer]
                layer += 1
                if s not in self.readers[j]:
                    continue
                r, name = self.readers[j].index(s), f"encoders.{self.uses[s].index(j)}.{3 * i}"
                if i == 0:
                    cols = slice(r * self.hidden[0], (r + 1) * self.hidden[0])
                    views += [(f"{name}.weight", w[:, :, cols]), (f"{name}.bias", b[:, :, cols])]
                else:
                    views += [(f"{name}.weight", w[:, r]), (f"{name}.bias", b[:, r])]
        for i, (w, b) in enumerate(zip(self.att_w, self.att_b)):
            if i == 0:  # the row blocks of the subset's modalities, in its order
                rows = torch.cat([torch.arange(j * width, (j + 1) * width) for j in self.uses[s]])
                views.append(("attention_mlp.0.weight", _RowView(w, s, rows)))
            else:
                views.append((f"attention_mlp.{3 * i}.weight", w[:, s]))
            views.append((f"attention_mlp.{3 * i}.bias", b[:, s]))
        for name, p in self.heads.items():
            cols = list(self.uses[s]) if name == "fc_att" else slice(None)
            views += [(f"{name}.weight", _ColView(p, s, cols, width)), (f"{name}.bias", _ColView(p, s, cols, width, bias=True))]
        return views

    def subset_state(self, s: int) -> dict[str, torch.Tensor]:
        """Subset s's weights as the state dict of AttentionFusion(its dims, n_models=K) (copies)."""
        return {name: view.clone() if isinstance(view, torch.Tensor) else view.get() for name, view in self._layout(s)}

    def seed_dropout(self, seeds: Sequence[int] | None) -> None:
        """One numpy Generator per subset, seeded as its own model's (None: torch's RNG)."""
        self.rngs = None if seeds is None else [np.random.default_rng(seed) for seed in seeds]

    def take_folds(self, folds: range) -> SubsetFusion:
        """These consecutive folds only, trained beside the others: copies of their weights, and copies of the
        dropout generators that skip the other folds' draws (so these folds get the masks they get in one model)."""
        kept = slice(folds.start, folds.stop)
        out = SubsetFusion(self.uses, self.dims, self.n_classes, self.hidden, self.dropout, self.attention_norm,
                           len(folds))
        with torch.no_grad():
            for mine, theirs in zip(self.parameters(), out.parameters()):
                theirs.copy_(mine[kept])
        out.rngs = copy.deepcopy(self.rngs)
        out.drawn_folds, out.kept_folds = self.n_models, kept
        return out.to(self.mask.device)

    def _draw_step(self, batch: int) -> None:
        """This training step's dropout multipliers (1/(1-p) or 0) for every subset and kept fold. A subset's
        masks for the step are consecutive in its generator (its modalities' layers in order, then attention;
        each layer's block fold by fold), so `_drop` takes them block by block (`_cursor`) as its model would
        draw them. A shard skips the other folds' words (`skip_draws`) instead of drawing them."""
        first, last = self.kept_folds.indices(self.drawn_folds)[:2]
        blocks = [[w * batch for _ in u for w in self.hidden] + [w * batch for w in self.hidden] for u in self.uses]
        counts = [(last - first) * sum(b) for b in blocks]
        keep = np.empty(sum(counts), dtype=bool)
        self._cursor = np.cumsum([0, *counts[:-1]]).tolist()
        for rng, at, n, sizes in zip(self.rngs, self._cursor, counts, blocks):
            if first == 0 and last == self.drawn_folds:
                keep_draws(rng, n, self.dropout, out=keep[at:at + n])
                continue
            for size in sizes:  # per fold
                skip_draws(rng, first * size)
                keep_draws(rng, (last - first) * size, self.dropout, out=keep[at:at + (last - first) * size])
                skip_draws(rng, (self.drawn_folds - last) * size)
                at += (last - first) * size
        scaled = np.empty(len(keep), dtype=np.float32)  # 1/(1-p) or 0, in numpy's uint8 x float32 loop (3x torch's)
        np.multiply(keep.view(np.uint8), np.float32(1.0 / (1.0 - self.dropout)), out=scaled)
        self._step_masks = torch.from_numpy(scaled)

    def _drop(self, x: torch.Tensor, subsets: Sequence[int], dim: int) -> torch.Tensor:
        """Dropout on x whose `dim` holds `subsets` side by side (first layer: concatenated features).
        On CPU the masks come from numpy (`_draw_step`): torch's CPU bernoulli_ costs ~15 ns per element,
        which made dropout a sixth of a small-batch training step."""
        if not self.training or self.dropout == 0:
            return x
        if self.rngs is None or not x.is_cpu:
            return F.dropout(x, self.dropout, training=True)
        width = x.shape[-1] // len(subsets) if dim == -1 else x.shape[-1]
        k, b = x.shape[0], x.shape[-2]
        size = k * b * width
        blocks = []
        for s in subsets:
            at = self._cursor[s]
            self._cursor[s] = at + size
            blocks.append(self._step_masks[at:at + size].view(k, b, width))
        keep = torch.cat(blocks, dim=-1) if dim == -1 else torch.stack(blocks, dim=dim)
        return x * (keep if keep.dtype == x.dtype else keep.to(x.dtype))

    def forward(self, xs: Sequence[torch.Tensor], present: torch.Tensor) -> FusionOutput:
        """xs[j]: (K, B, d_j) per modality; present (K, B, M) bool. Outputs carry (K, S, B, ...)."""
        k, b = present.shape[:2]
        s_all, width = len(self.uses), self.hidden[-1]
        if self.training and self.dropout > 0 and self.rngs is not None and present.is_cpu:
            self._draw_step(b)
        full = bool(present.all())  # nothing to mask: skip the masking ops (most training batches)
        padded, layer = [], 0
        for j, x in enumerate(xs):
            absent = ~present[..., j]
            x = x if full else x.masked_fill(absent.unsqueeze(-1), 0.0)
            h = torch.relu(torch.baddbmm(self.enc_b[layer], x, self.enc_w[layer]))
            h = self._drop(h, self.readers[j], -1)
            n = len(self.readers[j])
            h = h.view(k, b, n, -1).transpose(1, 2)                      # (K, n, B, hidden)
            for i in range(1, len(self.hidden)):
                h = self._drop(torch.relu(torch.matmul(h, self.enc_w[layer + i]) + self.enc_b[layer + i]),
                               self.readers[j], 1)
            layer += len(self.hidden)
            h = h if full else h.masked_fill(absent[:, None, :, None], 0.0)
            if n == s_all:  # every subset reads modality j: nothing to pad
                padded.append(h)
                continue
            slot = torch.tensor([self.readers[j].index(s) if s in self.readers[j] else n for s in range(s_all)],
                                device=h.device)
            padded.append(torch.cat([h, h.new_zeros(k, 1, b, width)], dim=1).index_select(1, slot))
        hs = torch.stack(padded, dim=-2)                                   # (K, S, B, M, hidden)
        a = hs.flatten(-2)
        for w, bias in zip(self.att_w, self.att_b):
            a = self._drop(torch.relu(torch.matmul(a, w) + bias), range(s_all), 1)
        scores = self._head("fc_att", a)
        if full and bool(self.mask.all()):
            weights = torch.softmax(scores, dim=-1) if self.attention_norm == "softmax" else scores
        else:
            seen = present.unsqueeze(1) & self.mask[None, :, None, :]     # (K, S, B, M)
            if self.attention_norm == "softmax":
                hide = ~seen & seen.any(dim=-1, keepdim=True)
                scores = torch.softmax(scores.masked_fill(hide, float("-inf")), dim=-1)
            weights = scores.masked_fill(~seen, 0.0)
        fused = (hs * weights.unsqueeze(-1)).sum(dim=-2)
        valence = self._head("fc_valence", fused).squeeze(-1)
        if not self.training:
            valence = valence.clamp(*VALENCE_RANGE)
        return FusionOutput(self._head("fc_emotion", fused), valence, weights)

    def _head(self, name: str, x: torch.Tensor) -> torch.Tensor:
        p = self.heads[name]  # (K, S, width + 1, n): weight rows, then the bias row
        return torch.matmul(x, p[:, :, :-1]) + p[:, :, -1:]


def _whole_words(rng: np.random.Generator, n: int) -> bool:
    """Whether n float32 draws from rng are n // 2 whole 64-bit PCG64 outputs: n even and no half word buffered."""
    return n % 2 == 0 and isinstance(rng.bit_generator, np.random.PCG64) and not rng.bit_generator.state["has_uint32"]


def skip_draws(rng: np.random.Generator, n: int) -> None:
    """Move rng past n float32 draws: PCG64 jumps (advance) when they are whole 64-bit words, else it draws."""
    if not _whole_words(rng, n):
        rng.random(n, dtype=np.float32)
    elif n:
        rng.bit_generator.advance(n // 2)


def keep_draws(rng: np.random.Generator, n: int, p: float, out: np.ndarray) -> None:
    """out[:] = rng.random(n, dtype=np.float32) >= p, the same draws at a third of the cost: numpy's float32
    uniform is (u >> 8) * 2**-24 for the generator's next 32-bit word u, low half of each 64-bit output first,
    so comparing the raw words with p's threshold decides the same. Where half a word is (or would be left)
    buffered in the generator, which the raw words skip, the floats are drawn."""
    if not _whole_words(rng, n):
        np.greater_equal(rng.random(n, dtype=np.float32), p, out=out)
        return
    threshold = math.ceil(float(np.float32(p)) * 2**24) << 8  # (u >> 8) * 2**-24 >= p  <=>  u >= threshold
    np.greater_equal(rng.bit_generator.random_raw(n // 2).view(np.uint32), np.uint32(threshold), out=out)


class _RowView:
    """Rows `rows` of w[:, s] (an attention first layer's blocks), gathered and written back."""

    def __init__(self, w: torch.Tensor, s: int, rows: torch.Tensor):
        self.w, self.s, self.rows = w, s, rows

    def get(self) -> torch.Tensor:
        return self.w[:, self.s].index_select(1, self.rows.to(self.w.device))

    def copy_(self, value: torch.Tensor) -> None:
        self.w[:, self.s, self.rows.to(self.w.device)] = value


class _ColView:
    """A head's weight (rows :-1) or bias (last row) of subset s, columns `cols`, gathered and written back."""

    def __init__(self, p: torch.Tensor, s: int, cols, width: int, bias: bool = False):
        self.p, self.s, self.cols, self.rows = p, s, cols, slice(width, width + 1) if bias else slice(0, width)

    def get(self) -> torch.Tensor:
        return self.p[:, self.s, self.rows][..., self.cols].clone()

    def copy_(self, value: torch.Tensor) -> None:
        block = self.p[:, self.s, self.rows]  # a view: writing it writes the parameter
        if isinstance(self.cols, slice):
            block.copy_(value)
        else:
            for i, c in enumerate(self.cols):
                block[..., c] = value[..., i]
