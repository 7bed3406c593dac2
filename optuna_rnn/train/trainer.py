"""The training loop: SGD with clipping and decay as in the paper, periodic validation.

The loop knows nothing of Optuna: it calls ``on_evaluate(step, valid)`` after every
validation (the objective reports and prunes there, by raising) and raises
:class:`Diverged` when the loss stops being a finite number or climbs far above its best.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from optuna_rnn.tasks import Batch, Metrics, Task
from optuna_rnn.train.flat import make_optimizer
from optuna_rnn.train.loss import LogitBuffer, training_loss, uses_fused_loss
from optuna_rnn.train.step import plan_step

__all__ = ["Diverged", "TrainConfig", "TrainResult", "train", "validate"]

#: ``on_evaluate(step, {"loss": ..., "score": ...})``, called after each validation.
OnEvaluate = Callable[[int, dict[str, float]], None]


class Diverged(RuntimeError):
    """The loss became NaN or infinite, climbed far above its best, or fell below chance."""

    def __init__(self, step: int, message: str) -> None:
        super().__init__(f"{message} at step {step}")
        self.step = step


@dataclass(frozen=True)
class TrainConfig:
    """How one model is trained.

    Attributes:
        learning_rate: the initial learning rate.
        max_grad_norm: gradients are clipped to this global norm before each step.
        optimizer: ``"sgd"`` (plain SGD, the paper's) or ``"adam"``.
        batch_size: sequences per batch (the paper's 20).
        max_steps: the step budget.
        max_seconds: the wall-time budget, validation included (``None``: no limit).
        eval_every: validate every this many steps (and at the last step).
        lr_decay: the learning rate is divided by this whenever the validation loss
            does not improve on the best so far.
        max_decays: stop early once the learning rate has been divided this many
            times (``None``: never).
        divergence_factor: how far, as a ratio of perplexities, the loss may climb. The
            training loss (smoothed over about ten steps) more than ``ln(factor)`` nats
            above its own best, or a validation loss more than ``ln(factor)`` above
            uniform guessing's, counts as divergence, as does a NaN or infinite loss.
            Clipping bounds each step, so a far too large learning rate grows the weights
            (and the loss) without ever overflowing: this catches that, and no score
            worse than ``factor`` times chance's perplexity is ever reported.
        valid_batches: validate on the split's first this many batches during training
            (a fixed subsample: pruning, checkpoints and decay use it), then score the
            kept weights on the whole split for :attr:`TrainResult.valid`; ``None``:
            the whole split every time.
        seed: seeds the training stream.
        step: ``"auto"``: the autograd-free step (:mod:`optuna_rnn.train.step`) where it
            applies, the autograd step elsewhere; ``"autograd"``: the autograd step
            always. Both compute the same loss and gradients, float rounding aside.
    """

    learning_rate: float
    max_grad_norm: float
    optimizer: Literal["sgd", "adam"] = "sgd"
    batch_size: int = 20
    max_steps: int = 1000
    max_seconds: float | None = None
    eval_every: int = 100
    lr_decay: float = 2.0
    max_decays: int | None = None
    divergence_factor: float = 100.0
    valid_batches: int | None = None
    seed: int = 0
    step: Literal["auto", "autograd"] = "auto"

    def __post_init__(self) -> None:
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.step not in ("auto", "autograd"):
            raise ValueError(f"step must be 'auto' or 'autograd', got {self.step!r}")
        for name in ("batch_size", "max_steps", "eval_every", "valid_batches"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not self.learning_rate > 0 or not self.max_grad_norm > 0:
            raise ValueError("learning_rate and max_grad_norm must be positive")
        if not self.lr_decay >= 1:
            raise ValueError(f"lr_decay must be at least 1, got {self.lr_decay!r}")
        if not self.divergence_factor > 1:
            raise ValueError(f"divergence_factor must exceed 1, got {self.divergence_factor!r}")


@dataclass
class TrainResult:
    """What a training run did.

    Attributes:
        steps: training steps taken.
        seconds: wall time, validation included.
        tokens_per_second: input positions (time steps x batch) trained per second of
            training time, validation excluded.
        ended_because: ``"max_steps"``, ``"time_limit"`` or ``"converged"`` (the
            learning rate was decayed ``max_decays`` times).
        best_step: the step of the best validation score; the model holds its weights.
        valid: ``{"loss", "score"}`` on the whole validation split at ``best_step``.
        history: ``(step, loss, score)`` of every validation (on the subsample when
            ``valid_batches`` is set).
        losses: the training loss of every step.
    """

    steps: int
    seconds: float
    tokens_per_second: float
    ended_because: str
    best_step: int
    valid: dict[str, float]
    history: list[tuple[int, float, float]] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)


def _detach(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach()
    if isinstance(state, (tuple, list)):
        return type(state)(_detach(s) for s in state)
    return state


class _DivergenceWatch:
    """Raises :class:`Diverged` for a loss that is not finite or climbs far above its best.

    The training loss is smoothed (a moving average over about ten steps) so that one
    hard batch is no divergence; validation losses are held against uniform guessing's.
    """

    SMOOTHING = 0.1

    def __init__(self, task: Task, factor: float) -> None:
        self.margin = math.log(factor)
        classes = task.output_size
        chance = classes * math.log(2) if task.output_kind == "bernoulli" else math.log(classes)
        self.valid_limit = chance + self.margin
        self.smooth = math.nan
        self.best = math.inf

    def train(self, step: int, value: float) -> None:
        if not math.isfinite(value):
            raise Diverged(step, f"the training loss is {value:.4g}")
        self.smooth = value if step == 1 else self.smooth + self.SMOOTHING * (value - self.smooth)
        self.best = min(self.best, self.smooth)
        if self.smooth > self.best + self.margin:
            raise Diverged(
                step,
                f"the training loss (smoothed: {self.smooth:.4g}) climbed more than "
                f"{self.margin:.3g} above its best ({self.best:.4g})",
            )

    def valid(self, step: int, valid: dict[str, float]) -> None:
        if not valid["loss"] <= self.valid_limit:
            raise Diverged(
                step,
                f"the validation loss is {valid['loss']:.4g}, above {self.valid_limit:.4g} "
                "(uniform guessing's loss plus the divergence margin)",
            )


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _to(batch: Batch, device: torch.device) -> Batch:
    """``batch`` with its tensors on ``device`` (itself when they are there already)."""
    if batch.inputs.device == device:
        return batch
    return dataclasses.replace(
        batch,
        inputs=batch.inputs.to(device),
        targets=batch.targets.to(device),
        mask=batch.mask.to(device),
    )


def validate(
    model: nn.Module, task: Task, split: str, batch_size: int, *, max_batches: int | None = None
) -> dict[str, float]:
    """``task.evaluate`` with the model in eval mode (dropout off), then back to train.

    Batches go to the model's device and the logits come back to the batch's, so a model
    on a GPU is scored by the task as it is. ``max_batches``: the split's first batches
    only. A task scored by its loss (perplexity, NLL), on a model whose training loss is
    fused (:func:`~optuna_rnn.train.loss.uses_fused_loss`), is scored through that loss:
    the same sums, without every batch's logits.
    """
    device = _device_of(model)

    def predict(batch: Batch, state: Any) -> tuple[torch.Tensor, Any]:
        logits, state = model(_to(batch, device), state)
        return logits.to(batch.inputs.device), state

    model.eval()
    try:
        if task.score_name != "accuracy" and uses_fused_loss(model, task):
            return _validate_by_loss(model, task, split, batch_size, max_batches)
        return task.evaluate(predict, split, batch_size, max_batches=max_batches)
    finally:
        model.train()


def _validate_by_loss(
    model: nn.Module, task: Task, split: str, batch_size: int, max_batches: int | None
) -> dict[str, float]:
    """``task.evaluate``'s loss and score, from :func:`training_loss` of each batch."""
    device, buffer = _device_of(model), LogitBuffer()
    total, state = Metrics(), None
    with torch.no_grad():
        for batch in itertools.islice(task.eval_batches(split, batch_size), max_batches):
            batch = _to(batch, device)
            carried = state if batch.carry_state else None
            loss, state = training_loss(model, task, batch, carried, buffer)
            count = float(batch.mask.sum())
            total = total + Metrics(loss.item() * count, 0.0, count)
    return {"loss": total.mean_loss, "score": task.score(total)}


def train(
    model: nn.Module,
    task: Task,
    config: TrainConfig,
    *,
    on_evaluate: OnEvaluate | None = None,
) -> TrainResult:
    """Train ``model`` on ``task``; leaves the weights of the best validation score in it.

    Batches are moved to the model's device, so a model on a GPU trains as it is. Where
    it applies (``config.step``), a step runs without autograd (:mod:`optuna_rnn.train.step`).
    """
    better = (lambda a, b: a > b) if task.higher_is_better else (lambda a, b: a < b)
    best_loss = math.inf
    best: tuple[int, dict[str, float], dict[str, torch.Tensor]] | None = None
    history: list[tuple[int, float, float]] = []
    losses: list[float] = []
    decays, tokens, train_seconds = 0, 0, 0.0
    watch = _DivergenceWatch(task, config.divergence_factor)
    logits = LogitBuffer()
    ended_because = "max_steps"
    start = time.perf_counter()
    state: Any = None
    model.train()
    batches = task.train_batches(config.batch_size, seed=config.seed)
    device = _device_of(model)
    step = 0
    parameters = [p for p in model.parameters() if p.requires_grad]
    plan = plan_step(model, task) if config.step == "auto" else None
    with make_optimizer(
        parameters,
        config.optimizer,
        config.learning_rate,
        groups=plan.groups if plan is not None else (),
    ) as optimizer:
        fast = plan.bind(optimizer) if plan is not None else None
        while step < config.max_steps:
            batch = _to(next(batches), device)
            step += 1
            tick = time.perf_counter()
            carried = _detach(state) if batch.carry_state else None
            if fast is not None:
                value, next_state = fast(batch, carried)
            else:
                loss, next_state = training_loss(model, task, batch, carried, logits)
                value = loss.item()
            watch.train(step, value)
            losses.append(value)
            if fast is None:
                optimizer.zero_grad()
                loss.backward()
            optimizer.step(config.max_grad_norm)
            state = next_state
            tokens += batch.inputs.shape[0] * batch.inputs.shape[1]
            train_seconds += time.perf_counter() - tick

            out_of_time = (
                config.max_seconds is not None and time.perf_counter() - start >= config.max_seconds
            )
            last = step == config.max_steps or out_of_time
            if step % config.eval_every and not last:
                continue
            valid = validate(
                model, task, "valid", config.batch_size, max_batches=config.valid_batches
            )
            watch.valid(step, valid)
            history.append((step, valid["loss"], valid["score"]))
            if best is None or better(valid["score"], best[1]["score"]):
                best = (step, valid, copy.deepcopy(model.state_dict()))
            if valid["loss"] < best_loss:
                best_loss = valid["loss"]
            else:
                decays += 1
                optimizer.lr /= config.lr_decay
            if on_evaluate is not None:
                on_evaluate(step, valid)
            if out_of_time:
                ended_because = "time_limit"
                break
            if config.max_decays is not None and decays >= config.max_decays:
                ended_because = "converged"
                break
    assert best is not None
    best_step, best_valid, best_weights = best
    model.load_state_dict(best_weights)
    if config.valid_batches is not None:
        best_valid = validate(model, task, "valid", config.batch_size)
        watch.valid(best_step, best_valid)
    return TrainResult(
        steps=step,
        seconds=time.perf_counter() - start,
        tokens_per_second=tokens / train_seconds if train_seconds else math.nan,
        ended_because=ended_because,
        best_step=best_step,
        valid=best_valid,
        history=history,
        losses=losses,
    )
