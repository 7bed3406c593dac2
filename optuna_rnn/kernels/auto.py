"""The "auto" backend: per call, the fastest backend that runs the cell on that device."""

from __future__ import annotations

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.kernels.fused import fused_backend
from optuna_rnn.kernels.native import native_backend, native_kind
from optuna_rnn.nn.backends import LayerParams, LayerRunner

__all__ = ["auto_backend"]


def auto_backend(cell: Cell) -> LayerRunner:
    """The fastest backend for each call: native on CUDA for exact LSTM/GRU cells (cuDNN),
    fused everywhere else (it beats PyTorch's CPU GRU and matches its CPU LSTM)."""
    fused = fused_backend(cell)
    native = native_backend(cell) if native_kind(cell) else None

    def run(
        params: LayerParams, x: torch.Tensor, states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if native is not None and x.is_cuda:
            return native(params, x, states)
        return fused(params, x, states)

    return run
