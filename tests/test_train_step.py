"""The autograd-free training step is today's autograd step, float rounding aside.

Twin models from the same weights, each on its own :class:`FlatOptimizer`: one takes
:class:`~optuna_rnn.train.step.TrainStep`, the other ``training_loss`` and ``backward``.
Their loss and every parameter's gradient agree within 1e-5 relative, for LSTM, GRU and
the paper's mutants MUT1 and MUT2, one and two layers, with dropout (the same masks) and
carried state, below and above the fused loss's class count; ``train`` follows the
autograd trainer's 200-step loss curve within 1% with SGD and Adam; and the trainer
takes the autograd step wherever the step does not apply.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import hypothesis.strategies as st
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, example, given, settings
from torch import nn

from optuna_rnn.cell import Cell, zoo
from optuna_rnn.spaces import GatedSpace, GraphSpace
from optuna_rnn.tasks import Task
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.tasks.stream import StreamTask
from optuna_rnn.tasks.vocab import Vocabulary
from optuna_rnn.train import SequenceModel, TrainConfig, build_model, train
from optuna_rnn.train import step as step_module
from optuna_rnn.train.flat import FlatOptimizer
from optuna_rnn.train.loss import FUSED_MIN_CLASSES, LogitBuffer, training_loss
from optuna_rnn.train.step import plan_step

pytestmark = pytest.mark.usefixtures("one_thread")

CELLS = ("lstm", "gru", "mut1", "mut2")


@pytest.fixture(scope="module")
def memorization() -> Memorization:
    """Only the answers scored; 10 classes."""
    return Memorization(length=4, alphabet=8, eval_size=40)


@pytest.fixture(scope="module")
def words() -> StreamTask:
    """A stream of a 600-word vocabulary (the blockwise loss), its state carried."""
    rng = np.random.default_rng(1)
    ids = rng.zipf(1.3, 9_000) % 600
    ids[1::2] = (ids[::2] * 5 + 3) % 600
    parts = torch.from_numpy(ids.astype(np.int64)).split([6_000, 1_500, 1_500])
    streams = dict(zip(("train", "valid", "test"), parts, strict=True))
    return StreamTask(Vocabulary([f"w{i}" for i in range(600)]), streams, bptt=9)


def _model(cell: str | Cell, task: Task, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    kwargs.setdefault("hidden_size", 20)
    return build_model(
        zoo.get(cell) if isinstance(cell, str) else cell, task, backend="fused", **kwargs
    )


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp(min=1e-30))


def _as_tuple(state: Any) -> tuple[torch.Tensor, ...]:
    return (state,) if isinstance(state, torch.Tensor) else tuple(state)


def _compare_steps(
    task: Task, cell: str | Cell, batches: list[Any], *, within: float | None = None, **kwargs: Any
) -> list[tuple[float, float, float]]:
    """Both steps over ``batches`` (state carried where the batch says), the weights
    left as they are: per batch, the two losses and the worst parameter gradient's
    relative difference; asserts the next states agree. ``within``: for any cell a search
    may propose, where the step may not apply (then no batch is compared) and where a
    cell's values may grow without bound: the comparison stops at the first batch whose
    reference loss or next states leave ``[-within, within]``, where float32 rounding,
    amplified step after step, is all that is left to compare."""
    fast_model, reference = _model(cell, task, **kwargs), _model(cell, task, **kwargs)
    plan = plan_step(fast_model, task)
    if plan is None and within is not None:
        return []
    assert plan is not None
    out = []
    with (
        FlatOptimizer(list(fast_model.parameters()), "sgd", 0.1, groups=plan.groups) as flat,
        FlatOptimizer(list(reference.parameters()), "sgd", 0.1) as other,
    ):
        step = plan.bind(flat)
        assert step is not None
        state = None
        for k, batch in enumerate(batches):
            carried = state if batch.carry_state else None
            torch.manual_seed(100 + k)  # the same dropout masks
            value, fast_state = step(batch, carried)
            torch.manual_seed(100 + k)
            loss, state = training_loss(reference, task, batch, carried, LogitBuffer())
            other.zero_grad()
            loss.backward()
            state = tuple(s.detach() for s in _as_tuple(state))
            if within is not None and not (
                abs(loss.item()) <= within and all(s.abs().max() <= within for s in state)
            ):
                return out
            for a, b in zip(_as_tuple(fast_state), state, strict=True):
                assert _relative(a, b) <= 1e-5
            worst = max(
                _relative(p.grad, q.grad)
                for p, q in zip(fast_model.parameters(), reference.parameters(), strict=True)
            )
            out.append((value, loss.item(), worst))
            state = state[0] if len(state) == 1 else state
    return out


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("which", ["memorization", "words"])
@pytest.mark.parametrize(("layers", "dropout"), [(1, 0.0), (2, 0.0), (2, 0.4)])
def test_the_step_gives_the_autograd_steps_loss_and_gradients(
    cell: str, which: str, layers: int, dropout: float, request: pytest.FixtureRequest
) -> None:
    task = request.getfixturevalue(which)
    # Three batches: on the stream the second and third start from the carried state.
    batches = list(itertools.islice(task.train_batches(8, seed=3), 3))
    for value, reference, worst in _compare_steps(
        task, cell, batches, num_layers=layers, dropout=dropout
    ):
        assert value == pytest.approx(reference, rel=1e-5)
        assert worst <= 1e-5


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_small_loss_without_a_compiler_gives_the_same_step(
    cell: str, memorization: Memorization, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the C loss cannot be built, the small decoders' loss runs torch's kernels."""
    monkeypatch.setattr(step_module.softmax, "available", lambda like: False)
    batches = list(itertools.islice(memorization.train_batches(8, seed=3), 2))
    for value, reference, worst in _compare_steps(memorization, cell, batches):
        assert value == pytest.approx(reference, rel=1e-5)
        assert worst <= 1e-5


