"""The training loss of a step: the decoder and masked cross-entropy as one autograd node.

The eager path (``task.loss(model(batch))``) decodes every position, writes the logits, a
log-softmax of them and, backward, a gradient of each, all ``T * B x V`` tensors freshly
allocated every step. Over Penn Treebank's 10,000 words these are 28 MB each: their
page faults and passes cost more than the recurrent cell. :func:`linear_cross_entropy`
decodes only the scored positions, a block of rows at a time into one buffer kept across
steps, and turns each block into the softmax and then the logits' gradient in place while
it is in cache. It is the same function as the eager path (same sums, float rounding
aside), so training follows the same curve.

Below :data:`FUSED_MIN_CLASSES` classes the logits are small and the eager decoder is
cheaper, but ``Task.loss``'s masked mean is seven ops forward and as many backward, a
tenth of a small task's step: :func:`masked_cross_entropy` is the same mean as one
cross-entropy op that ignores the positions outside the mask.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from optuna_rnn.kernels import softmax
from optuna_rnn.tasks import Batch, Task
from optuna_rnn.train.model import SequenceModel

__all__ = [
    "FUSED_MIN_CLASSES",
    "LogitBuffer",
    "decode_blocks",
    "linear_cross_entropy",
    "masked_cross_entropy",
    "training_loss",
    "uses_fused_loss",
]


class LogitBuffer:
    """One ``rows x V`` float buffer, lent to a loss and returned when it is done with it."""

    def __init__(self) -> None:
        self._free: torch.Tensor | None = None

    def take(self, rows: int, columns: int, like: torch.Tensor) -> torch.Tensor:
        """A ``rows x columns`` tensor of ``like``'s dtype and device (contents undefined)."""
        free, self._free = self._free, None
        size = rows * columns
        fits = free is not None and free.numel() >= size
        if not fits or free.dtype != like.dtype or free.device != like.device:
            free = torch.empty(size, dtype=like.dtype, device=like.device)
        return free[:size].view(rows, columns)

    def give(self, tensor: torch.Tensor) -> None:
        """Return a tensor from :meth:`take` for the next step to reuse."""
        base = tensor._base if tensor._base is not None else tensor
        if self._free is None or base.numel() > self._free.numel():
            self._free = base


#: Rows decoded at a time: a block's logits (``rows x V`` floats, 2.5 MB over 10,000
#: classes) stay in cache from their product through the softmax to both gradient
#: products, instead of four passes over all ``N x V`` logits in memory.
CHUNK_ROWS = 64


