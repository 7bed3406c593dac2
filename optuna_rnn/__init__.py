"""optuna-rnn: search recurrent-cell architectures with Optuna.

Names are imported lazily so that ``import optuna_rnn`` (and the samplers and search
spaces) never imports torch; only the modules that train pay for it.
"""

from __future__ import annotations

import importlib
from typing import Any

from optuna_rnn.cell import Cell, CellError

__version__ = "0.1.0"

_LAZY: dict[str, tuple[str, str | None]] = {
    "zoo": ("optuna_rnn.cell.zoo", None),
    "mutate": ("optuna_rnn.cell.mutate", "mutate"),
    "CellRNN": ("optuna_rnn.nn", "CellRNN"),
    "tasks": ("optuna_rnn.tasks", None),
    "GatedSpace": ("optuna_rnn.spaces", "GatedSpace"),
    "GraphSpace": ("optuna_rnn.spaces", "GraphSpace"),
    "make_objective": ("optuna_rnn.objective", "make_objective"),
    "hidden_size_for_budget": ("optuna_rnn.train", "hidden_size_for_budget"),
    "seed_study": ("optuna_rnn.study", "seed_study"),
    "leaderboard": ("optuna_rnn.study", "leaderboard"),
    "CellEvolutionSampler": ("optuna_rnn.samplers", "CellEvolutionSampler"),
    "make_multitask_objective": ("optuna_rnn.multitask", "make_multitask_objective"),
    "load_model": ("optuna_rnn.models", "load_model"),
    "best_cell": ("optuna_rnn.models", "best_cell"),
}

__all__ = ["Cell", "CellError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'optuna_rnn' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
