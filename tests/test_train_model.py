"""The trial's model: parameter count, shapes, state carrying and seeded reproducibility."""

from __future__ import annotations

import pytest
import torch

from optuna_rnn.cell import zoo
from optuna_rnn.tasks import Batch
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.train import SequenceModel, build_model, count_parameters


@pytest.mark.parametrize("name", zoo.names())
@pytest.mark.parametrize(("input_kind", "num_layers"), [("tokens", 1), ("dense", 2), ("tokens", 3)])
def test_count_parameters_matches_the_built_model(
    name: str, input_kind: str, num_layers: int
) -> None:
    cell = zoo.get(name)
    model = SequenceModel(
        cell,
        input_kind=input_kind,
        input_size=11,
        output_size=7,
        hidden_size=9,
        num_layers=num_layers,
        backend="reference",
    )
    built = sum(p.numel() for p in model.parameters())
    assert built == count_parameters(
        cell, 9, input_size=11, output_size=7, num_layers=num_layers, input_kind=input_kind
    )


def _batch(steps: int, batch: int, vocab: int, *, carry: bool = False) -> Batch:
    gen = torch.Generator().manual_seed(steps)
    tokens = torch.randint(vocab, (steps, batch), generator=gen)
    return Batch(tokens, tokens, torch.ones(steps, batch, dtype=torch.bool), carry)


def test_forward_shapes_and_carried_state_continue_the_sequence() -> None:
    task = Memorization(length=3, alphabet=6, eval_size=20)
    torch.manual_seed(0)
    model = build_model(zoo.get("lstm"), task, hidden_size=8, num_layers=2, backend="reference")
    model.eval()
    whole = _batch(10, 4, task.input_size)
    logits, _ = model(whole)
    assert logits.shape == (10, 4, task.output_size)
    # Two halves with the state carried give the logits of the whole sequence.
    first = Batch(whole.inputs[:6], whole.targets[:6], whole.mask[:6])
    second = Batch(whole.inputs[6:], whole.targets[6:], whole.mask[6:], True)
    head, state = model(first)
    tail, _ = model(second, state)
    torch.testing.assert_close(torch.cat([head, tail]), logits)


def test_init_scale_bounds_the_embedding_and_output_weights() -> None:
    task = Memorization(length=3, alphabet=6, eval_size=20)
    model = build_model(zoo.get("gru"), task, hidden_size=16, init_scale=0.3, backend="reference")
    bound = 0.3 / 16**0.5
    for layer in (model.encoder, model.decoder):
        assert layer.weight.abs().max() <= bound
        assert layer.weight.abs().max() > bound / 2
    assert torch.count_nonzero(model.decoder.bias) == 0


def test_unknown_input_kind_is_an_error() -> None:
    with pytest.raises(ValueError, match="input_kind"):
        SequenceModel(
            zoo.get("gru"),
            input_kind="pixels",
            input_size=3,
            output_size=3,
            hidden_size=4,
            backend="reference",
        )
