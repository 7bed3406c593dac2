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
    "BackendFactory",
    "LayerParams",
    "LayerRunner",
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
    "fused": "optuna_rnn.kernels.layer:fused_backend",
    "native": "optuna_rnn.kernels.native:native_backend",
    "auto": "optuna_rnn.kernels.auto:auto_backend",
}


def register_backend(name: str, factory: str | BackendFactory) -> None:
    """Register ``factory`` (or ``"module:attribute"`` naming it) under ``name``.

    A factory refuses a cell it cannot run by raising ``NotImplementedError``.
    """
    BACKENDS[name] = factory


def _factory(name: str) -> BackendFactory:
    entry = BACKENDS[name]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
        BACKENDS[name] = entry
    return entry


def resolve_backend(name: str, cell: Cell) -> LayerRunner:
    """The backend ``name`` bound to ``cell``."""
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose from {sorted(BACKENDS)}")
    try:
        return _factory(name)(cell)
    except NotImplementedError as err:
        raise ValueError(f"backend {name!r} cannot run this cell: {err}") from None
