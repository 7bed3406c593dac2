"""CellRNN: any :class:`~optuna_rnn.Cell` as a multi-layer recurrent ``nn.Module``."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from optuna_rnn.cell import Cell
from optuna_rnn.cell.ir import BIAS, LINEAR, X
from optuna_rnn.nn.backends import LayerParams, resolve_backend

__all__ = ["CellRNN"]

State = torch.Tensor | tuple[torch.Tensor, ...]


def needs_projection(cell: Cell) -> bool:
    """Whether the cell uses ``x`` as a vector of the hidden width (outside a linear map)."""
    xi = cell.index(X)
    return cell.reads_raw_x or xi in cell.updates.values()


class ParameterTable(nn.Module, Mapping[str, nn.Parameter]):
    """Parameters by the cell's own names, as a read-only mapping.

    The names are the user's: ``float``, ``train`` or ``__class__`` name a weight as well
    as ``W`` does. ``nn.ParameterDict`` refuses names that are attributes of a module, so
    this table writes into ``_parameters`` itself and is read only by item; its entries
    are ``state_dict`` keys ``<prefix>.<name>`` all the same.
    """

    # A module compares and hashes by identity, not as a mapping does.
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __init__(self, parameters: Mapping[str, nn.Parameter]) -> None:
        super().__init__()
        for name, p in parameters.items():
            self._parameters[name] = p

    def __getitem__(self, name: str) -> nn.Parameter:
        p = self._parameters[name]
        assert p is not None
        return p

    def __iter__(self) -> Iterator[str]:
        return iter(self._parameters)

    def __len__(self) -> int:
        return len(self._parameters)

    def __contains__(self, name: object) -> bool:
        return name in self._parameters

    def extra_repr(self) -> str:
        return ", ".join(f"{name}: {tuple(p.shape)}" for name, p in self.items())


class CellLayer(nn.Module):
    """One layer's parameters, laid out the same for every backend.

    ``weight[name]`` is ``(hidden, in_width)``: ``in_width`` is the layer's input width for
    maps of ``x`` and ``hidden`` otherwise. ``bias[name]`` is ``(hidden,)``. ``proj``
    (``(hidden, input)``, only when the cell reads raw ``x`` and the widths differ) maps
    the layer input to the hidden width first; every use of ``x`` then sees the projection.
    """

    def __init__(self, cell: Cell, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.proj = (
            nn.Parameter(torch.empty(hidden_size, input_size))
            if needs_projection(cell) and input_size != hidden_size
            else None
        )
        x_width = hidden_size if self.proj is not None else input_size
        xi = cell.index(X)
        weights: dict[str, nn.Parameter] = {}
        biases: dict[str, nn.Parameter] = {}
        self._diag: dict[str, float] = {}
        for node in cell.nodes:
            if node.op == LINEAR:
                width = x_width if node.inputs[0] == xi else hidden_size
                weights[node.name] = nn.Parameter(torch.empty(hidden_size, width))
                self._diag[node.name] = node.value
            elif node.op == BIAS:
                biases[node.name] = nn.Parameter(torch.full((hidden_size,), node.value))
        self.weight = ParameterTable(weights)
        self.bias = ParameterTable(biases)
        self.params = LayerParams(self.weight, self.bias)

    @torch.no_grad()
    def reset_parameters(self, cell: Cell, init_scale: float) -> None:
        """Matrices ~ U(-s/sqrt(fan_in), s/sqrt(fan_in)) plus ``a`` on the diagonal; biases
        to their initial values."""
        mats = dict(self.weight.items())
        if self.proj is not None:
            mats[""] = self.proj
        for name, w in mats.items():
            bound = init_scale / math.sqrt(w.shape[1])
            w.uniform_(-bound, bound)
            if self._diag.get(name):
                w.add_(self._diag[name] * torch.eye(*w.shape, dtype=w.dtype, device=w.device))
        for node in cell.nodes:
            if node.op == BIAS:
                self.bias[node.name].fill_(node.value)


class CellRNN(nn.Module):
    """A stack of ``num_layers`` layers of ``cell``, called like ``nn.LSTM``.

    ``output, state = rnn(input, state=None)``: ``input`` is ``(T, B, input_size)``
    (``(B, T, input_size)`` with ``batch_first``; unbatched ``(T, input_size)`` works too),
    ``output`` the top layer's ``h`` at every step. ``state`` is a ``(num_layers, B,
    hidden_size)`` tensor for one-state cells and a tuple of them in ``cell.states`` order
    otherwise (``(h, c)`` for an LSTM); ``None`` means zeros. Dropout (training only) is
    applied to the outputs of every layer but the last, as nn.LSTM does.

    ``backend`` picks how a layer runs: "reference" (per-node autograd, the oracle),
    "fused" (generated kernels, see README "Fast kernels"), "native" (PyTorch's own
    kernels, for cells equal to zoo lstm/gru_torch) or "auto" (the fastest that works
    here); all backends share one parameter layout, so a
    ``state_dict`` moves between them. ``init_scale`` is the paper's initialisation scale
    ``s``: matrices start as ``U(-s/sqrt(n), s/sqrt(n))`` with ``n`` their fan-in.
    """

    def __init__(
        self,
        cell: Cell,
        input_size: int,
        hidden_size: int,
        *,
        num_layers: int = 1,
        batch_first: bool = False,
        dropout: float = 0.0,
        backend: str = "auto",
        init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if not isinstance(cell, Cell):
            raise TypeError(f"cell must be an optuna_rnn.Cell, got {type(cell).__name__}")
        if not cell.learnable:
            raise ValueError(
                f"the cell {str(cell)!r} has no learnable parameter (no weight and no bias): "
                "training could not change it"
            )
        for name, value in (
            ("input_size", input_size),
            ("hidden_size", hidden_size),
            ("num_layers", num_layers),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        if not init_scale > 0:
            raise ValueError(f"init_scale must be positive, got {init_scale!r}")
        self.cell = cell
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.batch_first = batch_first
        self.dropout = dropout
        self.init_scale = init_scale
        self.backend = backend
        self._runner = resolve_backend(backend, cell)
        self.layers = nn.ModuleList(
            CellLayer(cell, input_size if k == 0 else hidden_size, hidden_size)
            for k in range(num_layers)
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-draw every parameter at ``init_scale``."""
        for layer in self.layers:
            layer.reset_parameters(self.cell, self.init_scale)

    def __getstate__(self) -> dict[str, Any]:
        """The module without its backend's runner (compiled code, not data), for
        ``copy.deepcopy`` and pickling: :meth:`__setstate__` resolves it again."""
        state = dict(self.__dict__)
        del state["_runner"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._runner = resolve_backend(self.backend, self.cell)

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"states={self.cell.states}, backend={self.backend!r}"
        )

    def forward(
        self, input: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        if not isinstance(input, torch.Tensor) or input.dim() not in (2, 3):
            shape = tuple(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
            raise ValueError(f"CellRNN expects a 2-D (unbatched) or 3-D input, got {shape}")
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(1)
        if batched and self.batch_first:
            x = x.transpose(0, 1)
        if x.shape[-1] != self.input_size:
            raise ValueError(
                f"input has {x.shape[-1]} features, expected input_size={self.input_size}"
            )
        if x.shape[0] == 0:
            raise ValueError("the input sequence is empty")
        states = self._initial_states(state, x, batched)
        finals: list[tuple[torch.Tensor, ...]] = []
        for k, layer in enumerate(self.layers):
            if k > 0 and self.dropout and self.training:
                x = nn.functional.dropout(x, self.dropout, training=True)
            layer_x = x @ layer.proj.T if layer.proj is not None else x
            x, final = self._runner(layer.params, layer_x, tuple(s[k] for s in states))
            finals.append(final)
        stacked = tuple(torch.stack([f[i] for f in finals]) for i in range(len(self.cell.states)))
        if not batched:
            x = x.squeeze(1)
            stacked = tuple(s.squeeze(1) for s in stacked)
        elif self.batch_first:
            x = x.transpose(0, 1)
        return x, stacked[0] if len(stacked) == 1 else stacked

    def _initial_states(
        self, state: State | None, x: torch.Tensor, batched: bool
    ) -> tuple[torch.Tensor, ...]:
        n = len(self.cell.states)
        shape = (self.num_layers, x.shape[1], self.hidden_size)
        if state is None:
            return tuple(x.new_zeros(shape) for _ in range(n))
        given = (state,) if isinstance(state, torch.Tensor) else tuple(state)
        if (n == 1) != isinstance(state, torch.Tensor) or len(given) != n:
            raise ValueError(
                f"this cell has states {self.cell.states}: pass "
                + ("one tensor" if n == 1 else f"a tuple of {n} tensors")
            )
        out = []
        for name, s in zip(self.cell.states, given):
            if not isinstance(s, torch.Tensor):
                raise TypeError(f"state {name!r} must be a tensor, got {type(s).__name__}")
            s = s if batched else s.unsqueeze(1)
            if tuple(s.shape) != shape:
                expected = shape if batched else (shape[0], shape[2])
                got = tuple(s.shape) if batched else tuple(s.shape[:1] + s.shape[2:])
                raise ValueError(f"state {name!r} has shape {got}, expected {expected}")
            out.append(s)
        return tuple(out)
