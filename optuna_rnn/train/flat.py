"""The trainer's optimizer: clipping and the update on one flat tensor of all parameters.

A small model's step spent more time in the bookkeeping around its ~16 parameter tensors
than in their arithmetic: setting gradients to ``None``, a norm per tensor, the
optimizer's Python. :class:`FlatOptimizer` lays the trainable parameters out as views of
one flat buffer and their gradients as views of another (autograd accumulates into a
parameter's existing ``.grad`` in place), so zeroing is one fill, clipping one norm and
the update one call. The parameters stay the model's own ``nn.Parameter`` objects (their
``state_dict`` keys and values are unchanged); :meth:`FlatOptimizer.close` gives each its
own storage back. Parameters may come in groups laid out back to back: a fused layer's
maps of one product are then one matrix (:meth:`FlatOptimizer.span`), its weights and
their gradient views of the flat buffers rather than a copy each step.

The update is the same function as ``torch.optim.SGD``/``Adam`` with default settings and
``clip_grad_norm_``, float rounding aside. One difference: a parameter that gets no
gradient in a step has a zero gradient here, not ``None``, so Adam still moves it by its
running average (every parameter of a :class:`~optuna_rnn.train.SequenceModel` gets a
gradient every step).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Literal

import torch
from torch import nn

from optuna_rnn.train._fused_optim import adam_update_

__all__ = ["FlatOptimizer", "TorchOptimizer", "make_optimizer"]

#: Each parameter starts at a multiple of this many elements of the flat buffer (64 bytes
#: of float32), so the kernels see aligned rows as they did in separate tensors.
ALIGN = 16

#: ``torch.optim.Adam``'s defaults.
BETAS = (0.9, 0.999)
EPS = 1e-8


class FlatOptimizer:
    """SGD or Adam with global-norm clipping on ``parameters`` laid out in one flat buffer.

    Use as a context manager (or call :meth:`close`): while open, the parameters are views
    of :attr:`data` and their gradients views of :attr:`grad`. ``groups``: sequences of
    the parameters laid out back to back, each group's first aligned (the others are
    aligned one by one, in ``parameters``' order, after the groups).
    """

    def __init__(
        self,
        parameters: Sequence[nn.Parameter],
        kind: Literal["sgd", "adam"],
        lr: float,
        *,
        groups: Sequence[Sequence[nn.Parameter]] = (),
    ) -> None:
        if not self.fits(parameters):
            raise ValueError("the parameters must share one floating dtype and device")
        self.parameters = list(parameters)
        self.kind = kind
        self.lr = lr
        grouped = [p for group in groups for p in group]
        known = {id(p) for p in self.parameters}
        if len({id(p) for p in grouped}) != len(grouped) or not known >= {id(p) for p in grouped}:
            raise ValueError("groups must hold distinct parameters, each one of parameters")
        placed = {id(p) for p in grouped}
        runs = [list(group) for group in groups if group]
        runs += [[p] for p in self.parameters if id(p) not in placed]
        self._offsets: dict[int, int] = {}
        total = 0
        for run in runs:
            for p in run:
                self._offsets[id(p)] = total
                total += p.numel()
            total = -(-total // ALIGN) * ALIGN
        first = self.parameters[0]
        self.data = torch.zeros(total, dtype=first.dtype, device=first.device)
        self.grad = torch.zeros_like(self.data)
        with torch.no_grad():
            for p in self.parameters:
                start = self._offsets[id(p)]
                span = slice(start, start + p.numel())
                view = self.data[span].view(p.shape)
                view.copy_(p)
                p.data = view
                p.grad = self.grad[span].view(p.shape)
        if kind == "adam":
            self._exp_avg = torch.zeros_like(self.data)
            self._exp_avg_sq = torch.zeros_like(self.data)
            self._step = torch.zeros((), dtype=torch.float32, device=first.device)

    def span(self, group: Sequence[nn.Parameter]) -> slice:
        """Where ``group``, parameters laid out back to back (a group given to the
        constructor, or a run of one), lies in :attr:`data` and :attr:`grad`."""
        start = self._offsets[id(group[0])]
        stop = start + sum(p.numel() for p in group)
        if self._offsets[id(group[-1])] + group[-1].numel() != stop:
            raise ValueError("the parameters of group do not lie back to back")
        return slice(start, stop)

    @staticmethod
    def fits(parameters: Sequence[nn.Parameter]) -> bool:
        """Whether ``parameters`` (at least one) share one floating dtype and device."""
        return (
            len(parameters) > 0
            and parameters[0].is_floating_point()
            and all(
                p.dtype == parameters[0].dtype
                and p.device == parameters[0].device
                and p.layout == torch.strided
                for p in parameters
            )
        )

    def zero_grad(self) -> None:
        """Zero every gradient (one fill)."""
        self.grad.zero_()

    def step(self, max_norm: float) -> None:
        """Clip the gradients to global norm ``max_norm`` (as ``clip_grad_norm_``), then
        update the parameters."""
        norm = float(torch.linalg.vector_norm(self.grad))
        coef = max_norm / (norm + 1e-6)
        if not coef >= 1.0:  # NaN too: the parameters become NaN, as clip_grad_norm_ makes them
            self.grad.mul_(coef)
        with torch.no_grad():
            if self.kind == "sgd":
                self.data.add_(self.grad, alpha=-self.lr)
                return
            self._step.add_(1)
            adam_update_(
                self.data,
                self.grad,
                self._exp_avg,
                self._exp_avg_sq,
                self._step,
                lr=self.lr,
                beta1=BETAS[0],
                beta2=BETAS[1],
                eps=EPS,
            )

    def close(self) -> None:
        """Give each parameter (and gradient) its own storage again."""
        with torch.no_grad():
            for p in self.parameters:
                p.data = p.data.clone()
                if p.grad is not None:
                    p.grad = p.grad.clone()

    def __enter__(self) -> FlatOptimizer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class TorchOptimizer:
    """:class:`FlatOptimizer`'s interface over ``torch.optim`` and ``clip_grad_norm_``, for
    parameters of several dtypes or devices: one fused update on CPU and CUDA, else one
    multi-tensor (``foreach``) update."""

    def __init__(
        self, parameters: Sequence[nn.Parameter], kind: Literal["sgd", "adam"], lr: float
    ) -> None:
        self.parameters = list(parameters)
        device = self.parameters[0].device.type if self.parameters else "cpu"
        fast = {"fused": True} if device in ("cpu", "cuda") else {"foreach": True}
        optimizer = torch.optim.Adam if kind == "adam" else torch.optim.SGD
        self.optimizer = optimizer(self.parameters, lr=lr, **fast)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    @lr.setter
    def lr(self, value: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = value

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, max_norm: float) -> None:
        nn.utils.clip_grad_norm_(self.parameters, max_norm, foreach=True)
        self.optimizer.step()

    def close(self) -> None:
        """Nothing to give back."""

    def __enter__(self) -> TorchOptimizer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_optimizer(
    parameters: Sequence[nn.Parameter],
    kind: Literal["sgd", "adam"],
    lr: float,
    *,
    groups: Sequence[Sequence[nn.Parameter]] = (),
) -> FlatOptimizer | TorchOptimizer:
    """A :class:`FlatOptimizer` (with ``groups`` laid out back to back) where the
    parameters fit one buffer, else a :class:`TorchOptimizer`."""
    if FlatOptimizer.fits(parameters):
        return FlatOptimizer(parameters, kind, lr, groups=groups)
    return TorchOptimizer(parameters, kind, lr)
