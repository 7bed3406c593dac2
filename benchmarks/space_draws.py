"""Random draws of the search spaces: how many are valid cells, and how many repeat.

Each space is walked by ``--draws`` trials of Optuna's RandomSampler (one study per
space, seeded by ``--seed``), the way any sampler's start-up phase walks it. Printed per
space: the draws that raised, the draws that decoded to a cell ``CellRNN`` cannot train
(no weight and no bias: ``Cell.learnable`` is false), the distinct cells, and the draws
that share their
fingerprint with another draw (a model-based sampler spends such trials on a cell it
has already seen, as surely as on an invalid one), and the draws that can remember
(:func:`optuna_rnn.cell.paths`: x enters a loop of states that h' reads; the others
score at chance on any memory task). Then, per space, the same share among mutants of
the draws that can remember: one :class:`~optuna_rnn.samplers.PointMutation` and one
pass of the paper's :func:`~optuna_rnn.cell.mutate.mutate` (kept if the space holds it).

    python benchmarks/space_draws.py                  # 10,000 draws of each space
    python benchmarks/space_draws.py --draws 1000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import datetime
import functools
import os
import platform
import time

import numpy as np
import optuna

from optuna_rnn.cell import Cell, CellError, live
from optuna_rnn.cell.ir import DEFAULT_MAX_NODES
from optuna_rnn.cell.mutate import mutate
from optuna_rnn.samplers import PointMutation
from optuna_rnn.spaces import CellSpace, GatedSpace, GraphSpace


def draw(
    space: CellSpace, n: int, seed: int
) -> tuple[int, int, collections.Counter[str], int, list[Cell]]:
    """Errors, unlearnable cells, fingerprint counts, the largest parameter count and the
    cells over ``n`` draws."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    errors, unlearnable, counts, widest, cells = 0, 0, collections.Counter(), 0, []
    for _ in range(n):
        trial = study.ask()
        try:
            cell = space.suggest(trial)
            counts[cell.fingerprint] += 1
            unlearnable += not cell.learnable
            cells.append(cell)
        except Exception:  # noqa: BLE001 - the benchmark counts every kind of failure
            errors += 1
        widest = max(widest, len(trial.params))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return errors, unlearnable, counts, widest, cells


def mutants_that_remember(space: CellSpace, parents: list[Cell], seed: int) -> tuple[str, str]:
    """The share of one point mutant, and of one paper mutant the space holds, of each
    parent that can still remember (over the mutants made: a point of GraphSpace that
    reads h' has no encoding to mutate, and most paper mutants leave GatedSpace)."""
    rng = np.random.default_rng(seed)
    point, paper = (
        PointMutation(space),
        functools.partial(mutate, max_nodes=getattr(space, "max_nodes", DEFAULT_MAX_NODES)),
    )
    shares = []
    for operator in (point, paper):
        kept = []
        for p in parents:
            try:
                child = operator(p, rng)
                space.encode(child)
            except CellError:
                continue
            kept.append(live(child))
        shares.append(f"{sum(kept) / len(kept):.1%} of {len(kept)}")
    return shares[0], shares[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--mutants", type=int, default=1000, help="parents that can remember, per space"
    )
    args = parser.parse_args()
    mutants: dict[str, tuple[str, str]] = {}
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
        f"{platform.platform()} {os.cpu_count()} CPUs, optuna {optuna.__version__}; "
        f"{args.draws} RandomSampler draws per space, seed {args.seed}"
    )
    print(
        "space | errors | unlearnable | distinct cells | draws sharing a fingerprint "
        "| most params | can remember | s"
    )
    for name, space in (
        ("GraphSpace()", GraphSpace()),
        ("GraphSpace(max_nodes=24)", GraphSpace(max_nodes=24)),
        ("GatedSpace()", GatedSpace()),
    ):
        start = time.perf_counter()
        errors, unlearnable, counts, widest, cells = draw(space, args.draws, args.seed)
        shared = sum(c for c in counts.values() if c > 1)
        remember = [c for c in cells if live(c)]
        print(
            f"{name} | {errors} | {unlearnable} | {len(counts)} | {shared} | {widest} "
            f"| {len(remember) / len(cells):.1%} | {time.perf_counter() - start:.0f}",
            flush=True,
        )
        mutants[name] = mutants_that_remember(space, remember[: args.mutants], args.seed)
    print("\nspace | point mutants that can remember | paper mutants that can remember")
    for name, (point, paper) in mutants.items():
        print(f"{name} | {point} | {paper}")


if __name__ == "__main__":
    main()
