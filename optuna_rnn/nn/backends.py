"""A small registry of recurrent backends: each runs one layer of a cell over a sequence.

A backend is a factory ``factory(cell) -> runner``; the runner is called as
``runner(params, x, states) -> (out, final_states)`` with ``x`` of shape ``(T, B, I)``,
``states`` a tuple of ``(B, H)`` tensors in ``cell.states`` order, ``out`` of shape
``(T, B, H)``. Binding the cell once lets a backend plan (and compile) per cell, not
per call. Every backend reads the same :class:`LayerParams`, so one ``state_dict``
serves them all.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch

from optuna_rnn.cell import Cell

__all__ = [
    "BACKENDS",
    "LayerParams",
    "LayerRunner",
    "BackendFactory",
    "register_backend",
    "resolve_backend",
]


class LayerParams(NamedTuple):
    """One layer's parameters: matrices by weight name, vectors by bias name.

    A matrix already includes its diagonal offset (it is added at initialisation), so a
    backend computes ``operand @ weights[name].T`` for every linear map.
    """

    weights: Mapping[str, torch.Tensor]
    biases: Mapping[str, torch.Tensor]


LayerRunner = Callable[
    [LayerParams, torch.Tensor, tuple[torch.Tensor, ...]],
    tuple[torch.Tensor, tuple[torch.Tensor, ...]],
]
BackendFactory = Callable[[Cell], LayerRunner]

# name -> "module:attribute" of the factory (imported on first use) or the factory itself.
BACKENDS: dict[str, str | BackendFactory] = {
    "reference": "optuna_rnn.nn.reference:reference_backend",
    "fused": "optuna_rnn.kernels.fused:fused_backend",
}
_AUTO_ORDER: list[str] = ["fused", "reference"]


def register_backend(name: str, factory: str | BackendFactory, *, auto_rank: int | None = None) -> None:
    """Register ``factory`` under ``name``; ``auto_rank`` puts it in "auto"'s preference list.

    ``"auto"`` tries the candidates in order (lowest rank first) and uses the first whose
    factory accepts the cell (a factory refuses a cell by raising ``NotImplementedError``).
    """
    if name == "auto":
        raise ValueError("'auto' is reserved for picking a registered backend")
    BACKENDS[name] = factory
    if auto_rank is not None:
        if name in _AUTO_ORDER:
            _AUTO_ORDER.remove(name)
        _AUTO_ORDER.insert(min(auto_rank, len(_AUTO_ORDER)), name)


def _factory(name: str) -> BackendFactory:
    entry = BACKENDS[name]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
        BACKENDS[name] = entry
    return entry


def resolve_backend(name: str, cell: Cell) -> tuple[str, LayerRunner]:
    """The backend ``name`` bound to ``cell``, as ``(actual name, runner)``."""
    if name == "auto":
        for candidate in _AUTO_ORDER:
            try:
                return candidate, _factory(candidate)(cell)
            except NotImplementedError:
                continue
        raise RuntimeError("no registered backend accepts this cell")  # reference accepts all
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {sorted(BACKENDS) + ['auto']}")
    return name, _factory(name)(cell)
