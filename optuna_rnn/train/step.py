"""The trainer's step without autograd, for the models and tasks a search trains most.

A small model's training step spent more time around its arithmetic than in it: the
autograd nodes of each fused layer (about 150 µs each), accumulating ~15 gradients through
the engine, the weight maps concatenated into stacks every call, some fifty small ops
and zero-filled buffers. :class:`TrainStep` runs the same step as straight-line code:

- the forward of each layer and the backward are the fused backend's own passes
  (:func:`~optuna_rnn.kernels.passes.forward_buffers`,
  :func:`~optuna_rnn.kernels.passes.gradients`), called directly; each layer's buffers
  come from the kernels' workspace and go back after the backward;
- the parameters lie in the :class:`~optuna_rnn.train.flat.FlatOptimizer`'s flat buffer
  with each product's maps back to back (:func:`plan_step` gives the groups), so a
  layer's stacked weights and their gradients are views of the flat buffers: no copy in,
  and the weight and bias gradients' products write into the flat gradient (``out=``),
  with nothing to zero or accumulate;
- the decoder and the loss: below :data:`~optuna_rnn.train.loss.FUSED_MIN_CLASSES`
  classes all logits at once, through the kernels ``F.cross_entropy`` and its gradient
  run (the unscored positions ignored), as ``masked_cross_entropy`` does; at or above it
  the scored positions only, a block of logits at a time
  (:func:`~optuna_rnn.train.loss.decode_blocks`, the fused loss's); either way the
  decoder's gradients are written into the flat gradient;
- where the vocabulary is smaller than a batch's positions (the synthetic tasks) and the
  embedding goes to the first layer as it is (no dropout), that layer's x maps are a
  lookup in the vocabulary's (``E @ Wx^T``, ``V`` rows instead of ``T * B``), and their
  gradients are summed per symbol before the products with ``E`` and ``Wx``: the same
  sums, grouped;
- dropout draws its masks as ``torch.nn.functional.dropout`` does on the CPU (the same
  random numbers in the same order), so a seeded run draws the same masks.

It is the same function as the autograd step (float rounding aside): the same loss and
gradients, so training follows the same curve. It applies to a
:class:`~optuna_rnn.train.SequenceModel` on the CPU whose :class:`~optuna_rnn.nn.CellRNN`
runs the fused backend (``"fused"``, or ``"auto"``: see :func:`fused_core`), whose cell
has no ``pre`` leaves and whose layers need no input projection, with every parameter
trainable and in one flat buffer, on a task scored by the shared categorical loss; any
number of layers, dropout and carried state, token inputs (no task scored by the
shared categorical loss reads dense inputs). Elsewhere
:func:`plan_step` says ``None`` and the trainer runs the autograd step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels.buffers import X_GRAD, X_MAPS_GRAD
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.gemm import C_DTYPES
from optuna_rnn.kernels.layer import fused_backend
from optuna_rnn.kernels.native import native_kind
from optuna_rnn.kernels.passes import Stacks, forward_buffers, gradients
from optuna_rnn.kernels.workspace import scratch
from optuna_rnn.tasks import Batch, Task
from optuna_rnn.train.flat import FlatOptimizer
from optuna_rnn.train.loss import (
    CHUNK_ROWS,
    FUSED_MIN_CLASSES,
    IGNORED,
    LogitBuffer,
    _shared_categorical_loss,
    decode_blocks,
)
from optuna_rnn.train.model import SequenceModel

__all__ = ["FUSED_LSTM", "StepPlan", "TrainStep", "plan_step"]

#: Whether the step runs the exact LSTM fused under ``backend="auto"`` (where the model's
#: own forward runs oneDNN's). ``benchmarks/trial_step.py`` (2026-12-06, 2 cores, one
#: thread, two runs): this step with the fused LSTM took 0.65-0.70x the time of the
#: autograd step with oneDNN's LSTM on memorisation, arithmetic and XML, 0.95-0.97x on
#: PTB; a layer's autograd step alone (``benchmarks/lstm_backends.py``) is 0.89-1.15x
#: oneDNN's at those shapes.
FUSED_LSTM = True

#: The kernels of ``F.cross_entropy``'s negative log-likelihood and its gradient.
_NLL = torch.ops.aten.nll_loss_forward.default
_NLL_BACKWARD = torch.ops.aten.nll_loss_backward.default


def fused_core(model: SequenceModel, like: torch.Tensor) -> FusedCell | None:
    """The compiled cell the step runs ``model``'s layers with (on tensors like ``like``):
    the fused backend's, for ``backend="fused"`` and ``"auto"``; ``None`` for any other
    backend.

    Under ``"auto"`` this includes the exact LSTM, which the model's own forward runs
    through oneDNN (:mod:`optuna_rnn.kernels.auto`): without the autograd step's fixed
    cost the fused LSTM's step is the faster at the trainer's shapes (measured by
    ``benchmarks/trial_step.py``; see :data:`FUSED_LSTM`), where its time loops run in C.
    Both backends compute the same function, so validation through the model's forward
    scores the same weights.
    """
    rnn = model.rnn
    if rnn.backend == "fused":
        return fused_backend(rnn.cell).core  # type: ignore[attr-defined]
    if rnn.backend != "auto":
        return None
    core = fused_backend(rnn.cell).core  # type: ignore[attr-defined]
    if native_kind(rnn.cell) != "lstm":
        return core
    loops_in_c = like.dtype in C_DTYPES and core.library(C_DTYPES[like.dtype]) is not None
    return core if FUSED_LSTM and loops_in_c else None


@dataclass(frozen=True)
class StepPlan:
    """What :class:`TrainStep` needs before the optimizer exists: the model, its fused
    cell, and the parameter groups to lay out back to back (per layer, each stack's maps,
    then the biases)."""

    model: SequenceModel
    core: FusedCell
    groups: tuple[tuple[nn.Parameter, ...], ...]

    def bind(self, optimizer: FlatOptimizer | Any) -> TrainStep | None:
        """The step on ``optimizer``'s buffers; ``None`` unless it is a
        :class:`FlatOptimizer` over exactly the model's parameters."""
        if not isinstance(optimizer, FlatOptimizer):
            return None
        if {id(p) for p in optimizer.parameters} != {id(p) for p in self.model.parameters()}:
            return None
        return TrainStep(self, optimizer)


