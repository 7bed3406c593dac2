"""hidden_size_for_budget: the width whose model is closest to a parameter budget."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optuna_rnn.cell import zoo
from optuna_rnn.train import count_parameters, hidden_size_for_budget

SIZES = {"input_size": 30, "output_size": 30}


@pytest.mark.parametrize("name", zoo.names())
@pytest.mark.parametrize("num_layers", [1, 2, 3, 4])
@pytest.mark.parametrize("budget", [100_000, 1_000_000, 5_000_000, 20_000_000])
def test_within_two_percent_of_realistic_budgets(name: str, num_layers: int, budget: int) -> None:
    cell = zoo.get(name)
    width = hidden_size_for_budget(cell, budget, num_layers=num_layers, **SIZES)
    count = count_parameters(cell, width, num_layers=num_layers, **SIZES)
    assert abs(count - budget) <= 0.02 * budget


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(zoo.names()),
    budget=st.integers(2_000, 200_000),
    num_layers=st.integers(1, 4),
    input_kind=st.sampled_from(["tokens", "dense"]),
)
def test_width_is_the_closest(name: str, budget: int, num_layers: int, input_kind: str) -> None:
    cell = zoo.get(name)
    kw = dict(num_layers=num_layers, input_kind=input_kind, **SIZES)
    width = hidden_size_for_budget(cell, budget, **kw)
    # The count increases with the width, so the closest width beats both neighbours.
    error = abs(count_parameters(cell, width, **kw) - budget)
    for other in (width - 1, width + 1):
        if other >= 1:
            assert error <= abs(count_parameters(cell, other, **kw) - budget)


def test_counts_grow_with_width_and_layers() -> None:
    lstm, gru = zoo.get("lstm"), zoo.get("gru")
    # LSTM: 8 square maps and 4 biases per layer; GRU: 6 and 3.
    assert count_parameters(lstm, 10, num_layers=2, **SIZES) == 30 * 10 + 2 * (800 + 40) + 330
    assert count_parameters(gru, 10, num_layers=1, **SIZES) == 300 + 600 + 30 + 330


def test_budget_below_the_smallest_model_is_an_error() -> None:
    with pytest.raises(ValueError, match="below the smallest model"):
        hidden_size_for_budget(zoo.get("lstm"), 50, **SIZES)
    with pytest.raises(ValueError, match="budget must be a positive int"):
        hidden_size_for_budget(zoo.get("lstm"), 0, **SIZES)
    with pytest.raises(ValueError, match="input_kind"):
        count_parameters(zoo.get("lstm"), 8, input_kind="pixels", **SIZES)