class _LinearCrossEntropy(torch.autograd.Function):
    """``mean_n CE(hidden[n] @ weight.T + bias, targets[n])``, a block of rows at a time.

    The bias rides along as a last input column of ones, so one product gives the
    logits and one product gives both the weight's and the bias's gradients. Each block's
    logits become, in place, their softmax less one at the targets (the logits'
    gradient) and each row's loss: on the CPU by :mod:`optuna_rnn.kernels.softmax`, one
    C pass a row; elsewhere by torch's softmax, gathers and a scatter. While the block
    is still in cache, the forward takes it into the input's gradient and adds it to the
    weights' (as for an upstream gradient of ``rows``; the backward scales both by
    ``grad / rows``). A row's loss is its log-sum-exp less its target's logit where the
    target's probability underflows (always, in C), so no finite loss reads as infinite.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        targets: torch.Tensor,
        buffer: LogitBuffer,
        grad_enabled: bool,
    ) -> torch.Tensor:
        rows, (classes, width) = hidden.shape[0], weight.shape
        wants_hidden = grad_enabled and ctx.needs_input_grad[0]
        wants_weights = grad_enabled and any(ctx.needs_input_grad[1:3])
        # Transposed, (H + 1) x V: MKL adds a block's product into it faster than into V x (H + 1).
        weights_grad = weight.new_empty(width + 1, classes) if wants_weights else None
        hidden_grad = hidden.new_empty(hidden.shape) if wants_hidden else None
        losses = decode_blocks(
            hidden, weight, bias, targets, buffer, CHUNK_ROWS, hidden_grad, weights_grad
        )
        ctx.grads, ctx.rows = (hidden_grad, weights_grad), rows
        return losses.sum() / rows

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        hidden_grad, weights_grad = ctx.grads
        ctx.grads = None
        scale = grad / ctx.rows
        if hidden_grad is not None:
            hidden_grad.mul_(scale)
        if weights_grad is None:
            return hidden_grad, None, None, None, None, None
        weights_grad.mul_(scale)
        return hidden_grad, weights_grad[:-1].t(), weights_grad[-1], None, None, None


def decode_blocks(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    targets: torch.Tensor,
    buffer: LogitBuffer,
    block_rows: int,
    hidden_grad: torch.Tensor | None,
    weights_grad: torch.Tensor | None,
) -> torch.Tensor:
    """Each row's cross-entropy of ``hidden @ weight.T + bias`` (``rows x V``) against
    ``targets``, ``block_rows`` rows at a time (see :class:`_LinearCrossEntropy`).

    As for an upstream gradient of one per row, the hidden rows' gradient is written
    into ``hidden_grad`` and the weight's and bias's into ``weights_grad`` (transposed,
    the bias's last: ``(H + 1) x V``; the first block's product sets it, so it needs no
    zero fill); ``None``: not wanted.
    """
    rows, classes = hidden.shape[0], weight.shape[0]
    # The bias as a last column of the weights, against a column of ones.
    inputs = torch.cat([hidden, hidden.new_ones(rows, 1)], dim=1)
    weights = torch.cat([weight, bias[:, None]], dim=1)
    block = buffer.take(min(rows, block_rows), classes, inputs)
    losses = inputs.new_empty(rows)
    # Transposed, H x rows: MKL takes W^T probs^T a sixth faster than probs W here.
    hidden_grad_t = None if hidden_grad is None else inputs.new_empty(hidden_grad.shape[::-1])
    in_c = softmax.available(inputs)
    if not in_c:
        picked = inputs.new_empty(rows)
        minus_one = inputs.new_full((block.shape[0], 1), -1.0)
    for start in range(0, rows, block.shape[0]):
        stop = min(start + block.shape[0], rows)
        probs, labels = block[: stop - start], targets[start:stop]
        torch.mm(inputs[start:stop], weights.t(), out=probs)
        if in_c:  # the loss, and probs becomes the logits' gradient
            softmax.cross_entropy_(probs, labels, losses[start:stop])
        else:
            torch.gather(probs, 1, labels[:, None], out=picked[start:stop, None])
            torch._softmax(probs, 1, False, out=probs)
            torch.gather(probs, 1, labels[:, None], out=losses[start:stop, None])
            if hidden_grad is None and weights_grad is None:
                continue
            probs.scatter_add_(1, labels[:, None], minus_one[: stop - start])
        if hidden_grad_t is not None:
            torch.mm(weight.t(), probs.t(), out=hidden_grad_t[:, start:stop])
        if weights_grad is not None:
            weights_grad.addmm_(inputs[start:stop].t(), probs, beta=float(start > 0))
    buffer.give(block)
    if hidden_grad is not None:
        hidden_grad.copy_(hidden_grad_t.t())
    if not in_c:
        losses.log_().neg_()
        lost = ~torch.isfinite(losses)
        if bool(lost.any()):
            index = lost.nonzero().squeeze(1)
            logits = inputs.index_select(0, index) @ weights.t()
            losses[index] = torch.logsumexp(logits, dim=1) - picked[index]
    return losses


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
    return _LinearCrossEntropy.apply(
        flat, decoder.weight, bias, labels, buffer, torch.is_grad_enabled()
    )


#: The smallest output layer decoded by :func:`linear_cross_entropy`. Below it the eager
#: ops are cheaper: their tensors are small and the fused node's extra calls cost more.
FUSED_MIN_CLASSES = 512


def _shared_categorical_loss(task: Task) -> bool:
    """Whether ``task`` is scored by :class:`~optuna_rnn.tasks.Task`'s own masked
    cross-entropy (not a loss of its own)."""
    return (
        task.output_kind == "categorical"
        and type(task).loss is Task.loss
        and type(task)._losses is Task._losses
    )


def uses_fused_loss(model: nn.Module, task: Task) -> bool:
    """A :class:`SequenceModel` with a large output layer, and the task's shared loss."""
    return (
        isinstance(model, SequenceModel)
        and task.output_size >= FUSED_MIN_CLASSES
        and _shared_categorical_loss(task)
    )


#: The label :func:`masked_cross_entropy` gives positions outside the mask.
IGNORED = -100


def masked_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """``Task.loss`` of categorical ``logits`` (``(T, B, V)``) as one cross-entropy op:
    positions outside ``mask`` get the ignored label, so the mean runs over the masked
    ones as ``Task.loss``'s sum over them divided by their count does (the same function,
    float rounding aside; a third of a small step's ops in the loss). ``0`` (with zero
    gradients) when nothing is masked."""
    if not bool(mask.any()):
        return logits.sum() * 0.0
    labels = targets.masked_fill(~mask, IGNORED)
    return F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORED
    )


def training_loss(
    model: nn.Module, task: Task, batch: Batch, state: Any, buffer: LogitBuffer
) -> tuple[torch.Tensor, Any]:
    """``(task.loss(logits, batch), next_state)`` of ``model(batch, state)``.

    A :class:`SequenceModel` on a categorical task with the shared loss and at least
    :data:`FUSED_MIN_CLASSES` classes goes through :func:`linear_cross_entropy`; other
    models and fewer classes with the shared loss through :func:`masked_cross_entropy`;
    a task's own loss runs as it is.
    """
    if uses_fused_loss(model, task):
        hidden, state = model.features(batch, state)
        return linear_cross_entropy(hidden, model.decoder, batch.targets, batch.mask, buffer), state
    logits, state = model(batch, state)
    if _shared_categorical_loss(task):
        return masked_cross_entropy(logits, batch.targets, batch.mask), state
    return task.loss(logits, batch), state