def plan_step(model: nn.Module, task: Task) -> StepPlan | None:
    """The plan of :class:`TrainStep` for ``model`` on ``task``; ``None`` where it does
    not apply (see the module docstring)."""
    if not isinstance(model, SequenceModel) or not _shared_categorical_loss(task):
        return None
    parameters = list(model.parameters())
    if not FlatOptimizer.fits(parameters) or not all(p.requires_grad for p in parameters):
        return None
    if parameters[0].device.type != "cpu":
        return None
    encoder, decoder = model.encoder, model.decoder
    plain_embedding = (
        type(encoder) is nn.Embedding
        and encoder.padding_idx is None
        and encoder.max_norm is None
        and not encoder.scale_grad_by_freq
        and not encoder.sparse
    )
    if not plain_embedding or type(decoder) is not nn.Linear or decoder.bias is None:
        return None
    core = fused_core(model, parameters[0])
    if core is None or core.plan.pre or core.call_graphs(False, parameters[0]) is not None:
        return None
    groups: list[tuple[nn.Parameter, ...]] = []
    for layer in model.rnn.layers:
        if layer.proj is not None:
            return None
        maps = [layer.weight[n] for n in core.map_names]
        biases = tuple(layer.bias[n] for n in core.biases)
        used = {id(p) for p in (*maps, *biases)}
        if used != {id(p) for p in layer.parameters()}:
            return None  # a parameter the fused passes do not see
        groups += [tuple(maps[a:b]) for a, b in core.stack_spans]
        groups.append(biases)
    return StepPlan(model, core, tuple(g for g in groups if g))


@dataclass
class _Layer:
    """One layer's weights (stacks of the flat buffer) and where its gradients go."""

    stacks: Stacks
    biases: list[torch.Tensor]
    out: dict[str, torch.Tensor]  # dstack{j} and, where the blocks are the biases, dbias
    bias_grads: list[tuple[torch.Tensor, int]]  # otherwise each bias's gradient and block


