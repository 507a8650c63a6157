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
    Dropout draws each subset's masks for each fold from that fold's own generator, seeded by the subset's
    seed and the fold, so a fold's masks are the ones it draws alone, or beside any other folds.
    """

    def __init__(self, uses: Sequence[Sequence[int]], dims: Sequence[int], n_classes: int, hidden: Sequence[int],
                 dropout: float, attention_norm: str, n_models: int):
        super().__init__()
        self.uses = [tuple(u) for u in uses]                    # per subset: its modalities, in global order
        self.dims, self.hidden, self.n_classes = tuple(dims), tuple(hidden), n_classes
        self.dropout, self.attention_norm, self.n_models = dropout, attention_norm, n_models
        k, s, m, width = n_models, len(self.uses), len(self.dims), self.hidden[-1]
        self.readers = [[i for i, u in enumerate(self.uses) if j in u] for j in range(m)]  # subsets per modality
        self.complete = all(len(r) == s for r in self.readers)  # every subset reads every modality
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
        self.zero = nn.Buffer(torch.zeros(()), persistent=False)  # ReLU's bound; the beta=0 input of scaled products
        # per subset and modality: its block among all modalities' reader blocks, or the zero block after them
        starts = np.cumsum([0, *map(len, self.readers)]).tolist()
        self.blocks = nn.Buffer(torch.tensor([starts[j] + self.readers[j].index(i) if i in self.readers[j] else starts[-1]
                                              for i in range(s) for j in range(m)]), persistent=False)
        self.rngs: list[list[np.random.Generator]] | None = None  # per subset, per fold (`seed_dropout`)
        self.masks: _MaskLayout | None = None  # the step's dropout masks (`_draw_step`)
        self._weight_views: _Layers | None = None  # made once (`_weights`); the optimiser updates in place
        self.grads: list[torch.Tensor] | None = None  # `backward` writes every parameter's gradient here
        self._grad_views: _Layers | None = None

    def _apply(self, fn, recurse=True):
        self._weight_views = self.grads = self._grad_views = None  # .to() and the like give new storage
        return super()._apply(fn, recurse)

    def _layers(self, tensors: Sequence[torch.Tensor]) -> _Layers:
        """Tensors in parameters() order (the parameters, or their gradients) as the layers multiply them."""
        n_enc, n_att = len(self.enc_w), len(self.att_w)
        flat = [t.flatten(0, -3) for t in tensors]  # (K, [S or n,] in, out) -> (G, in, out)
        enc_w, enc_b, att_w, att_b = (flat[:n_enc], flat[n_enc:2 * n_enc], flat[2 * n_enc:2 * n_enc + n_att],
                                      flat[2 * n_enc + n_att:2 * (n_enc + n_att)])
        heads = {name: (p[:, :-1], p[:, -1:]) for name, p in zip(self.heads, flat[2 * (n_enc + n_att):])}
        return _Layers(list(zip(enc_w + att_w, enc_b + att_b)), heads)

    def _weights(self) -> _Layers:
        """The parameters as the layers multiply them: views made once, or afresh where autograd follows them."""
        if torch.is_grad_enabled():
            return self._layers(list(self.parameters()))
        if self._weight_views is None:
            self._weight_views = self._layers([p.detach() for p in self.parameters()])
        return self._weight_views

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
        """Per subset, one numpy Generator per fold, seeded by the subset's seed and the fold (None: torch's RNG)."""
        self.rngs = None if seeds is None else [[np.random.default_rng([seed, k]) for k in range(self.n_models)]
                                                for seed in seeds]

    def take_folds(self, folds: range) -> SubsetFusion:
        """These consecutive folds only, trained beside the others: copies of their weights and of their dropout
        generators (so these folds get the masks they get in one model)."""
        kept = slice(folds.start, folds.stop)
        out = SubsetFusion(self.uses, self.dims, self.n_classes, self.hidden, self.dropout, self.attention_norm,
                           len(folds))
        with torch.no_grad():
            for mine, theirs in zip(self.parameters(), out.parameters()):
                theirs.copy_(mine[kept])
        out.rngs = None if self.rngs is None else [copy.deepcopy(rngs[kept]) for rngs in self.rngs]
        return out.to(self.mask.device)

    def _draw_step(self, batch: int) -> None:
        """This training step's dropout caps (`_caps`: kept or dropped) for every subset and fold, written straight
        into the layouts the layers multiply by (`masks`). A fold's draws for the step come from its own generator,
        its subset's blocks in its model's order (its modalities' layers, then attention): one 16-bit word per
        unit (`unit_words`), a quarter of a raw 64-bit output, where numpy's float32 draw would take half."""
        if self.masks is None or self.masks.batch != batch:  # built once, overwritten every step (after its backward)
            self.masks = _MaskLayout(self, batch)
        threshold = keep_threshold(self.dropout)
        for rngs, blocks, spans, words in zip(self.rngs, self.masks.blocks, self.masks.spans, self.masks.words):
            units = unit_words(rngs, words)
            for block, (at, n) in zip(blocks, spans):
                np.greater_equal(units[:, at:at + n].reshape(block.shape), threshold, out=block)
        np.multiply(self.masks.keep.view(np.uint8), np.finfo(np.float32).max, out=self.masks.caps)

    def _caps(self, z: torch.Tensor, layer: int) -> torch.Tensor | None:
        """Dropout's bound on z, `layer`'s product (encoder layers as enc_w numbers them, then the attention layers), in
        z's shape: the largest float where a unit is kept, 0 where it is dropped, so clamping z to [0, cap] is ReLU and
        dropout in one pass (the kept units' 1/(1-p) is applied by the matmuls that read them: `_scale`); None outside
        training. On CPU the masks come from numpy (`_draw_step`): torch's CPU bernoulli_ costs ~15 ns per element,
        which made dropout a sixth of a small-batch training step; elsewhere they are what F.dropout draws."""
        if not self.training or self.dropout == 0:
            return None
        if self.rngs is None or not z.is_cpu:
            return torch.empty_like(z).bernoulli_(1 - self.dropout).mul_(torch.finfo(z.dtype).max)
        cap = self.masks.layers[layer].view(z.shape)
        return cap if cap.dtype == z.dtype else cap.to(z.dtype)

    def _scale(self) -> float:
        """What a matmul multiplies its product by where its input is a dropout output (left unscaled: `_caps`):
        1/(1-p) in training, else 1."""
        return 1.0 / (1.0 - self.dropout) if self.training and self.dropout > 0 else 1.0

    def _dense(self, x: torch.Tensor, layer: int, views: _Layers, tape: list | None, scale: float) -> torch.Tensor:
        """Linear (its product times `scale`), ReLU and dropout on x (G, B, in), G stacked copies: `layer`'s output
        (G, B, out), with its input and output on the tape."""
        w, bias = views.dense[layer]
        z = torch.baddbmm(bias, x, w, alpha=scale)
        cap = self._caps(z, layer)
        if cap is None:
            h = z.relu_()
        else:  # in place for the tape; autograd (tests) needs the product intact
            h = z.clamp_(self.zero, cap) if tape is not None else z.clamp(self.zero, cap)
        if tape is not None:
            tape.append((x, h))
        return h

    def forward(self, xs: Sequence[torch.Tensor], present: torch.Tensor, tape: list | None = None) -> FusionOutput:
        """xs[j]: (K, B, d_j) per modality; present (K, B, M) bool. Outputs carry (K, S, B, ...).
        `tape`: an empty list, filled with what `backward` reads (training steps). Stacked copies (folds, and
        a modality's readers or the subsets) run as one leading dimension: one batched matmul per layer."""
        k, b = present.shape[:2]
        s = len(self.uses)
        if self.training and self.dropout > 0 and self.rngs is not None and present.is_cpu:
            self._draw_step(b)
        full = bool(present.all())  # nothing to mask: skip the masking ops (most training batches)
        views, scale = self._weights(), self._scale()
        hs, layer = [], 0
        for j, x in enumerate(xs):
            n = len(self.readers[j])
            x = x if full else x.masked_fill(~present[..., j, None], 0.0)
            h = self._dense(x, layer, views, tape, 1.0)   # (K, B, n * hidden); no dropout on the features
            h = h if n == 1 else h.view(k, b, n, -1).transpose(1, 2).reshape(k * n, b, -1)
            for i in range(1, len(self.hidden)):
                h = self._dense(h, layer + i, views, tape, scale)
            layer += len(self.hidden)
            h = h.view(k, n, b, -1)
            hs.append(h if full else h.masked_fill(~present[:, None, :, j, None], 0.0))
        hs = self._gather(hs)                                              # (K, S, B, M, hidden)
        a = hs.view(k * s, b, -1)
        for i in range(len(self.att_w)):
            a = self._dense(a, len(self.enc_w) + i, views, tape, scale)
        scores = self._head("fc_att", a, views, scale).view(k, s, b, -1)
        seen = None if full and self.complete else present.unsqueeze(1) & self.mask[None, :, None, :]  # (K, S, B, M)
        if self.attention_norm == "softmax":  # rows with nothing seen keep finite scores (no NaN); zeroed below
            hide = None if seen is None else ~seen & seen.any(dim=-1, keepdim=True)
            scores = torch.softmax(scores if hide is None else scores.masked_fill(hide, float("-inf")), dim=-1)
        weights = scores if seen is None else scores.masked_fill(~seen, 0.0)
        fused = (hs * weights.unsqueeze(-1)).sum(dim=-2).view(k * s, b, -1)
        if tape is not None:
            tape.append(_Fused(present, full, hs, a, scores, seen, weights, fused))
        valence = self._head("fc_valence", fused, views, scale).view(k, s, b)
        if not self.training:
            valence = valence.clamp(*VALENCE_RANGE)
        return FusionOutput(self._head("fc_emotion", fused, views, scale).view(k, s, b, -1), valence, weights)

    def backward(self, tape: list, d_logits: torch.Tensor, d_valence: torch.Tensor) -> list[torch.Tensor]:
        """Every parameter's gradient (in parameters() order) of a loss whose gradients at the outputs of the
        forward that filled `tape` are d_logits (K, S, B, C) and d_valence (K, S, B): the forward's steps
        backwards, by hand. Autograd computes the same (tests/test_fusion.py), but its graph of more, smaller ops
        cost 5-7% of the trainer's time on a CPU (bench_train.py). The gradients are written into `grads`,
        buffers kept from step to step, which the next call overwrites."""
        end: _Fused = tape[-1]
        k, s, b, m, width = end.hs.shape
        views, grads, scale = self._weights(), self._gradients(d_logits.device.type), self._scale()
        d_fused = self._head_backward("fc_emotion", end.fused, d_logits.view(k * s, b, -1), views, grads, scale)
        d_fused += self._head_backward("fc_valence", end.fused, d_valence.view(k * s, b, 1), views, grads, scale)
        d_fused = d_fused.view(k, s, b, 1, width)
        d_hs = d_fused * end.weights.unsqueeze(-1)                                          # (K, S, B, M, hidden)
        d_weights = torch.bmm(end.hs.view(-1, m, width), d_fused.view(-1, width, 1)).view(k, s, b, m)
        if end.seen is not None:
            d_weights = d_weights.masked_fill(~end.seen, 0.0)
        if self.attention_norm == "softmax":  # softmax's gradient, from its output (0 where masked)
            d_weights = end.scores * (d_weights - (d_weights * end.scores).sum(dim=-1, keepdim=True))
        d_a = self._head_backward("fc_att", end.a, d_weights.view(k * s, b, m), views, grads, scale)
        n_enc = len(self.enc_w)
        for i in reversed(range(len(self.att_w))):
            d_a = self._dense_backward(tape[n_enc + i], d_a, n_enc + i, views, grads, scale)
        d_hs += d_a.view_as(d_hs)
        layer = n_enc
        for j, d_h in reversed(list(enumerate(self._gather_backward(d_hs)))):  # (K, n, B, hidden)
            n = d_h.shape[1]
            if not end.full:
                d_h = d_h.masked_fill(~end.present[:, None, :, j, None], 0.0)
            layer -= len(self.hidden)
            for i in reversed(range(1, len(self.hidden))):
                d_h = self._dense_backward(tape[layer + i], d_h, layer + i, views, grads, scale)
            d_h = d_h.view(k, b, -1) if n == 1 else d_h.view(k, n, b, -1).transpose(1, 2).reshape(k, b, -1)
            self._dense_backward(tape[layer], d_h, layer, views, grads, 1.0, inputs=False)
        return self.grads

    def _gradients(self, device: str) -> _Gradients:
        """The gradient buffers (`grads`) as the layers' gradients view them, and whether products go straight
        into them: not under autocast, whose bf16 products are stored as fp32 gradients."""
        if self.grads is None:
            self.grads = [torch.zeros_like(p) for p in self.parameters()]
            self._grad_views = self._layers(self.grads)
        return _Gradients(self._grad_views, not torch.is_autocast_enabled(device), self.zero)

    @staticmethod
    def _dense_backward(saved: tuple, d_h: torch.Tensor, layer: int, views: _Layers, grads: _Gradients, scale: float,
                        inputs: bool = True) -> torch.Tensor | None:
        """`_dense` backwards from its output's gradient (its shape, or (G, B, out) viewed otherwise): the weight's and
        bias's gradients into `grads`, and the input's gradient (G, B, in); `scale`: the forward's (its product's)."""
        x, h = saved
        d_z = torch.ops.aten.threshold_backward(d_h.to(h.dtype).reshape(h.shape), h, 0)  # h > 0: passed ReLU, kept
        g_w, g_b = grads.layers.dense[layer]
        grads.product(x.transpose(1, 2), d_z, scale, out=g_w)
        grads.store(g_b, torch.sum, d_z, dim=1, keepdim=True)
        return grads.product(d_z, views.dense[layer][0].transpose(1, 2), scale) if inputs else None

    @staticmethod
    def _head_backward(name: str, x: torch.Tensor, d_y: torch.Tensor, views: _Layers, grads: _Gradients,
                       scale: float) -> torch.Tensor:
        """`_head` backwards: its parameter's gradient into `grads`, and its input's gradient (G, B, width)."""
        g_w, g_b = grads.layers.heads[name]
        grads.product(x.transpose(1, 2), d_y, scale, out=g_w)
        grads.store(g_b, torch.sum, d_y, dim=1, keepdim=True)
        return grads.product(d_y, views.heads[name][0].transpose(1, 2), scale)

    def _gather(self, hs: list[torch.Tensor]) -> torch.Tensor:
        """Every subset's modality outputs side by side, (K, S, B, M, hidden), from each modality's (K, n, B, hidden)
        for its n readers: one gather of all the blocks, with a zero block for each modality a subset lacks."""
        k, _, b, width = hs[0].shape
        if self.complete:
            return torch.stack(hs, dim=-2)
        pool = torch.cat([*hs, hs[0].new_zeros(k, 1, b, width)], dim=1)
        picked = pool.index_select(1, self.blocks).view(k, len(self.uses), len(hs), b, width)
        return picked.transpose(2, 3).contiguous()

    def _gather_backward(self, d_hs: torch.Tensor) -> list[torch.Tensor]:
        """`_gather` backwards: each modality's (K, n, B, hidden) gradient for its n readers."""
        if self.complete:
            return list(d_hs.unbind(dim=-2))
        k, s, b, m, width = d_hs.shape
        sizes = [len(r) for r in self.readers]
        pool = d_hs.new_zeros(k, sum(sizes) + 1, b, width)  # every block once, and the zero block (dropped)
        pool.index_add_(1, self.blocks, d_hs.transpose(2, 3).reshape(k, s * m, b, width))
        return list(pool[:, :-1].split(sizes, dim=1))

    @staticmethod
    def _head(name: str, x: torch.Tensor, views: _Layers, scale: float) -> torch.Tensor:
        """x (K * S, B, width) through head `name`, its product times `scale`: (K * S, B, n)."""
        w, bias = views.heads[name]
        return torch.baddbmm(bias, x, w, alpha=scale)


class _Layers(NamedTuple):
    """A SubsetFusion's parameters, or their gradients, as its layers multiply them (views)."""
    dense: list[tuple[torch.Tensor, torch.Tensor]]       # per dense layer (enc_w's, then attention's): (G, in, out), (G, 1, out)
    heads: dict[str, tuple[torch.Tensor, torch.Tensor]]  # per head: weight (G, width, n), bias (G, 1, n)


class _Gradients(NamedTuple):
    """`SubsetFusion.backward`'s gradient buffers, viewed as the layers' gradients."""
    layers: _Layers
    direct: bool         # products go straight into the buffers (out=); else (autocast) computed, then stored as fp32
    zero: torch.Tensor   # the ignored input (beta=0) of a scaled product

    def product(self, a: torch.Tensor, b: torch.Tensor, scale: float, out: torch.Tensor | None = None) -> torch.Tensor:
        """scale * (a @ b), batched, the scale applied by the matmul (alpha); stored into `out` when given."""
        if out is not None and not self.direct:
            return out.copy_(self.product(a, b, scale))
        if scale == 1.0:
            return torch.bmm(a, b, out=out)
        return torch.baddbmm(self.zero, a, b, beta=0, alpha=scale, out=out)

    def store(self, out: torch.Tensor, op, *args, **kwargs) -> None:
        """op(*args, **kwargs) stored into `out`."""
        if self.direct:
            op(*args, **kwargs, out=out)
        else:
            out.copy_(op(*args, **kwargs))


class _Fused(NamedTuple):
    """What `SubsetFusion.backward` reads from the forward's attention and fusion (after its dense layers')."""
    present: torch.Tensor          # (K, B, M)
    full: bool                     # every modality present in every row
    hs: torch.Tensor               # (K, S, B, M, hidden): the modalities' encodings
    a: torch.Tensor                # (K * S, B, hidden): the attention MLP's output
    scores: torch.Tensor           # softmax's output (attention_norm "softmax"), else the raw scores
    seen: torch.Tensor | None      # (K, S, B, M): the modalities a subset reads and a row has; None: all
    weights: torch.Tensor          # (K, S, B, M)
    fused: torch.Tensor            # (K * S, B, hidden): the heads' input


def keep_threshold(p: float) -> np.uint16:
    """The 16-bit word at or above which dropout at rate p keeps a unit: ceil(p * 2**16), so the rate drawn is p
    rounded up to a multiple of 2**-16 (0.3 draws 0.300003)."""
    return np.uint16(min(math.ceil(p * 2**16), 2**16 - 1))


def unit_words(rngs: Sequence[np.random.Generator], out: np.ndarray) -> np.ndarray:
    """Each generator's next out.shape[1] raw 64-bit outputs, written into its row of out (uint64), seen as
    dropout's 16-bit words: four to an output, little-endian, so the same units on any machine."""
    np.stack([rng.bit_generator.random_raw(out.shape[1]) for rng in rngs], out=out)
    return out.view("<u2")


def keep_units(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    """n dropout decisions (True: kept) at rate p from rng, as `SubsetFusion` draws them (`unit_words`; the last
    output's spare words unused)."""
    return unit_words([rng], np.empty((1, -(-n // 4)), dtype="<u8"))[0, :n] >= keep_threshold(p)


def _spans(sizes: Sequence[int]) -> list[tuple[int, int]]:
    """(start, size) of consecutive blocks of these sizes."""
    return list(zip(np.cumsum([0, *sizes[:-1]]).tolist(), sizes))


class _MaskLayout:
    """A step's dropout masks for a SubsetFusion: one buffer of decisions (bool) and one of caps (float32,
    `_caps`), seen per layer in the shape of its output (`layers`, torch views, in enc_w's layer order
    then the attention layers'), and per subset as its blocks in its draw order (`blocks`, views of the
    decisions, each (folds, batch, width)): where a layer holds several subsets side by side, each one's
    block is a strided view, so the draws land where the layer reads them. Per subset, `spans` places each
    block in a fold's draws for the step and `words` holds those draws for every fold (raw 64-bit outputs)."""

    def __init__(self, model: SubsetFusion, batch: int):
        k, hidden = model.n_models, model.hidden
        shapes = [(k, batch, len(readers) * w) if i == 0 else (k, len(readers), batch, w)
                  for readers in model.readers for i, w in enumerate(hidden)]
        shapes += [(k, len(model.uses), batch, w) for w in hidden]
        spans = _spans([math.prod(shape) for shape in shapes])
        self.batch = batch
        self.keep = np.empty(sum(n for _, n in spans), dtype=bool)
        self.caps = np.empty(len(self.keep), dtype=np.float32)
        self.layers = [torch.from_numpy(self.caps[at:at + n]).view(shape) for (at, n), shape in zip(spans, shapes)]
        keep = [self.keep[at:at + n].reshape(shape) for (at, n), shape in zip(spans, shapes)]
        attention = len(model.readers) * len(hidden)
        self.blocks = []
        for s, uses in enumerate(model.uses):
            blocks = []
            for j in uses:
                r = model.readers[j].index(s)
                for i, w in enumerate(hidden):
                    layer = keep[j * len(hidden) + i]
                    blocks.append(layer.reshape(k, batch, -1, w)[:, :, r] if i == 0 else layer[:, r])
            self.blocks.append(blocks + [keep[attention + i][:, s] for i in range(len(hidden))])
        self.spans = [_spans([block[0].size for block in blocks]) for blocks in self.blocks]
        self.words = [np.empty((k, -(-sum(n for _, n in spans) // 4)), dtype="<u8") for spans in self.spans]


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
