"""Drawing a training batch of the synthetic tasks: this tree against another commit's.

A batch is drawn between every two training steps, and at the small tasks' sizes it was
a seventh of a step. This extracts ``optuna_rnn/`` at ``--base`` (see
``ab_kernels.load_base``) and, per task, draws batches of ``--batch-size`` from both
versions with the same seed, ``--batches`` at a time, alternating for ``--rounds``
rounds, after ``--warmup`` batches from each. Both versions must draw identical batches
(checked on every batch); it prints the microseconds per batch, median and range over
the rounds, and new/base. A task with few problems (arithmetic's "small" preset) learns
their splits as it draws: the first thousand batches still meet new problems.

    python benchmarks/batch_draws.py --base main [--rounds 40] [--batches 25]
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from ab_kernels import load_base

import optuna_rnn

TASKS = {
    "memorization": ("Memorization", {}),
    "arithmetic": ("Arithmetic", {"preset": "small"}),
    "xml": ("XML", {"preset": "small"}),
    "xml-paper": ("XML", {"preset": "paper"}),
}


def timed(batches: Iterator[Any], count: int) -> tuple[float, list[Any]]:
    """Seconds per batch over ``count`` batches, and the batches."""
    drawn = []
    start = time.perf_counter()
    for _ in range(count):
        drawn.append(next(batches))
    return (time.perf_counter() - start) / count, drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--tasks", default="memorization,arithmetic,xml")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--batches", type=int, default=25, help="batches per timed block")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=0, help="batches drawn before timing")
    args = parser.parse_args()
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, Python {platform.python_version()}, base {args.base}, "
        f"batch {args.batch_size}, {args.batches} batches x {args.rounds} rounds "
        f"after {args.warmup}, "
        f"new: {Path(optuna_rnn.__file__).parent}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(args.base, Path(tmp))
        print(f"{'task':<14} {'new us':>22} {'base us':>22} {'new/base':>9}")
        for name in args.tasks.split(","):
            cls, kwargs = TASKS[name]
            streams = {
                "new": getattr(optuna_rnn.tasks, cls)(**kwargs).train_batches(
                    args.batch_size, seed=args.seed
                ),
                "base": getattr(base.tasks, cls)(**kwargs).train_batches(
                    args.batch_size, seed=args.seed
                ),
            }
            for stream in streams.values():
                for _ in range(args.warmup):
                    next(stream)
            times: dict[str, list[float]] = {"new": [], "base": []}
            for round_ in range(args.rounds):
                drawn = {}
                order = ("new", "base") if round_ % 2 == 0 else ("base", "new")
                for who in order:  # each goes first in every other round
                    stream = streams[who]
                    seconds, drawn[who] = timed(stream, args.batches)
                    times[who].append(seconds * 1e6)
                for new, old in zip(drawn["new"], drawn["base"]):
                    for field in ("inputs", "targets", "mask"):
                        a, b = getattr(new, field), getattr(old, field)
                        if a.dtype != b.dtype or a.stride() != b.stride() or not torch.equal(a, b):
                            raise SystemExit(f"{name}: the two versions drew different batches")
            cells = {
                who: f"{statistics.median(t):.1f} [{min(t):.1f}-{max(t):.1f}]"
                for who, t in times.items()
            }
            ratio = statistics.median(times["new"]) / statistics.median(times["base"])
            print(f"{name:<14} {cells['new']:>22} {cells['base']:>22} {ratio:>9.2f}")


if __name__ == "__main__":
    main()
