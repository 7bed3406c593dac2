"""Where one fused training step's time goes: torch.profiler's table of ops (host time)
and, on CUDA, of device kernels, for one cell at one of ``kernels.py``'s sizes. On the
CPU it first times the two C time loops apart (their time is inside the ``_Fused`` and
``_FusedBackward`` rows' self time, with the autograd function's Python).

With ``--task``, it profiles the trainer's whole step instead, on the task's own batches
at ``trial_step.py``'s budget, as ``train`` runs it: the autograd-free step where it
applies (``--step auto``; :mod:`optuna_rnn.train.step`), else (or with ``--step
autograd``) the autograd step. It prints the CPU time of each phase (drawing the batch,
the forward and loss, the backward, clipping and the update; the autograd-free step's
forward, loss and backward are one phase) beside the C time loops', then the op table.

    python benchmarks/profile_step.py [--cell lstm] [--size a] [--device cpu] [--steps 20]
        [--backend fused] [--task memorization|arithmetic|xml|ptb] [--step auto|autograd]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import torch
from kernels import SIZES, step_fn, sync
from torch.profiler import ProfilerActivity, profile

from optuna_rnn import CellRNN, tasks, zoo
from optuna_rnn.kernels.sequence import Schedule
from optuna_rnn.train import build_model
from optuna_rnn.train.flat import make_optimizer
from optuna_rnn.train.loss import LogitBuffer, training_loss
from optuna_rnn.train.step import plan_step

PHASES = ("draw", "forward+loss", "backward", "clip+update")


class LoopClock:
    """Seconds by ``clock`` spent in the C time loops, forward and backward, while
    installed."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.seconds = {False: 0.0, True: 0.0}
        self._clock = clock
        self._launch = Schedule.launch

    def __enter__(self) -> LoopClock:
        launch, seconds, clock = self._launch, self.seconds, self._clock

        def timed(schedule: Schedule, *args: Any) -> None:
            t0 = clock()
            launch(schedule, *args)
            seconds[schedule.backward] += clock() - t0

        Schedule.launch = timed
        return self

    def __exit__(self, *exc: object) -> None:
        Schedule.launch = self._launch


def profile_trainer(args: argparse.Namespace) -> None:
    """The trainer's step on ``args.task`` (the CPU, one thread): phases, then op table."""
    from trial_step import SETUPS

    setup = SETUPS[args.task]
    torch.set_num_threads(1)
    task = setup.make(tasks)
    cell = zoo.get(args.cell)
    H = setup.width(task, cell)
    torch.manual_seed(0)
    model = build_model(cell, task, hidden_size=H, backend=args.backend)
    batches, buffer = task.train_batches(20, seed=0), LogitBuffer()
    parameters = [p for p in model.parameters() if p.requires_grad]
    plan = plan_step(model, task) if args.step == "auto" else None
    groups = plan.groups if plan is not None else ()
    with make_optimizer(
        parameters, setup.optimizer, setup.learning_rate, groups=groups
    ) as optimizer:
        fast = plan.bind(optimizer) if plan is not None else None

        def step(seconds: dict[str, float]) -> None:
            t0 = time.process_time()
            batch = next(batches)
            t1 = time.process_time()
            if fast is not None:
                fast(batch)
                t2 = t3 = time.process_time()
            else:
                loss, _ = training_loss(model, task, batch, None, buffer)
                loss.item()
                t2 = time.process_time()
                optimizer.zero_grad()
                loss.backward()
                t3 = time.process_time()
            optimizer.step(5.0)
            t4 = time.process_time()
            for phase, a, b in zip(PHASES, (t0, t1, t2, t3), (t1, t2, t3, t4)):
                seconds[phase] += b - a

        for _ in range(10):
            step(dict.fromkeys(PHASES, 0.0))
        seconds = dict.fromkeys(PHASES, 0.0)
        with LoopClock(time.process_time) as loops:
            for _ in range(args.steps):
                step(seconds)
        ms = {k: v / args.steps * 1e3 for k, v in seconds.items()}
        print(
            f"{args.task}: {args.cell} {args.backend}, width {H}, "
            f"{'autograd-free' if fast is not None else 'autograd'} step: "
            f"{sum(ms.values()):.2f} ms a step (CPU time, mean of {args.steps}, unprofiled): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ms.items())
            + "; C time loops {:.2f} forward, {:.2f} backward".format(
                *(loops.seconds[b] / args.steps * 1e3 for b in (False, True))
            )
        )
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step(dict.fromkeys(PHASES, 0.0))
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", default="lstm", help="a zoo name")
    parser.add_argument("--size", default="a", choices=sorted(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="fused")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument(
        "--task", choices=("memorization", "arithmetic", "xml", "ptb"), help="the trainer's step"
    )
    parser.add_argument(
        "--step",
        choices=("auto", "autograd"),
        default="auto",
        help="with --task: the autograd-free step where it applies, or autograd always",
    )
    args = parser.parse_args()
    if args.task:
        profile_trainer(args)
        return
    device = torch.device(args.device)
    T, B, I, H = SIZES[args.size]
    torch.manual_seed(0)
    module = CellRNN(zoo.get(args.cell), I, H, backend=args.backend).to(device)
    step = step_fn(module, torch.randn(T, B, I, device=device, requires_grad=True))
    for _ in range(3):  # on CUDA the second call captures the graphs
        step()
    sync(device)
    t0 = time.perf_counter()
    with LoopClock() as loops:
        for _ in range(args.steps):
            step()
        sync(device)
    ms = {k: v / args.steps * 1e3 for k, v in loops.seconds.items()}
    print(
        f"{args.cell} {args.backend} at ({args.size}) T={T} B={B} I={I} H={H} on {device}: "
        f"{(time.perf_counter() - t0) / args.steps * 1e3:.2f} ms a step (mean of {args.steps}, unprofiled)"
        + (
            f"; C time loops {ms[False]:.2f} ms forward, {ms[True]:.2f} ms backward"
            if any(loops.seconds.values())
            else ""
        )
    )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        sync(device)
    table = prof.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=20))
    if device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=12))


if __name__ == "__main__":
    main()
