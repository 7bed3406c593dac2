"""The trainer's step without autograd, for the models and tasks a search trains most.

A small model's training step spent more time around its arithmetic than in it: the
autograd nodes of each fused layer (about 150 µs each), accumulating ~15 gradients through
the engine, the weight maps concatenated into stacks every call, some fifty small ops
and zero-filled buffers. :class:`TrainStep` runs the same step as straight-line code:

- each layer runs as a :class:`~optuna_rnn.kernels.bound.BoundLayer`: the fused
  backend's passes on buffers of its own, made on the first batch of a shape with the
  time loops' C arguments and kept for the next (a synthetic task's batches come in a
  few lengths; the last :attr:`TrainStep.SHAPES` shapes are kept); each layer's input
  gradient is written straight into the output gradient of the layer below, and the
  loss's into the top layer's;
- the parameters lie in the :class:`~optuna_rnn.train.flat.FlatOptimizer`'s flat buffer
  with each product's maps back to back (:func:`plan_step` gives the groups), so a
  layer's stacked weights and their gradients are views of the flat buffers: no copy in,
  and the weight and bias gradients' products write into the flat gradient (``out=``),
  with nothing to zero or accumulate;
- the decoder and the loss: below :data:`~optuna_rnn.train.loss.FUSED_MIN_CLASSES`
  classes all logits at once, as ``masked_cross_entropy`` decodes them, the loss and its
  gradient in one C pass over them (:mod:`~optuna_rnn.kernels.softmax`, the unscored
  positions masked); at or above it
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

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from optuna_rnn.kernels import softmax
from optuna_rnn.kernels.bound import BoundLayer
from optuna_rnn.kernels.buffers import X_GRAD, X_MAPS_GRAD
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.gemm import C_DTYPES
from optuna_rnn.kernels.layer import fused_backend
from optuna_rnn.kernels.native import native_kind
from optuna_rnn.kernels.passes import Stacks
from optuna_rnn.tasks import Batch, Task
from optuna_rnn.train.flat import FlatOptimizer
from optuna_rnn.train.loss import (
    CHUNK_ROWS,
    FUSED_MIN_CLASSES,
    LogitBuffer,
    _shared_categorical_loss,
    decode_blocks,
    masked_cross_entropy,
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
    flat gradient: ``loss, state = step(batch, state)`` gives the loss (a float) and the
    next state (the model's format, as ``model(batch, state)`` returns it)."""

    #: Batch shapes whose layers' buffers are kept at once (a synthetic task's batches
    #: come in a few lengths).
    SHAPES = 32

    def __init__(self, plan: StepPlan, optimizer: FlatOptimizer) -> None:
        self.model = model = plan.model
        self.core = core = plan.core
        self.optimizer = optimizer
        self.dropout = model.rnn.dropout
        self.output_dropout = model.drop.p
        self.hidden_size = model.rnn.hidden_size
        self.embedding = model.encoder.weight
        self.decoder_weight, self.decoder_bias = model.decoder.weight, model.decoder.bias
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
        self.loss_in_c = softmax.available(model.decoder.weight)
        self._bound: dict[tuple[int, int, bool], list[BoundLayer]] = {}
        wx = self.layers[0].stacks[0]
        vocabulary = self.embedding.shape[0]
        # The first layer's x maps of every word, and their gradients summed per word.
        self._table = self.embedding.new_empty(0 if wx is None else (vocabulary, wx.shape[0]))
        self._summed = torch.empty_like(self._table)

    def _layer(self, layer: nn.Module) -> _Layer:
        core, flat = self.core, self.optimizer
        maps = [layer.weight[n] for n in core.map_names]
        stacks, out = [], {}
        for j, (a, b) in enumerate(core.stack_spans):
            span = flat.span(maps[a:b])
            shape = core.stack_shape(j, maps)
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

    def bound(self, T: int, B: int, lookup: bool) -> list[BoundLayer]:
        """The layers on buffers of their own for batches of ``T x B`` (made on first
        use): each layer writes its input's gradient into the gradient of the output of
        the layer below; ``lookup``: the first layer's x maps come from the vocabulary's."""
        key = (T, B, lookup)
        found = self._bound.get(key)
        if found is not None:
            return found
        if len(self._bound) >= self.SHAPES:
            self._bound.clear()
        found, H = [], self.hidden_size
        for k, layer in enumerate(self.layers):
            out = dict(layer.out)
            if k:
                out["dx"] = found[-1].out_grad
            needs = self.lookup_needs if k == 0 and lookup else self.needs
            bound = BoundLayer(
                self.core,
                T=T,
                B=B,
                H=H,
                x_width=H,
                stacks=layer.stacks,
                biases=layer.biases,
                needs=needs,
                out=out,
                like=self.embedding,
            )
            found.append(bound)
        self._bound[key] = found
        return found

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
        inputs, targets, mask = batch.inputs, batch.targets, batch.mask
        T, B = inputs.shape[:2]
        H = self.hidden_size
        training = self.model.training
        p_out = self.output_dropout if training else 0.0
        p_between = self.dropout if training else 0.0
        tokens = inputs.reshape(-1)
        lookup = self._looks_up(T * B)
        layers = self.bound(T, B, lookup)
        initial: list[list[torch.Tensor] | None] = [None] * len(layers)
        if state is not None:
            given = (state,) if isinstance(state, torch.Tensor) else tuple(state)
            initial = [[s[k] for s in given] for k in range(len(layers))]
        first = layers[0]
        first_noise = None
        if lookup:
            assert first.x_maps is not None
            torch.mm(self.embedding, self.layers[0].stacks[0].t(), out=self._table)
            torch.index_select(self._table, 0, tokens, out=first.x_maps.view(T * B, -1))
            if first.x is not None:
                torch.index_select(self.embedding, 0, tokens, out=first.x.view(T * B, H))
            x = first.x
            first.forward(None, initial[0])
        else:
            embedded = torch.index_select(self.embedding, 0, tokens).view(T, B, H)
            x, first_noise = self._drop(embedded, p_out)
            first.forward(x, initial[0])
        inputs_of: list[tuple[torch.Tensor | None, torch.Tensor | None]] = [(x, first_noise)]
        for k in range(1, len(layers)):
            x, noise = self._drop(layers[k - 1].output, p_between)
            layers[k].forward(x, initial[k])
            inputs_of.append((x, noise))
        top, top_noise = self._drop(layers[-1].output, p_out)
        dtop = layers[-1].out_grad.view(T * B, H)
        value = self._loss(top.reshape(T * B, H), targets.reshape(-1), mask.reshape(-1), dtop)
        if top_noise is not None:
            dtop.mul_(top_noise.view(T * B, H))
        for k in reversed(range(len(layers))):
            x, noise = inputs_of[k]
            grads = layers[k].backward(x)
            bias_grads = self.layers[k].bias_grads
            if bias_grads:
                rows = grads["dbias"].view(-1, H)
                for grad, block in bias_grads:
                    grad.copy_(rows[block])
            if k and noise is not None:
                layers[k - 1].out_grad.mul_(noise)
        if lookup:
            self._lookup_grads(tokens, first.backward_buffers)
        else:
            dx = grads["dx"]
            if first_noise is not None:
                dx.mul_(first_noise)
            self.embedding.grad.zero_()
            self.embedding.grad.index_add_(0, tokens, dx.view(T * B, H))
        finals = [layer.finals() for layer in layers]
        stacked = [torch.stack([f[i] for f in finals]) for i in range(self.n_states)]
        return value, stacked[0] if self.n_states == 1 else tuple(stacked)

    def _looks_up(self, positions: int) -> bool:
        """Whether the first layer's x maps of a batch of ``positions`` tokens are rows of
        the vocabulary's: where it has fewer words than the batch has positions and the
        embedding reaches the layer as it is (no dropout)."""
        dropped = self.model.training and self.output_dropout
        return not dropped and bool(self.core.x_names) and self.embedding.shape[0] < positions

    def _lookup_grads(self, tokens: torch.Tensor, buffers: dict[str, torch.Tensor]) -> None:
        """The first layer's x maps' and the embedding's gradients, through the
        vocabulary, from the x maps' gradient at every position (and raw x's, for a
        cell that reads it): the per-position sums grouped per word before the products
        with the embedding and the x maps' weights."""
        table, wx = self.embedding, self.layers[0].stacks[0]
        assert wx is not None
        dmaps, summed = buffers[X_MAPS_GRAD], self._summed
        summed.zero_()
        summed.index_add_(0, tokens, dmaps.view(tokens.shape[0], -1))
        torch.mm(summed.t(), table, out=self.layers[0].out["dstack0"])
        torch.mm(summed, wx, out=table.grad)
        if X_GRAD in buffers:
            table.grad.index_add_(0, tokens, buffers[X_GRAD].view(tokens.shape[0], -1))

    def _loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, out: torch.Tensor
    ) -> float:
        """The masked mean cross-entropy of the decoder over ``hidden``'s scored rows, the
        decoder's gradients written into the flat gradient and ``hidden``'s (every row)
        into ``out``."""
        if self.small:
            return self._small_loss(hidden, targets, mask, out)
        index = mask.nonzero().squeeze(1)
        rows = index.shape[0]
        if rows == 0:
            return self._nothing_scored(out)
        if rows == mask.shape[0]:
            return self._blockwise_loss(hidden, targets, rows, out)
        scored = hidden.new_empty(rows, hidden.shape[1])
        value = self._blockwise_loss(
            hidden.index_select(0, index), targets.index_select(0, index), rows, scored
        )
        out.zero_().index_copy_(0, index, scored)
        return value

    def _nothing_scored(self, out: torch.Tensor) -> float:
        """A batch with nothing scored: a zero loss with zero gradients."""
        self.optimizer.grad.zero_()
        out.zero_()
        return 0.0

    def _small_loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor, out: torch.Tensor
    ) -> float:
        """The loss over a small output layer, as ``masked_cross_entropy`` computes it
        (every row decoded, the mean over the scored rows), and its gradients: the loss
        and the logits' gradient in one C pass (:mod:`~optuna_rnn.kernels.softmax`, the
        unscored rows masked), or without a compiler by the kernels autograd runs."""
        weight, bias = self.decoder_weight, self.decoder_bias
        logits = torch.addmm(bias, hidden, weight.t())
        if self.loss_in_c:  # the logits become the mean loss's gradient
            losses = hidden.new_empty(hidden.shape[0])
            scored = softmax.cross_entropy_(logits, targets, losses, mask=mask, mean=True)
            if not scored:
                return self._nothing_scored(out)
            grad = logits
            value = float(losses.sum()) / scored
        elif not bool(mask.any()):
            return self._nothing_scored(out)
        else:
            value, grad = self._small_loss_torch(logits, targets, mask)
        torch.mm(grad.t(), hidden, out=weight.grad)
        torch.sum(grad, 0, out=bias.grad)
        torch.mm(grad, weight, out=out)
        return value

    def _small_loss_torch(
        self, logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
    ) -> tuple[float, torch.Tensor]:
        """The loss and the logits' gradient through autograd (no C compiler): the loss
        the autograd step takes, ``masked_cross_entropy``."""
        with torch.enable_grad():
            logits.requires_grad_()
            loss = masked_cross_entropy(logits, targets, mask)
            (grad,) = torch.autograd.grad(loss, logits)
        return float(loss), grad

    def _blockwise_loss(
        self, hidden: torch.Tensor, targets: torch.Tensor, rows: int, out: torch.Tensor
    ) -> float:
        """The mean loss over a large output layer, a block of logits at a time
        (:func:`~optuna_rnn.train.loss.decode_blocks`, as ``linear_cross_entropy``), the
        hidden rows' gradient written into ``out``."""
        weight, bias = self.decoder_weight, self.decoder_bias
        scale = 1.0 / rows
        weights_grad = self.decoder_grad
        losses = decode_blocks(
            hidden, weight, bias, targets, self.logits, CHUNK_ROWS, out, weights_grad
        )
        torch.mul(weights_grad[:-1].t(), scale, out=weight.grad)
        torch.mul(weights_grad[-1], scale, out=bias.grad)
        out.mul_(scale)
        return float(losses.sum() / rows)
