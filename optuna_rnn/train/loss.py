"""The training loss of a step: the decoder and masked cross-entropy as one autograd node.

The eager path (``task.loss(model(batch))``) decodes every position, writes the logits, a
log-softmax of them and, backward, a gradient of each, all ``T * B x V`` tensors freshly
allocated every step. Over Penn Treebank's 10,000 words these are 28 MB each: their
page faults and passes cost more than the recurrent cell. :func:`linear_cross_entropy`
decodes only the scored positions, into one buffer kept across steps, and turns it into
the softmax and then the logits' gradient in place. It is the same function as the eager
path (same sums, float rounding aside), so training follows the same curve.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from optuna_rnn.tasks import Batch, Task
from optuna_rnn.train.model import SequenceModel

__all__ = ["LogitBuffer", "linear_cross_entropy", "training_loss"]


class LogitBuffer:
    """One ``N x V`` float buffer, lent to a step's loss and returned by its backward."""

    def __init__(self) -> None:
        self._free: torch.Tensor | None = None

    def take(self, rows: int, columns: int, like: torch.Tensor) -> torch.Tensor:
        """A ``rows x columns`` tensor of ``like``'s dtype and device (contents undefined)."""
        free, self._free = self._free, None
        size = rows * columns
        if free is None or free.numel() < size or free.dtype != like.dtype or free.device != like.device:
            free = torch.empty(size, dtype=like.dtype, device=like.device)
        return free[:size].view(rows, columns)

    def give(self, tensor: torch.Tensor) -> None:
        """Return a tensor from :meth:`take` for the next step to reuse."""
        base = tensor._base if tensor._base is not None else tensor
        if self._free is None or base.numel() > self._free.numel():
            self._free = base


class _LinearCrossEntropy(torch.autograd.Function):
    """``mean_n CE(hidden[n] @ weight.T + bias, targets[n])`` with one logit buffer."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        targets: torch.Tensor,
        buffer: LogitBuffer,
    ) -> torch.Tensor:
        rows = hidden.shape[0]
        probs = buffer.take(rows, weight.shape[0], hidden)
        torch.addmm(bias, hidden, weight.t(), out=probs)
        picked = probs.gather(1, targets[:, None])
        peak = probs.amax(dim=1, keepdim=True)
        probs.sub_(peak).exp_()
        total = probs.sum(dim=1, keepdim=True)
        loss = (total.log() + peak - picked).sum() / rows
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            ctx.save_for_backward(hidden, weight, targets, total)
            ctx.probs, ctx.buffer = probs, buffer
        else:
            buffer.give(probs)
        return loss

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        hidden, weight, targets, total = ctx.saved_tensors
        probs, buffer = ctx.probs, ctx.buffer
        ctx.probs = None
        scale = grad / hidden.shape[0]
        # d loss / d logits = (softmax - onehot) * grad / rows, built in the buffer.
        probs.mul_(scale / total)
        probs.scatter_add_(1, targets[:, None], (-scale).expand(targets.shape[0], 1))
        grads = (
            probs @ weight if ctx.needs_input_grad[0] else None,
            probs.t() @ hidden if ctx.needs_input_grad[1] else None,
            probs.sum(dim=0) if ctx.needs_input_grad[2] else None,
        )
        buffer.give(probs)
        return (*grads, None, None)


def linear_cross_entropy(
    hidden: torch.Tensor,
    decoder: nn.Linear,
    targets: torch.Tensor,
    mask: torch.Tensor,
    buffer: LogitBuffer,
) -> torch.Tensor:
    """Mean cross-entropy of ``decoder(hidden)`` against ``targets`` over ``mask``.

    ``hidden`` is ``(T, B, H)``, ``targets`` and ``mask`` ``(T, B)``: the value (and
    gradients) of ``Task.loss(decoder(hidden), batch)`` for a categorical task; only the
    masked positions are decoded. ``0`` (with zero gradients) when nothing is masked.
    """
    flat = hidden.reshape(-1, hidden.shape[-1])
    labels = targets.reshape(-1)
    keep = mask.reshape(-1)
    if not bool(keep.all()):
        index = keep.nonzero().squeeze(1)
        if index.numel() == 0:
            return flat.sum() * 0.0
        flat, labels = flat.index_select(0, index), labels.index_select(0, index)
    bias = decoder.bias if decoder.bias is not None else flat.new_zeros(decoder.out_features)
    return _LinearCrossEntropy.apply(flat, decoder.weight, bias, labels, buffer)


def _fusable(model: nn.Module, task: Task) -> bool:
    """The model is a :class:`SequenceModel` and the task's loss is the shared one."""
    return (
        isinstance(model, SequenceModel)
        and task.output_kind == "categorical"
        and type(task).loss is Task.loss
        and type(task)._losses is Task._losses
    )


def training_loss(
    model: nn.Module, task: Task, batch: Batch, state: Any, buffer: LogitBuffer
) -> tuple[torch.Tensor, Any]:
    """``(task.loss(logits, batch), next_state)`` of ``model(batch, state)``.

    A :class:`SequenceModel` on a categorical task with the shared loss goes through
    :func:`linear_cross_entropy`; any other model or loss runs eagerly.
    """
    if _fusable(model, task):
        hidden, state = model.features(batch, state)
        return linear_cross_entropy(hidden, model.decoder, batch.targets, batch.mask, buffer), state
    logits, state = model(batch, state)
    return task.loss(logits, batch), state
