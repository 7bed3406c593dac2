"""Parameter counts and the hidden width that meets a parameter budget.

The paper compares cells at equal parameter counts: the width follows from the budget.
Counts come from the cell IR alone (no model is built), so the width of a 20M-parameter
model is found in microseconds. The model (:mod:`optuna_rnn.train.model`) embeds or
projects the input to the hidden width, stacks ``num_layers`` cells of that width and
ends in a linear output layer; :func:`count_parameters` counts exactly that.
"""

from __future__ import annotations

import math
from typing import Literal

from optuna_rnn.cell.ir import BIAS, LINEAR, Cell

__all__ = ["count_parameters", "hidden_size_for_budget"]

InputKind = Literal["tokens", "dense"]


def _cell_coefficients(cell: Cell) -> tuple[int, int]:
    """``(a, b)`` with one layer's parameters ``a * H**2 + b * H`` at width ``H``.

    Every linear map is a square ``H x H`` matrix (the layer input is already ``H`` wide)
    and every bias vector is ``H`` long.
    """
    linear = sum(1 for n in cell.nodes if n.op == LINEAR)
    bias = sum(1 for n in cell.nodes if n.op == BIAS)
    return linear, bias


def count_parameters(
    cell: Cell,
    hidden_size: int,
    *,
    input_size: int,
    output_size: int,
    num_layers: int = 1,
    input_kind: InputKind = "tokens",
) -> int:
    """Trainable parameters of the model built by :func:`optuna_rnn.train.build_model`.

    ``input_kind="tokens"``: an ``input_size x H`` embedding; ``"dense"``: a linear
    projection with bias. The output layer is ``H x output_size`` with bias.
    """
    _check_sizes(
        hidden_size=hidden_size,
        input_size=input_size,
        output_size=output_size,
        num_layers=num_layers,
        input_kind=input_kind,
    )
    a, b = _cell_coefficients(cell)
    h = hidden_size
    embed = input_size * h + (h if input_kind == "dense" else 0)
    return embed + num_layers * (a * h * h + b * h) + h * output_size + output_size


def hidden_size_for_budget(
    cell: Cell,
    budget: int,
    *,
    input_size: int,
    output_size: int,
    num_layers: int = 1,
    input_kind: InputKind = "tokens",
) -> int:
    """The hidden width whose model has the parameter count closest to ``budget``.

    The count grows by about ``2 * a * L * H`` per unit of width, so the result is within
    2% of the budget whenever that step is under 4% of it (widths from a few dozen up);
    for tiny budgets it is the closest count a whole width allows. Raises ``ValueError``
    when even width 1 exceeds the budget.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget must be a positive int, got {budget!r}")

    def count(h: int) -> int:
        return count_parameters(
            cell,
            h,
            input_size=input_size,
            output_size=output_size,
            num_layers=num_layers,
            input_kind=input_kind,
        )

    smallest = count(1)
    if smallest > budget:
        raise ValueError(
            f"a budget of {budget} parameters is below the smallest model for this cell and "
            f"task ({smallest} parameters at width 1)"
        )
    a, b = _cell_coefficients(cell)
    quad = num_layers * a
    lin = num_layers * b + input_size + output_size + (1 if input_kind == "dense" else 0)
    const = output_size - budget
    if quad:
        guess = (-lin + math.sqrt(lin * lin - 4 * quad * const)) / (2 * quad)
    else:
        guess = -const / lin
    # The count is increasing in H: the best width is next to the real root.
    candidates = {max(1, math.floor(guess) + k) for k in (-1, 0, 1, 2)}
    return min(sorted(candidates), key=lambda h: abs(count(h) - budget))


def _check_sizes(
    *, hidden_size: int, input_size: int, output_size: int, num_layers: int, input_kind: str
) -> None:
    for name, value in (
        ("hidden_size", hidden_size),
        ("input_size", input_size),
        ("output_size", output_size),
        ("num_layers", num_layers),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if input_kind not in ("tokens", "dense"):
        raise ValueError(f"input_kind must be 'tokens' or 'dense', got {input_kind!r}")
