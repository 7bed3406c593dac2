"""A fused layer's time loop in Python: one product or kernel launch at a time.

Where the loop cannot run as one call into C (no compiler, CUDA, the "torch" or
"triton" pointwise executors), each step runs its rounds' products with ``torch.mm`` and
each stage's pointwise program through :meth:`FusedCell.step_fn
<optuna_rnn.kernels.fused.FusedCell.step_fn>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels.buffers import grad
from optuna_rnn.kernels.layout import slot
from optuna_rnn.kernels.plan import products_by_round

if TYPE_CHECKING:
    from optuna_rnn.kernels.fused import FusedCell

__all__ = ["python_loop"]


def python_loop(core: FusedCell, backward: bool, buffers: Mapping[str, torch.Tensor]) -> None:
    """One direction's time loop in Python: a product or a kernel launch at a time."""
    plan = core.plan
    T, B, H = buffers[names.state(0)].shape
    T -= 1  # a state's buffer holds the initial state and one row per step
    programs = core.backward_programs if backward else core.forward_programs
    kernels = [core.step_fn(p, buffers, T, B, H) if p else None for p in programs]
    by_round = products_by_round(plan)
    weights = [
        buffers[names.weight(p)].contiguous() for p in range(len(plan.products))
    ]  # faster on the CPU
    if not backward:
        sources = [slot(plan, ("val", prod.source)).views(buffers, T, H) for prod in plan.products]
        targets = [buffers[names.product(p)].unbind(0) for p in range(len(plan.products))]
        for t in range(T):
            for k, kernel in enumerate(kernels):
                for p in by_round[k]:
                    if plan.xw_blocks[p] is None:
                        torch.mm(sources[p][t], weights[p], out=targets[p][t])
                    else:
                        targets[p][t].addmm_(sources[p][t], weights[p])
                if kernel is not None:
                    kernel(t)
        return
    grads = [slot(plan, ("grad", prod.source)).views(buffers, T, H) for prod in plan.products]
    douts = [buffers[grad(names.product(p))].unbind(0) for p in range(len(plan.products))]
    for t in reversed(range(T)):
        for k in reversed(range(len(kernels))):
            if kernels[k] is not None:
                kernels[k](t)
            for p in by_round[k]:
                grads[p][t].addmm_(douts[p][t], weights[p])
