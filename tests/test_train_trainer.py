"""The training loop on a tiny memorisation task: learning, checkpoints, budgets, divergence."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from optuna_rnn.cell import zoo
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.tasks.text import TextFile
from optuna_rnn.train import Diverged, TrainConfig, build_model, train, validate

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def task() -> Memorization:
    return Memorization(length=3, alphabet=6, eval_size=200)


def _model(task: Memorization, name: str = "gru", seed: int = 0, **kw: float):
    torch.manual_seed(seed)
    return build_model(zoo.get(name), task, hidden_size=16, backend="reference", **kw)


def test_gru_learns_and_the_best_checkpoint_is_kept(task: Memorization) -> None:
    model = _model(task)
    seen: list[tuple[int, float]] = []
    result = train(
        model,
        task,
        TrainConfig(learning_rate=1.0, max_grad_norm=5.0, max_steps=300, eval_every=50),
        on_evaluate=lambda step, valid: seen.append((step, valid["score"])),
    )
    assert [s for s, _ in seen] == [50, 100, 150, 200, 250, 300]
    assert result.steps == 300 and result.ended_because == "max_steps"
    # Chance is 1/7; the GRU reproduces three letters well within 300 steps.
    assert result.valid["score"] > 0.6
    assert result.valid["score"] == max(score for _, score in seen)
    assert result.best_step == max(seen, key=lambda s: s[1])[0]
    # The model holds the best checkpoint's weights.
    assert validate(model, task, "valid", 20) == pytest.approx(result.valid)
    assert result.tokens_per_second > 0


def test_same_seed_same_result(task: Memorization) -> None:
    config = TrainConfig(learning_rate=0.5, max_grad_norm=1.0, max_steps=40, eval_every=20, seed=3)
    a = train(_model(task, "lstm", seed=1), task, config)
    b = train(_model(task, "lstm", seed=1), task, config)
    assert a.history == b.history


def test_huge_learning_rate_diverges(task: Memorization) -> None:
    config = TrainConfig(learning_rate=1e6, max_grad_norm=5.0, max_steps=100, eval_every=50)
    with pytest.raises(Diverged, match="training loss") as info:
        train(_model(task), task, config)
    assert info.value.step < 100


def test_time_budget_stops_after_the_step_it_runs_out(task: Memorization) -> None:
    config = TrainConfig(learning_rate=1.0, max_grad_norm=5.0, max_steps=100, max_seconds=0.0)
    result = train(_model(task), task, config)
    assert (result.steps, result.ended_because, result.best_step) == (1, "time_limit", 1)


def test_learning_rate_decays_and_training_stops_after_max_decays(task: Memorization) -> None:
    # At a learning rate of 5 with tiny clipping the loss stalls; every stall halves it.
    config = TrainConfig(
        learning_rate=5.0,
        max_grad_norm=0.1,
        max_steps=400,
        eval_every=5,
        lr_decay=2.0,
        max_decays=2,
    )
    result = train(_model(task, "tanh"), task, config)
    assert result.ended_because == "converged"
    losses = [loss for _, loss, _ in result.history]
    stalls = sum(1 for k in range(1, len(losses)) if losses[k] >= min(losses[:k]))
    assert stalls == 2 and result.steps == result.history[-1][0] < 400


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("optimizer", "rmsprop"),
        ("max_steps", 0),
        ("learning_rate", -1.0),
        ("lr_decay", 0.5),
        ("divergence_factor", 1.0),
    ],
)
def test_bad_config_is_an_error(field: str, value: object) -> None:
    kw = {"learning_rate": 1.0, "max_grad_norm": 1.0, field: value}
    with pytest.raises(ValueError, match=field):
        TrainConfig(**kw)


def test_adam_trains_too(task: Memorization) -> None:
    config = TrainConfig(
        learning_rate=1e-2, max_grad_norm=5.0, optimizer="adam", max_steps=60, eval_every=30
    )
    result = train(_model(task), task, config)
    assert math.isfinite(result.valid["loss"])
    assert result.history[-1][1] < math.log(task.output_size)


def test_a_stream_carries_its_state_across_batches(tmp_path: Path) -> None:
    path = tmp_path / "text.txt"
    path.write_text("the cat sat on the mat. " * 200, encoding="utf-8")
    stream = TextFile(path, bptt=10)
    carried = [b.carry_state for b in itertools.islice(stream.train_batches(4, seed=0), 3)]
    assert carried == [False, True, True]
    torch.manual_seed(0)
    model = build_model(zoo.get("lstm"), stream, hidden_size=16, backend="reference")
    config = TrainConfig(
        learning_rate=1.0, max_grad_norm=5.0, max_steps=60, eval_every=30, batch_size=4
    )
    result = train(model, stream, config)
    # Twelve symbols: chance is a perplexity of 12; the repeated sentence is learnt fast.
    assert result.valid["score"] < 6


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> TextFile:
    path = tmp_path_factory.mktemp("text") / "text.txt"
    rng = np.random.default_rng(0)
    path.write_text(" ".join(rng.choice([f"w{i}" for i in range(200)], 6000)) + "\n")
    return TextFile(path, bptt=12)


def test_a_loss_that_climbs_far_above_its_best_is_divergence(text: TextFile) -> None:
    # Adam at a learning rate of 1 throws the GRU's loss up within a few steps, yet
    # never to 100 times the first loss: the rule of the first loss let such runs
    # finish (a PTB run at loss 34.5, first loss 9.2, perplexity 1e14, was COMPLETE).
    config = TrainConfig(
        learning_rate=1.0, max_grad_norm=5.0, optimizer="adam", max_steps=200, eval_every=50
    )
    torch.manual_seed(0)
    model = build_model(zoo.get("gru"), text, hidden_size=32, backend="reference")
    unchecked = copy.deepcopy(model)
    with pytest.raises(Diverged, match="above its best") as info:
        train(model, text, config)
    losses = train(unchecked, text, dataclasses.replace(config, divergence_factor=1e30)).losses
    assert max(losses[: info.value.step]) < 100 * losses[0]
    assert max(losses[: info.value.step]) > losses[0] + math.log(100)


def test_a_steady_loss_is_no_divergence(text: TextFile) -> None:
    config = TrainConfig(
        learning_rate=3e-3, max_grad_norm=5.0, optimizer="adam", max_steps=200, eval_every=50
    )
    torch.manual_seed(0)
    model = build_model(zoo.get("gru"), text, hidden_size=32, backend="reference")
    result = train(model, text, config)
    assert result.steps == 200 and result.valid["score"] < text.output_size


def test_a_score_worse_than_a_hundred_times_chance_is_never_reported(text: TextFile) -> None:
    # A decoder sure of one wrong symbol: finite losses of hundreds of nats from the
    # first step, so no training loss climbs above its best, but the validation
    # perplexity (about e^500) would be reported.
    torch.manual_seed(0)
    model = build_model(zoo.get("gru"), text, hidden_size=16, backend="reference")
    with torch.no_grad():
        model.decoder.bias[0] = 500.0
    config = TrainConfig(learning_rate=1e-6, max_grad_norm=5.0, max_steps=5, eval_every=5)
    with pytest.raises(Diverged, match="validation loss") as info:
        train(model, text, config)
    assert info.value.step == 5


def test_a_validation_subsample_picks_the_checkpoint_and_the_split_scores_it(
    task: Memorization,
) -> None:
    config = TrainConfig(
        learning_rate=1.0, max_grad_norm=5.0, max_steps=150, eval_every=50, valid_batches=2
    )
    seen: list[dict[str, float]] = []
    model = _model(task)
    result = train(model, task, config, on_evaluate=lambda step, valid: seen.append(valid))
    # During training: the split's first two batches (40 of its 200 sequences).
    first_two = validate(copy.deepcopy(model), task, "valid", 20, max_batches=2)
    assert seen[[s for s, _, _ in result.history].index(result.best_step)] == first_two
    # Reported: the kept weights on the whole split.
    assert result.valid == validate(model, task, "valid", 20)
    assert result.valid != first_two


def test_valid_batches_must_be_positive() -> None:
    with pytest.raises(ValueError, match="valid_batches"):
        TrainConfig(learning_rate=1.0, max_grad_norm=1.0, valid_batches=0)