def test_the_tasks_cover_both_losses_and_both_input_paths(
    memorization: Memorization, words: StreamTask
) -> None:
    """Memorisation's few symbols go through the vocabulary (the x maps looked up, their
    gradients summed per symbol); the words' vocabulary is larger than a batch."""
    assert memorization.output_size < FUSED_MIN_CLASSES <= words.output_size
    for task, looked_up in ((memorization, True), (words, False)):
        model = _model("gru", task)
        plan = plan_step(model, task)
        assert plan is not None
        with FlatOptimizer(list(model.parameters()), "sgd", 0.1, groups=plan.groups) as flat:
            step = plan.bind(flat)
            assert step is not None
            tokens = next(task.train_batches(8, seed=3)).inputs.reshape(-1)
            assert step._looks_up(tokens.shape[0]) == looked_up
    first = list(itertools.islice(words.train_batches(8, seed=3), 3))
    assert [b.carry_state for b in first] == [False, True, True]


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cell=st.sampled_from(CELLS),
    hidden=st.integers(3, 33),
    batch=st.integers(1, 9),
    layers=st.integers(1, 3),
    dropout=st.sampled_from([0.0, 0.25]),
    seed=st.integers(0, 50),
)
def test_any_width_batch_and_depth_gives_the_autograd_gradients(
    memorization: Memorization,
    cell: str,
    hidden: int,
    batch: int,
    layers: int,
    dropout: float,
    seed: int,
) -> None:
    batches = [next(memorization.train_batches(batch, seed=seed))]
    [(value, reference, worst)] = _compare_steps(
        memorization, cell, batches, hidden_size=hidden, num_layers=layers, dropout=dropout
    )
    assert value == pytest.approx(reference, rel=1e-5)
    assert worst <= 1e-5


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    space=st.sampled_from([GatedSpace(), GraphSpace()]),
    seed=st.integers(0, 2**32 - 1),
    layers=st.integers(1, 2),
    dropout=st.sampled_from([0.0, 0.25]),
)
@example(space=GraphSpace(), seed=266, layers=1, dropout=0.0)  # explodes on the stream
def test_any_cell_of_the_spaces_gives_the_autograd_gradients(
    memorization: Memorization,
    words: StreamTask,
    space: Any,
    seed: int,
    layers: int,
    dropout: float,
) -> None:
    """Whatever a search proposes: cells with no recurrent product, cells that read raw
    x, that feed x through a diagonal only, that export nodes; two batch lengths, so
    a second shape's buffers are made beside the first's. Cells whose values explode
    (GraphSpace draws polynomial recurrences, ``h' = c (W c - c (h + 1))``, whose loss
    reaches 1e35 in a batch) are compared only while they stay within 1e4."""
    cell, _ = space.sample(np.random.default_rng(seed))
    compared = 0
    for task in (memorization, words):
        batches = [next(task.train_batches(b, seed=seed % 7)) for b in (5, 6, 5)]
        for value, reference, worst in _compare_steps(
            task, cell, batches, within=1e4, num_layers=layers, dropout=dropout
        ):
            assert value == pytest.approx(reference, rel=1e-5, abs=1e-6)
            assert worst <= 1e-5
            compared += 1
    assume(compared > 0)


