"""The "auto" backend: per call, the fastest backend that runs the cell on that device."""

from __future__ import annotations

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.kernels.layer import fused_backend
from optuna_rnn.kernels.native import native_backend, native_kind
from optuna_rnn.nn.backends import LayerParams, LayerRunner
from optuna_rnn.nn.reference import reference_backend

__all__ = ["auto_backend"]


def auto_backend(cell: Cell) -> LayerRunner:
    """The fastest backend for each call, as ``benchmarks/kernels.py`` and
    ``benchmarks/short_sequences.py`` measure it. On the CPU: native (oneDNN) for exact
    LSTM cells; the reference for one-step sequences (sampling a step at a time), where
    the fused call's fixed cost (packing the weights, the x maps' product) is not yet paid
    back; fused everywhere else (it beats PyTorch's GRU, which has no oneDNN kernel
    there). On CUDA: fused for every cell, its time loops replayed as CUDA graphs (on an
    H200 native cuDNN took 1.3-1.8x fused's time at two of the benchmark's three sizes,
    0.85-1.0x at the third)."""
    kind = native_kind(cell)
    fused = fused_backend(cell)
    native = native_backend(cell) if kind == "lstm" else None
    reference = reference_backend(cell)

    def run(
        params: LayerParams, x: torch.Tensor, states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        if native is not None and x.device.type == "cpu":
            return native(params, x, states)
        if x.shape[0] == 1 and x.device.type == "cpu":
            return reference(params, x, states)
        return fused(params, x, states)

    return run
