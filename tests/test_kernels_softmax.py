"""The C softmax cross-entropy against torch's, alone and inside the fused training loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn.kernels import softmax
from optuna_rnn.train import loss as loss_module
from optuna_rnn.train.loss import LogitBuffer, linear_cross_entropy

pytestmark = pytest.mark.skipif(not softmax.available(torch.empty(0)), reason="needs a C compiler")


def _torch_reference(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    losses = F.cross_entropy(logits, labels, reduction="none")
    grad = torch.softmax(logits, 1)
    grad[torch.arange(len(labels)), labels] -= 1
    return losses, grad


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 70),
    classes=st.integers(1, 300),
    spread=st.sampled_from([0.1, 3.0, 200.0]),
    double=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_matches_torch_for_every_shape_and_spread(
    rows: int, classes: int, spread: float, double: bool, seed: int
) -> None:
    dtype = torch.float64 if double else torch.float32
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=g, dtype=dtype) * spread
    labels = torch.randint(0, classes, (rows,), generator=g)
    want_losses, want_grad = _torch_reference(logits, labels)
    losses = logits.new_empty(rows)
    grad = logits.clone()
    softmax.cross_entropy_(grad, labels, losses)
    tol = 1e-12 if double else 1e-5
    assert torch.allclose(losses, want_losses, rtol=tol, atol=tol * max(spread, 1.0))
    assert torch.allclose(grad, want_grad, rtol=tol, atol=tol)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.integers(1, 60),
    classes=st.integers(1, 40),
    double=st.booleans(),
    mean=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_a_mask_scores_some_rows_as_torchs_ignored_targets_do(
    rows: int, classes: int, double: bool, mean: bool, seed: int
) -> None:
    """The small decoders' loss: unscored rows (with any label, even a bad one) get zero
    loss and gradient; with ``mean`` the gradient is that of ``F.cross_entropy``'s mean
    over the scored rows, ``ignore_index`` marking the others."""
    dtype = torch.float64 if double else torch.float32
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(rows, classes, generator=g, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, classes, (rows,), generator=g)
    mask = torch.rand(rows, generator=g) < 0.6
    reference = F.cross_entropy(
        logits, torch.where(mask, labels, -100), reduction="mean" if mean else "sum"
    )
    losses = logits.new_empty(rows, requires_grad=False)
    grad = logits.detach().clone()
    scored = softmax.cross_entropy_(
        grad, torch.where(mask, labels, classes + 7), losses, mask=mask, mean=mean
    )
    assert scored == int(mask.sum())
    assert torch.equal(losses[~mask], torch.zeros_like(losses[~mask]))
    tol = 1e-12 if double else 1e-5
    if scored:
        reference.backward()
        total = losses.sum() / (scored if mean else 1)
        assert torch.allclose(total, reference.detach(), rtol=tol, atol=tol)
        assert torch.allclose(grad, logits.grad, rtol=tol, atol=tol)
    else:
        assert torch.equal(grad, torch.zeros_like(grad))


def test_rows_of_a_strided_block_are_written_in_place() -> None:
    """A block of a larger buffer (row stride above its width), as the loss hands it."""
    base = torch.randn(8, 50)
    block, labels, losses = base[2:6, :30], torch.tensor([0, 29, 7, 3]), torch.empty(4)
    want_losses, want_grad = _torch_reference(block.clone(), labels)
    untouched = base[:, 30:].clone()
    softmax.cross_entropy_(block, labels, losses)
    assert torch.allclose(losses, want_losses, atol=1e-6)
    assert torch.allclose(block, want_grad, atol=1e-6)
    assert torch.equal(base[:, 30:], untouched)


def test_a_target_far_below_the_rest_keeps_a_finite_exact_loss() -> None:
    logits = torch.tensor([[0.0, 1000.0, 5.0]])
    losses = torch.empty(1)
    softmax.cross_entropy_(logits, torch.tensor([0]), losses)
    assert losses.item() == pytest.approx(1000.0)


def test_a_nan_logit_makes_its_rows_loss_nan() -> None:
    logits = torch.tensor([[0.0, float("nan"), 1.0], [0.0, 1.0, 2.0]])
    losses = torch.empty(2)
    softmax.cross_entropy_(logits, torch.tensor([0, 2]), losses)
    assert losses[0].isnan() and losses[1].isfinite()


def test_a_label_out_of_range_is_refused_before_anything_is_written() -> None:
    logits = torch.randn(3, 5)
    before = logits.clone()
    with pytest.raises(ValueError, match="label 5 of row 1 is outside"):
        softmax.cross_entropy_(logits, torch.tensor([0, 5, 1]), torch.empty(3))
    assert torch.equal(logits, before)


def test_mismatched_buffers_are_refused() -> None:
    with pytest.raises(ValueError, match="one per row"):
        softmax.cross_entropy_(torch.randn(3, 5), torch.tensor([0, 1]), torch.empty(3))
    with pytest.raises(ValueError, match="one per row"):
        softmax.cross_entropy_(torch.randn(3, 5), torch.tensor([0, 1, 2]), torch.empty(3).double())
    with pytest.raises(ValueError, match="one per row"):
        softmax.cross_entropy_(
            torch.randn(3, 5), torch.tensor([0, 1, 2]), torch.empty(3), mask=torch.ones(3)
        )


@pytest.mark.parametrize("rows", [1, 63, 64, 150])
def test_the_fused_loss_is_the_same_in_c_and_in_torch(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``linear_cross_entropy``'s loss and every gradient, with the C kernel and with
    torch's softmax path (the one CUDA and compiler-less machines run)."""
    g = torch.Generator().manual_seed(rows)
    hidden = torch.randn(rows, 1, 12, generator=g)
    decoder = torch.nn.Linear(12, 700)
    with torch.no_grad():
        decoder.weight.copy_(torch.randn(700, 12, generator=g))
        decoder.bias.copy_(torch.randn(700, generator=g))
    targets = torch.randint(0, 700, (rows, 1), generator=g)
    mask = torch.rand(rows, 1, generator=g) < 0.8
    mask[0] = True

    def run() -> list[torch.Tensor]:
        h = hidden.clone().requires_grad_()
        decoder.zero_grad()
        value = linear_cross_entropy(h, decoder, targets, mask, LogitBuffer())
        value.backward()
        return [value.detach(), h.grad, decoder.weight.grad.clone(), decoder.bias.grad.clone()]

    in_c = run()
    monkeypatch.setattr(loss_module.softmax, "available", lambda like: False)
    in_torch = run()
    for a, b in zip(in_c, in_torch, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
