"""Where a search trial's time goes: the training step against its floor and two baselines.

For each task this times one training step of three contenders, interleaved round by
round in one process (this machine's speed swings within minutes):

- ``new``: ``optuna_rnn.train.train`` of this tree (its autograd-free step where it
  applies; ``--step autograd`` forces the autograd step);
- ``base``: the trainer (and tasks, cells, kernels) at ``--base`` (a git revision, or a
  folder holding an ``optuna_rnn/``), loaded as ``ab_kernels.py`` does;
- ``plain``: a plain PyTorch loop of the same model: ``nn.Embedding``, ``nn.LSTM`` (or
  ``nn.GRU``) at the same width, ``nn.Linear``, masked cross-entropy, clipping and the
  same optimizer, on the task's own batches.

A step is the time between two training batches handed to the contender (the step,
then drawing the next batch; no setup, no validation), over a task's set number of steps
a round. All times are the process's CPU time (user + system, one torch thread): on a
machine shared with other jobs, wall time mostly measures the wait for a core. The new and base models start from the same weights. Per task it prints: ms
per step and tokens per second (the median over all steps, and the lowest and highest
round's median), the share of system CPU time in
each contender's calls, the step's FLOPs (matrix products over all positions, forward
and backward, as the model defines them) and the floor they imply at the rate of a large
product measured in this run, and, for a ``--max-seconds`` trial validating every
``--eval-every`` steps, the share of its time spent drawing batches and validating.

    python benchmarks/trial_step.py [--tasks memorization,arithmetic,xml,ptb] [--cell lstm]
        [--backend auto] [--base main] [--step auto] [--rounds 5] [--threads 1] [--max-seconds 60] [--eval-every 250]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import torch
import torch.nn.functional as F
from ab_kernels import load_base
from torch import nn

from optuna_rnn import tasks, zoo
from optuna_rnn.cell.ir import LINEAR
from optuna_rnn.train import (
    TrainConfig,
    build_model,
    hidden_size_for_budget,
    train,
    validate,
)


@dataclass(frozen=True)
class Setup:
    """One task as the benchmark runs it."""

    make: Callable[[ModuleType], Any]  # the tasks module -> the task
    budget: int
    optimizer: str
    learning_rate: float
    steps: int
    valid_batches: int | None  # the subsample a cpu-preset trial validates on (None: all)

    def width(self, task: Any, cell: Any) -> int:
        """The hidden size that gives ``cell`` this setup's parameter budget on ``task``."""
        return hidden_size_for_budget(
            cell,
            self.budget,
            input_size=task.input_size,
            output_size=task.output_size,
            input_kind=task.input_kind,
        )


SETUPS = {
    "memorization": Setup(lambda t: t.Memorization(), 25_000, "sgd", 0.1, 100, 10),
    "arithmetic": Setup(lambda t: t.Arithmetic(preset="small"), 25_000, "adam", 0.003, 100, 10),
    "xml": Setup(lambda t: t.XML(preset="small"), 25_000, "adam", 0.003, 60, 10),
    "ptb": Setup(lambda t: t.PennTreebank(), 500_000, "adam", 0.003, 20, 10),
}


class PlainModel(nn.Module):
    """Embedding, ``nn.LSTM``/``nn.GRU``, linear decoder: the same model in stock modules."""

    def __init__(self, kind: str, vocab: int, hidden: int, classes: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(vocab, hidden)
        self.rnn = (nn.LSTM if kind == "lstm" else nn.GRU)(hidden, hidden)
        self.decoder = nn.Linear(hidden, classes)

    def forward(self, inputs: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        output, state = self.rnn(self.encoder(inputs), state)
        return self.decoder(output), state


def plain_loop(model: PlainModel, task: Any, config: TrainConfig) -> None:
    """``config.max_steps`` steps of the textbook loop on ``task``'s training batches."""
    kind = torch.optim.Adam if config.optimizer == "adam" else torch.optim.SGD
    optimizer = kind(model.parameters(), lr=config.learning_rate)
    batches: Iterator[Any] = task.train_batches(config.batch_size, seed=config.seed)
    state: Any = None
    for _ in range(config.max_steps):
        batch = next(batches)
        if state is not None and batch.carry_state:
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        logits, next_state = model(batch.inputs, state if batch.carry_state else None)
        losses = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), batch.targets.reshape(-1), reduction="none"
        )
        loss = (losses * batch.mask.reshape(-1)).sum() / batch.mask.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
        optimizer.step()
        state = next_state