class TrainStep:
    """One training step of the plan's model, its gradients written into ``optimizer``'s
    flat gradient: ``loss = step(batch, state)`` returns the loss (a float) and keeps
    the next state in :attr:`state` (the model's format, as ``model(batch, state)``
    returns it)."""

    def __init__(self, plan: StepPlan, optimizer: FlatOptimizer) -> None:
        self.model = model = plan.model
        self.core = core = plan.core
        self.optimizer = optimizer
        self.dropout = model.rnn.dropout
        self.output_dropout = model.drop.p
        self.n_states = len(core.plan.states)
        n_maps, n_biases = len(core.map_names), len(core.biases)
        self.needs = (True, *[False] * self.n_states, *[True] * (n_maps + n_biases))
        n_x = len(core.x_names)  # through the lookup: neither x's nor the x maps' own
        self.lookup_needs = (False, *self.needs[1 : 1 + self.n_states], *[False] * n_x)
        self.lookup_needs += self.needs[1 + self.n_states + n_x :]
        self.layers = [self._layer(layer) for layer in model.rnn.layers]
        self.small = model.decoder.out_features < FUSED_MIN_CLASSES
        self.decoder_grad = model.decoder.weight.new_empty(
            (model.decoder.in_features + 1, model.decoder.out_features) if not self.small else 0
        )
        self.logits = LogitBuffer()
        self._one = model.decoder.weight.new_ones(())

    def _layer(self, layer: nn.Module) -> _Layer:
        core, flat = self.core, self.optimizer
        maps = [layer.weight[n] for n in core.map_names]
        stacks, out = [], {}
        for j, (a, b) in enumerate(core.stack_spans):
            span = flat.span(maps[a:b])
            shape = (sum(m.shape[0] for m in maps[a:b]), maps[a].shape[1])
            stacks.append(flat.data[span].view(shape))
            out[f"dstack{j}"] = flat.grad[span].view(shape)
        biases = [layer.bias[n] for n in core.biases]
        n_blocks, blocks = core.bias_blocks
        bias_grads = []
        if biases and n_blocks == len(biases) and blocks == list(range(n_blocks)):
            out["dbias"] = flat.grad[flat.span(biases)]
        else:
            bias_grads = [(b.grad, k) for b, k in zip(biases, blocks, strict=True)]
        return _Layer(core.unlist_stacks(stacks), biases, out, bias_grads)

    @staticmethod
    def _drop(x: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``F.dropout(x, p)`` as the CPU runs it (the same draws), and its scaled mask."""
        if not p:
            return x, None
        noise = torch.empty_like(x).bernoulli_(1 - p)
        noise.div_(1 - p)
        return x * noise, noise

    @torch.no_grad()
    def __call__(self, batch: Batch, state: Any = None) -> tuple[float, Any]:
        """The step on ``batch`` from ``state`` (``None``: zeros): the loss and the next
        state; every parameter's gradient is in the optimizer's flat gradient."""
        model, core = self.model, self.core
        inputs, targets, mask = batch.inputs, batch.targets, batch.mask
        T, B = inputs.shape[:2]
        H = model.rnn.hidden_size
        training = model.training
        tokens = inputs.reshape(-1)
        embedded = torch.index_select(model.encoder.weight, 0, tokens).view(T, B, H)
        x, first_noise = self._drop(embedded, self.output_dropout if training else 0.0)
        if state is None:
            zeros = x.new_zeros(B, H)
            initial = [[zeros] * self.n_states for _ in self.layers]
        else:
            given = (state,) if isinstance(state, torch.Tensor) else tuple(state)
            initial = [[s[k] for s in given] for k in range(len(self.layers))]
        lookup = self._lookup(first_noise, tokens)
        taken: list[torch.Tensor] = []
        passes, finals = [], []
        for k, layer in enumerate(self.layers):
            noise, x_maps = None, None
            if k:
                x, noise = self._drop(x, self.dropout if training else 0.0)
            elif lookup is not None:
                x_maps = torch.index_select(lookup, 0, tokens).view(T, B, -1)
            buffers, final = forward_buffers(
                core, x, initial[k], layer.stacks, (), layer.biases, taken, x_maps
            )
            passes.append((x, buffers, noise))
            finals.append(final)
            x = buffers[names.state(0)][1:]
        top, top_noise = self._drop(x, self.output_dropout if training else 0.0)
        value, dtop = self._loss(top.reshape(T * B, H), targets.reshape(-1), mask.reshape(-1))
        if top_noise is not None:
            dtop.mul_(top_noise.view(T * B, H))
        dout = dtop.view(T, B, H)
        dfinals = [None] * self.n_states
        for k in reversed(range(len(self.layers))):
            layer, (x, buffers, noise) = self.layers[k], passes[k]
            needs = self.lookup_needs if k == 0 and lookup is not None else self.needs
            grads = gradients(
                core, buffers, x, layer.stacks, dout, dfinals, needs, taken, layer.out
            )
            if layer.bias_grads:
                rows = grads["dbias"].view(-1, H)
                for grad, block in layer.bias_grads:
                    grad.copy_(rows[block])
            if k == 0 and lookup is not None:
                self._lookup_grads(tokens, buffers)
                break
            dout = grads["dx"]
            if noise is not None:
                dout.mul_(noise)
        else:
            if first_noise is not None:
                dout.mul_(first_noise)
            grad = model.encoder.weight.grad
            grad.zero_()
            grad.index_add_(0, tokens, dout.view(T * B, H))
        stacked = [torch.stack([f[i] for f in finals]) for i in range(self.n_states)]
        scratch.give(taken)
        return value, stacked[0] if self.n_states == 1 else tuple(stacked)

    def _lookup(self, noise: torch.Tensor | None, tokens: torch.Tensor) -> torch.Tensor | None:
        """The first layer's x maps of every word, ``(V, n * H)``, where they are fewer
        than the batch's positions and the layer reads the embedding as it is (no
        dropout): the x maps of the batch are then rows of it, and their gradients sum
        into it, a product over the vocabulary instead of over every position."""
        if noise is not None or not self.core.x_names:
            return None
        table = self.model.encoder.weight
        if table.shape[0] >= tokens.shape[0]:
            return None
        wx = self.layers[0].stacks[0]
        assert wx is not None
        return torch.mm(table, wx.t())

    def _lookup_grads(self, tokens: torch.Tensor, buffers: dict[str, torch.Tensor]) -> None:
        """The first layer's x maps' and the embedding's gradients, through the
        vocabulary (see :meth:`_lookup`), from the x maps' gradient at every position
        (and raw x's, for a cell that reads it)."""
        table, layer = self.model.encoder.weight, self.layers[0]
        wx = layer.stacks[0]
        assert wx is not None
        dmaps = buffers[X_MAPS_GRAD]
        summed = dmaps.new_zeros(table.shape[0], dmaps.shape[-1])
        summed.index_add_(0, tokens, dmaps.view(tokens.shape[0], -1))
        torch.mm(summed.t(), table, out=layer.out["dstack0"])
        torch.mm(summed, wx, out=table.grad)
        if X_GRAD in buffers:
            table.grad.index_add_(0, tokens, buffers[X_GRAD].view(tokens.shape[0], -1))

    def _loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """The masked mean cross-entropy of the decoder over ``hidden``'s scored rows,
        the decoder's gradients written into the flat gradient; the loss and the
        gradient of ``hidden`` (every row)."""
        if self.small:
            return self._small_loss(hidden, targets, mask)
        index = mask.nonzero().squeeze(1)
        rows = index.shape[0]
        if rows == 0:
            return self._nothing_scored(hidden)
        if rows == mask.shape[0]:
            return self._blockwise_loss(hidden, targets, rows)
        value, hidden_grad = self._blockwise_loss(
            hidden.index_select(0, index), targets.index_select(0, index), rows
        )
        full = hidden.new_zeros(hidden.shape)
        return value, full.index_copy_(0, index, hidden_grad)

    def _nothing_scored(self, hidden: torch.Tensor) -> tuple[float, torch.Tensor]:
        """A batch with nothing scored: a zero loss with zero gradients."""
        self.optimizer.grad.zero_()
        return 0.0, hidden.new_zeros(hidden.shape)

    def _small_loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """The loss over a small output layer as ``masked_cross_entropy`` computes it
        (every row decoded; a log-softmax, the mean of the scored targets' entries) and
        its gradients by the same kernels as autograd's."""
        decoder = self.model.decoder
        labels = torch.where(mask, targets, IGNORED)
        logits = torch.addmm(decoder.bias, hidden, decoder.weight.t())
        log_probs = torch._log_softmax(logits, 1, False, out=logits)
        loss, total = _NLL(log_probs, labels, None, 1, IGNORED)
        value = float(loss)
        if math.isnan(value) and not bool(mask.any()):
            return self._nothing_scored(hidden)
        grad = _NLL_BACKWARD(self._one, log_probs, labels, None, 1, IGNORED, total)
        grad = torch._log_softmax_backward_data(grad, log_probs, 1, log_probs.dtype)
        torch.mm(grad.t(), hidden, out=decoder.weight.grad)
        torch.sum(grad, 0, out=decoder.bias.grad)
        return value, torch.mm(grad, decoder.weight)

    def _blockwise_loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, rows: int
    ) -> tuple[float, torch.Tensor]:
        """The mean loss over a large output layer, a block of logits at a time
        (:func:`~optuna_rnn.train.loss.decode_blocks`, as ``linear_cross_entropy``)."""
        decoder = self.model.decoder
        scale = 1.0 / rows
        inputs = torch.cat([hidden, hidden.new_ones(rows, 1)], dim=1)
        weights = torch.cat([decoder.weight, decoder.bias[:, None]], dim=1)
        hidden_grad = hidden.new_empty(hidden.shape)
        weights_grad = self.decoder_grad
        losses = decode_blocks(
            inputs,
            weights,
            decoder.weight,
            targets,
            self.logits,
            CHUNK_ROWS,
            hidden_grad,
            weights_grad,
        )
        torch.mul(weights_grad[:-1].t(), scale, out=decoder.weight.grad)
        torch.mul(weights_grad[-1], scale, out=decoder.bias.grad)
        hidden_grad.mul_(scale)
        return float(losses.sum() / rows), hidden_grad
