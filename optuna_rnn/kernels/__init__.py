"""Fused training kernels: a per-cell plan, symbolic backward, generated pointwise code."""

from optuna_rnn.kernels.build import cache_dir
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.layer import FusedLayer, fused_backend
from optuna_rnn.kernels.plan import Plan, make_plan

__all__ = ["FusedCell", "FusedLayer", "Plan", "cache_dir", "fused_backend", "make_plan"]