def gemm_rate(size: int = 1024, reps: int = 5) -> float:
    """FLOP per second of a ``size``-square float32 product on this process's threads."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        a @ b
        times.append(time.process_time() - t0)
    return 2 * size**3 / min(times)


def step_flops(cell: Any, hidden: int, vocab_out: int, tokens: int, layers: int) -> float:
    """Matrix-product FLOPs of one step: forward and backward (3x) over ``tokens``."""
    linear = sum(1 for n in cell.nodes if n.op == LINEAR)
    return 3 * tokens * (layers * 2 * linear * hidden * hidden + 2 * hidden * vocab_out)


class Clock:
    """Per-step wall times of one contender, and the CPU (user, system) time of its calls.

    The contender draws its batches from :meth:`stamped`'s copy of the task, which notes
    the time as each batch is handed out: the gap between two batches is one whole step
    (the step, then drawing the next batch), with no setup and no validation in it.
    """

    def __init__(self) -> None:
        self.rounds: list[list[float]] = []
        self.user = self.system = 0.0
        self._stamps: list[float] = []

    def stamped(self, task: Any) -> Any:
        """A shallow copy of ``task`` whose training batches note when they are drawn."""
        copied, inner, stamps = copy.copy(task), task.train_batches, self._stamps

        def train_batches(batch_size: int, *, seed: int) -> Iterator[Any]:
            for batch in inner(batch_size, seed=seed):
                stamps.append(time.process_time())
                yield batch

        copied.train_batches = train_batches
        return copied

    def sample(self, run: Callable[[int], None], steps: int) -> None:
        """Run ``steps`` steps; keep the gaps between its batches as one round."""
        self._stamps.clear()
        before = os.times()
        run(steps)
        after = os.times()
        self.user += after.user - before.user
        self.system += after.system - before.system
        self.rounds.append([b - a for a, b in zip(self._stamps, self._stamps[1:])])

    @property
    def median(self) -> float:
        return statistics.median([gap for r in self.rounds for gap in r])

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest of the rounds' medians."""
        medians = [statistics.median(r) for r in self.rounds]
        return min(medians), max(medians)

    @property
    def system_share(self) -> float:
        return self.system / max(self.user + self.system, 1e-9)


def timed(fn: Callable[[], Any], reps: int = 3) -> float:
    """Median seconds of ``fn()``."""
    times = []
    for _ in range(reps):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def validation_share(
    step: float, eval_every: int, max_seconds: float, sub: float, full: float, final: bool
) -> float:
    """Share of a ``max_seconds`` trial spent validating: every ``eval_every`` steps
    (``sub`` seconds each), plus one validation of the whole split at the end when
    ``final``."""
    periods = max_seconds / (eval_every * step + sub)
    validating = periods * sub + (full if final else 0.0)
    return validating / (max_seconds + (full if final else 0.0))


