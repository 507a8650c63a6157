"""pipeline.models.fusion: shapes, masking of absent modalities, softmax weights, stacked copies, the hand backward."""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.labels import VALENCE_RANGE
from pipeline.models.fusion import AttentionFusion, SubsetFusion

DIMS = (12, 8, 5)


def _inputs(b: int, dims=DIMS, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, d, generator=g) for d in dims]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return AttentionFusion(DIMS, n_classes=6, hidden=(16, 8)).eval()


def test_output_shapes(model):
    out = model(_inputs(4))
    assert out.logits.shape == (4, 6) and out.valence.shape == (4,) and out.weights.shape == (4, 3)


def test_batch_size_one(model):
    xs = _inputs(4)
    one = model([x[:1] for x in xs])
    assert one.logits.shape == (1, 6) and one.valence.shape == (1,)
    assert torch.allclose(one.logits, model(xs).logits[:1], atol=1e-6)


@pytest.mark.parametrize("norm", ["none", "softmax"])
def test_absent_modality_has_no_influence(norm):
    torch.manual_seed(0)
    model = AttentionFusion(DIMS, hidden=(16, 8), attention_norm=norm).eval()
    xs = _inputs(5)
    present = torch.ones(5, 3, dtype=torch.bool)
    present[:, 1] = False
    base = model(xs, present)
    changed = [xs[0], torch.full_like(xs[1], float("nan")), xs[2]]
    out = model(changed, present)
    assert torch.equal(out.logits, base.logits) and torch.equal(out.valence, base.valence)
    assert (out.weights[:, 1] == 0).all()
    # and it did matter when present
    assert not torch.allclose(model([xs[0], xs[1] + 1, xs[2]]).logits, model(xs).logits)


def test_absent_modality_gets_no_gradient():
    torch.manual_seed(0)
    model = AttentionFusion(DIMS, hidden=(16, 8)).train()
    present = torch.tensor([[True, False, True]] * 4)
    xs = _inputs(4)
    xs[1] = torch.full_like(xs[1], float("nan"))
    out = model(xs, present)
    (out.logits.sum() + out.valence.sum()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert (model.encoders[1][0].weight.grad == 0).all()


def test_softmax_weights_sum_to_one_over_present():
    torch.manual_seed(0)
    model = AttentionFusion(DIMS, hidden=(16, 8), attention_norm="softmax").eval()
    present = torch.tensor([[True, True, True], [True, False, True], [False, False, True], [False, False, False]])
    w = model(_inputs(4), present).weights
    assert torch.allclose(w[:3].sum(dim=1), torch.ones(3))
    assert (w[~present] == 0).all() and torch.equal(w[2], torch.tensor([0.0, 0.0, 1.0]))
    assert (w[3] == 0).all()  # nothing present: no NaN, no weight


def test_none_norm_weights_are_raw_scores(model):
    w = model(_inputs(16)).weights
    assert not torch.allclose(w.sum(dim=1), torch.ones(16))  # the baseline's code: no softmax


def test_single_modality():
    torch.manual_seed(0)
    for norm in ("none", "softmax"):
        model = AttentionFusion((7,), hidden=(16, 8), attention_norm=norm).eval()
        out = model([torch.randn(3, 7)])
        assert out.logits.shape == (3, 6) and out.weights.shape == (3, 1)
    assert torch.equal(out.weights, torch.ones(3, 1))


def test_stacked_copies_match_plain_members():
    torch.manual_seed(0)
    stacked = AttentionFusion(DIMS, hidden=(16, 8), n_models=3).eval()
    xs = [x.unsqueeze(0).expand(3, -1, -1) for x in _inputs(4)]
    present = torch.tensor([[True, False, True]] * 4).expand(3, -1, -1)
    out = stacked(xs, present)
    for k in range(3):
        ref = stacked.member(k)([x[k] for x in xs], present[k])
        assert torch.allclose(out.logits[k], ref.logits, atol=1e-5)
        assert torch.allclose(out.valence[k], ref.valence, atol=1e-5)
    assert not torch.allclose(out.logits[0], out.logits[1])  # independent initialisations


def test_hidden_sizes_configurable():
    model = AttentionFusion(DIMS, hidden=(32, 16, 4)).eval()
    assert model.fc_emotion.in_features == 4
    assert model(_inputs(2)).logits.shape == (2, 6)


def test_valence_is_clipped_to_the_label_range_in_eval_mode_only():
    torch.manual_seed(0)
    model = AttentionFusion(DIMS, n_classes=6, hidden=(16, 8))
    with torch.no_grad():
        model.fc_valence.bias.fill_(40.0)  # far outside [-5, 5]
    xs = _inputs(8)
    assert torch.all(model.eval()(xs).valence == VALENCE_RANGE[1])
    trained = model.train()(xs).valence  # training sees the raw output, so MSE still has a gradient
    assert torch.all(trained > 30.0) and trained.requires_grad


def _subset_model(uses, norm: str, seed: int = 0) -> SubsetFusion:
    """SubsetFusion of len(uses) randomly initialised AttentionFusion models (3 folds) over DIMS."""
    torch.manual_seed(seed)
    models = [AttentionFusion([DIMS[j] for j in u], n_classes=4, hidden=(16, 8, 6), dropout=0.3,
                              attention_norm=norm, n_models=3) for u in uses]
    return SubsetFusion.from_models(models, uses, DIMS)


@pytest.mark.parametrize("norm", ["none", "softmax"])
@pytest.mark.parametrize("uses", [[(0, 1, 2)], [(0,), (1, 2), (0, 2), (0, 1, 2)]])
@pytest.mark.parametrize("partial", [False, True])
@pytest.mark.parametrize("numpy_masks", [True, False])
def test_hand_backward_gives_autograds_gradients(norm, uses, partial, numpy_masks):
    """SubsetFusion.backward, the trainer's gradient, against autograd through the same forward and dropout masks:
    stacked subsets (blocks gathered, absent ones zero), absent rows, both attention norms, masks from numpy or torch."""
    model = _subset_model(uses, norm).train()
    if numpy_masks:
        model.seed_dropout([11 + s for s in range(len(uses))])
    g = torch.Generator().manual_seed(1)
    xs = [torch.randn(3, 10, d, generator=g) for d in DIMS]
    present = torch.rand(3, 10, 3, generator=g) > (0.3 if partial else -1)
    d_logits, d_valence = torch.randn(3, len(uses), 10, 4, generator=g), torch.randn(3, len(uses), 10, generator=g)
    rngs = copy.deepcopy(model.rngs)
    torch.manual_seed(5)
    out = model(xs, present)
    expected = torch.autograd.grad((out.logits * d_logits).sum() + (out.valence * d_valence).sum(), list(model.parameters()))
    model.rngs, tape = rngs, []
    torch.manual_seed(5)
    with torch.no_grad():
        again = model(xs, present, tape)
        got = model.backward(tape, d_logits, d_valence)
    assert torch.equal(again.logits, out.logits.detach())  # the same masks
    assert len(got) == len(expected)
    for (name, p), ours, theirs in zip(model.named_parameters(), got, expected):
        assert ours.shape == p.shape, name
        assert torch.allclose(ours, theirs, rtol=1e-4, atol=1e-6), (name, (ours - theirs).abs().max())
    assert any(bool(t.abs().sum() > 0) for t in got[:len(model.enc_w)])  # gradients reach the first layers
