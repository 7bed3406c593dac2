"""Adam's update of one flat tensor: PyTorch's fused kernel where it exists, else public ops.

``torch.optim.Adam(fused=True)`` runs one fused kernel per step, but its ``step()`` spends
about six times the kernel's time in Python around it (hooks, grouping, checks). The
trainer updates one flat tensor with fixed hyperparameters, so it calls the kernel
itself: ``torch._fused_adam_``, private, hence this one module with a fallback through
public tensor ops (the formulas of ``torch.optim.Adam``'s single-tensor path).
"""

from __future__ import annotations

import math

import torch

__all__ = ["adam_update_"]

_FUSED = getattr(torch, "_fused_adam_", None)


def adam_update_(
    param: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    step: torch.Tensor,
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
) -> None:
    """One Adam step of ``param`` in place; ``step`` (a 0-d float tensor) is the step
    count after this update (the caller increments it)."""
    if _FUSED is not None and param.device.type in ("cpu", "cuda"):
        _FUSED(
            [param],
            [grad],
            [exp_avg],
            [exp_avg_sq],
            [],
            [step],
            lr=lr,
            beta1=beta1,
            beta2=beta2,
            weight_decay=0.0,
            eps=eps,
            amsgrad=False,
            maximize=False,
        )
        return
    t = float(step)  # the public ops: the formulas of torch.optim.Adam's single-tensor path
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-lr / (1 - beta1**t))