def run_task(
    name: str, setup: Setup, base: ModuleType, args: argparse.Namespace, rate: float
) -> None:
    task = setup.make(tasks)
    base_task = setup.make(importlib.import_module(f"{base.__name__}.tasks"))
    cell = zoo.get(args.cell)
    base_cell = importlib.import_module(f"{base.__name__}.cell.zoo").get(args.cell)
    H = setup.width(task, cell)
    torch.manual_seed(0)
    new_model = build_model(cell, task, hidden_size=H, backend=args.backend)
    base_model = base.train.build_model(base_cell, base_task, hidden_size=H, backend=args.backend)
    base_model.load_state_dict(new_model.state_dict())
    plain = PlainModel(args.cell, task.input_size, H, task.output_size)
    batch = next(task.train_batches(20, seed=0))
    T, B = batch.inputs.shape[:2]
    scored = int(batch.mask.sum())

    def config(module: ModuleType, steps: int, **extra: Any) -> Any:
        return module.train.TrainConfig(
            learning_rate=setup.learning_rate,
            max_grad_norm=5.0,
            optimizer=setup.optimizer,
            max_steps=steps,
            eval_every=10**9,
            **extra,
        )

    # Step timings validate once at the end (outside the timed gaps): on a short split.
    clocks = {c: Clock() for c in ("new", "base", "plain")}
    new_task, base_short = (
        clocks["new"].stamped(short_eval(task)),
        clocks["base"].stamped(short_eval(base_task)),
    )
    plain_task = clocks["plain"].stamped(task)
    this = importlib.import_module("optuna_rnn")
    contenders: dict[str, Callable[[int], None]] = {
        "new": lambda n: train(new_model, new_task, config(this, n, step=args.step)),
        "base": lambda n: base.train.train(base_model, base_short, config(base, n)),
        "plain": lambda n: plain_loop(plain, plain_task, config(this, n)),
    }
    for c, run in contenders.items():  # warm-up: builds the kernels
        clocks[c].sample(run, 3)
        clocks[c].rounds.clear()
    for _ in range(args.rounds):
        for c, run in contenders.items():
            clocks[c].sample(run, setup.steps)
    draw = (
        timed(lambda: [next(it) for it in [task.train_batches(20, seed=1)] for _ in range(50)]) / 50
    )
    full_new = timed(lambda: validate(new_model, task, "valid", 20), reps=1)
    sub_new = full_new
    if setup.valid_batches is not None:
        sub_new = timed(
            lambda: validate(new_model, task, "valid", 20, max_batches=setup.valid_batches), reps=1
        )
    full_base = timed(lambda: base.train.validate(base_model, base_task, "valid", 20), reps=1)
    flops = step_flops(cell, H, task.output_size, T * B, 1)
    floor = flops / rate
    med = {c: k.median for c, k in clocks.items()}
    print(
        f"\n## {name}: {args.cell}, budget {setup.budget}, width {H}, batch {B} x {T} ({scored} scored), "
        f"{setup.optimizer}, backend {args.backend}, new step {args.step}; "
        f"{setup.steps} steps a round, {args.rounds} rounds"
    )
    print(
        f"step FLOPs {flops / 1e6:.1f} M -> floor {floor * 1e3:.2f} ms at {rate / 1e9:.1f} GFLOP/s"
    )
    for c, k in clocks.items():
        lo, hi = k.spread
        print(
            f"  {c:>5}: {med[c] * 1e3:8.2f} ms/step [{lo * 1e3:.2f}-{hi * 1e3:.2f}]  "
            f"{T * B / med[c]:9.0f} tok/s  {med[c] / floor:5.1f}x floor  sys {k.system_share:4.0%}  "
            f"vs base {med[c] / med['base']:.2f}  vs plain {med[c] / med['plain']:.2f}"
        )
    subset = (
        f"first {setup.valid_batches} batches + the whole split at the end"
        if setup.valid_batches
        else "whole split"
    )
    print(
        f"  drawing a batch {draw * 1e3:.2f} ms: {draw / med['new']:.0%} of a new step, "
        f"{draw / med['base']:.0%} of a base step"
    )
    print(
        f"  validating, new ({subset}): {sub_new:.2f} s ({full_new:.2f} s whole) -> "
        f"{validation_share(med['new'], args.eval_every, args.max_seconds, sub_new, full_new, setup.valid_batches is not None):.0%}"
        f" of a {args.max_seconds:g} s trial; base (whole split): {full_base:.2f} s -> "
        f"{validation_share(med['base'], args.eval_every, args.max_seconds, full_base, 0.0, False):.0%}"
    )


def short_eval(task: Any) -> Any:
    """A shallow copy of ``task`` whose validation split is two batches long."""
    short = copy.copy(task)
    if hasattr(task, "streams"):
        short.streams = {**task.streams, "valid": task.streams["valid"][: 2 * 20 * task.bptt + 1]}
    else:
        short.eval_size, short._eval_sets, short._eval_batches = 40, {}, {}
    return short


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="memorization,arithmetic,xml,ptb")
    parser.add_argument("--cell", choices=("lstm", "gru"), default="lstm")
    parser.add_argument(
        "--backend", default="auto", help="the new and base models' backend (auto, fused, ...)"
    )
    parser.add_argument(
        "--base", default="main", help="the git revision (or folder) of the baseline trainer"
    )
    parser.add_argument(
        "--step",
        choices=("auto", "autograd"),
        default="auto",
        help="the new trainer's step: autograd-free where it applies, or autograd always",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (the objective's torch_threads=1)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=60.0, help="the cpu preset's trial budget"
    )
    parser.add_argument(
        "--eval-every", type=int, default=250, help="the cpu preset's steps between validations"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# optuna-rnn trial step, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; base {args.base}")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    rate = gemm_rate()
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(args.base, Path(tmp))
        importlib.import_module(f"{base.__name__}.train")
        for name in args.tasks.split(","):
            run_task(name, SETUPS[name], base, args, rate)


if __name__ == "__main__":
    main()