def test_a_batch_with_nothing_scored_has_zero_loss_and_gradients(
    memorization: Memorization,
) -> None:
    batch = next(memorization.train_batches(4, seed=0))
    batch = type(batch)(batch.inputs, batch.targets, torch.zeros_like(batch.mask))
    model = _model("gru", memorization)
    plan = plan_step(model, memorization)
    assert plan is not None
    with FlatOptimizer(list(model.parameters()), "sgd", 0.1, groups=plan.groups) as flat:
        flat.grad.fill_(1.0)
        step = plan.bind(flat)
        assert step is not None
        value, _ = step(batch)
        assert value == 0.0 and not flat.grad.any()


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    ("which", "optimizer", "learning_rate", "layers"),
    [("memorization", "sgd", 1.0, 1), ("words", "adam", 0.01, 2)],
)
def test_training_follows_the_autograd_trainers_loss_curve(
    cell: str,
    which: str,
    optimizer: str,
    learning_rate: float,
    layers: int,
    request: pytest.FixtureRequest,
) -> None:
    task = request.getfixturevalue(which)
    config = TrainConfig(
        learning_rate=learning_rate,
        max_grad_norm=5.0,
        optimizer=optimizer,
        max_steps=200,
        eval_every=100,
        seed=2,
    )
    assert plan_step(_model(cell, task, num_layers=layers), task) is not None
    fast = train(_model(cell, task, num_layers=layers), task, config)
    reference_model = _model(cell, task, num_layers=layers)
    reference = train(reference_model, task, dataclasses.replace(config, step="autograd"))
    assert len(fast.losses) == len(reference.losses) == 200
    assert fast.losses[0] == pytest.approx(reference.losses[0], rel=1e-5)
    worst = max(abs(a - b) / b for a, b in zip(fast.losses, reference.losses, strict=True))
    assert worst <= 0.01
    assert [h[0] for h in fast.history] == [h[0] for h in reference.history]
    # Training did something: the curve fell, so agreement is not two flat lines.
    assert np.mean(reference.losses[-20:]) < reference.losses[0] - 0.1


def test_the_parameters_stay_the_models_own_with_their_state_dict(
    memorization: Memorization,
) -> None:
    model = _model("lstm", memorization, num_layers=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ids = [id(p) for p in model.parameters()]
    plan = plan_step(model, memorization)
    assert plan is not None
    with FlatOptimizer(list(model.parameters()), "sgd", 0.1, groups=plan.groups) as flat:
        assert [id(p) for p in model.parameters()] == ids
        state = model.state_dict()
        assert state.keys() == before.keys()
        assert all(torch.equal(state[k], v) for k, v in before.items())
        for group in plan.groups:  # a stack is one view of the flat buffer
            span = flat.span(group)
            assert torch.equal(flat.data[span], torch.cat([p.reshape(-1) for p in group]))
            assert group[0].data_ptr() == flat.data[span].data_ptr()
    home = {p.untyped_storage().data_ptr() for p in model.parameters()}
    assert len(home) == len(ids)  # each its own storage again


class _Bernoulli(Memorization):
    """A task with its own loss."""

    def loss(self, logits: torch.Tensor, batch: Any) -> torch.Tensor:
        return 2.0 * super().loss(logits, batch)


@pytest.mark.parametrize(
    "case",
    [
        "reference backend",
        "native lstm",
        "own loss",
        "frozen",
        "dense inputs",
        "not a SequenceModel",
    ],
)
def test_the_step_does_not_apply_where_it_cannot_run(case: str, memorization: Memorization) -> None:
    task: Task = memorization
    model: nn.Module = _model("gru", task)
    if case == "reference backend":
        torch.manual_seed(0)
        model = build_model(zoo.get("gru"), task, hidden_size=20, backend="reference")
    elif case == "native lstm":  # oneDNN runs it
        model = build_model(zoo.get("lstm"), task, hidden_size=20, backend="native")
    elif case == "own loss":
        task = _Bernoulli(length=4, alphabet=8, eval_size=40)
    elif case == "frozen":
        model.encoder.requires_grad_(False)
    elif case == "dense inputs":
        model = SequenceModel(
            zoo.get("gru"),
            input_kind="dense",
            input_size=3,
            output_size=task.output_size,
            hidden_size=20,
            backend="fused",
        )
    else:
        model = nn.Sequential(model)
    assert plan_step(model, task) is None


@pytest.mark.parametrize("cell", ["mut1", "lstm"])
def test_auto_runs_the_step_fused(cell: str, memorization: Memorization) -> None:
    """Under "auto" the step runs the fused passes, the exact LSTM's too (which the
    model's own forward runs through oneDNN): the same gradients as its autograd step."""
    torch.manual_seed(0)
    model = build_model(zoo.get(cell), memorization, hidden_size=20, backend="auto")
    torch.manual_seed(0)
    reference = build_model(zoo.get(cell), memorization, hidden_size=20, backend="auto")
    plan = plan_step(model, memorization)
    assert plan is not None
    batch = next(memorization.train_batches(8, seed=0))
    with (
        FlatOptimizer(list(model.parameters()), "sgd", 0.1, groups=plan.groups) as flat,
        FlatOptimizer(list(reference.parameters()), "sgd", 0.1),
    ):
        step = plan.bind(flat)
        assert step is not None
        value, _ = step(batch)
        loss, _ = training_loss(reference, memorization, batch, None, LogitBuffer())
        loss.backward()
        assert value == pytest.approx(loss.item(), rel=1e-5)
        for p, q in zip(model.parameters(), reference.parameters(), strict=True):
            assert _relative(p.grad, q.grad) <= 1e-5


def test_the_fallback_trains_as_before(memorization: Memorization) -> None:
    """The autograd path still runs (a reference model), and so does a forced one."""
    config = TrainConfig(learning_rate=1.0, max_grad_norm=5.0, max_steps=30, eval_every=30)
    torch.manual_seed(0)
    reference = build_model(zoo.get("gru"), memorization, hidden_size=20, backend="reference")
    losses = train(reference, memorization, config).losses
    forced = train(
        _model("gru", memorization),
        memorization,
        dataclasses.replace(config, step="autograd"),
    ).losses
    fast = train(_model("gru", memorization), memorization, config).losses
    assert fast == pytest.approx(forced, rel=1e-4)
    assert fast == pytest.approx(losses, rel=1e-3)


def test_groups_that_are_not_the_parameters_are_refused(memorization: Memorization) -> None:
    model = _model("gru", memorization)
    parameters = list(model.parameters())
    with pytest.raises(ValueError, match="groups must hold distinct parameters"):
        FlatOptimizer(parameters[1:], "sgd", 0.1, groups=[parameters[:2]])
    with pytest.raises(ValueError, match="groups must hold distinct parameters"):
        FlatOptimizer(parameters, "sgd", 0.1, groups=[parameters[:2], parameters[1:3]])


def test_a_bad_step_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="step must be"):
        TrainConfig(learning_rate=0.1, max_grad_norm=1.0, step="fast")  # type: ignore[arg-type]
