"""Random draws of the search spaces: how many are valid cells, and how many repeat.

Each space is walked by ``--draws`` trials of Optuna's RandomSampler (one study per
space, seeded by ``--seed``), the way any sampler's start-up phase walks it. Printed per
space: the draws that raised, the draws that decoded to a cell ``CellRNN`` cannot train
(no weight and no bias: ``Cell.learnable`` is false), the distinct cells, and the draws
that share their
fingerprint with another draw (a model-based sampler spends such trials on a cell it
has already seen, as surely as on an invalid one).

    python benchmarks/space_draws.py                  # 10,000 draws of each space
    python benchmarks/space_draws.py --draws 1000 --seed 1
"""

from __future__ import annotations

import argparse
import collections
import datetime
import os
import platform
import time

import optuna

from optuna_rnn.spaces import CellSpace, GatedSpace, GraphSpace


def draw(space: CellSpace, n: int, seed: int) -> tuple[int, int, collections.Counter[str], int]:
    """Errors, unlearnable cells, fingerprint counts and the largest parameter count over
    ``n`` draws."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    errors, unlearnable, counts, widest = 0, 0, collections.Counter(), 0
    for _ in range(n):
        trial = study.ask()
        try:
            cell = space.suggest(trial)
            counts[cell.fingerprint] += 1
            unlearnable += not cell.learnable
        except Exception:  # noqa: BLE001 - the benchmark counts every kind of failure
            errors += 1
        widest = max(widest, len(trial.params))
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    return errors, unlearnable, counts, widest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--draws", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
        f"{platform.platform()} {os.cpu_count()} CPUs, optuna {optuna.__version__}; "
        f"{args.draws} RandomSampler draws per space, seed {args.seed}"
    )
    print(
        "space | errors | unlearnable | distinct cells | draws sharing a fingerprint "
        "| most params | s"
    )
    for name, space in (
        ("GraphSpace()", GraphSpace()),
        ("GraphSpace(max_nodes=24)", GraphSpace(max_nodes=24)),
        ("GatedSpace()", GatedSpace()),
    ):
        start = time.perf_counter()
        errors, unlearnable, counts, widest = draw(space, args.draws, args.seed)
        shared = sum(c for c in counts.values() if c > 1)
        print(
            f"{name} | {errors} | {unlearnable} | {len(counts)} | {shared} | {widest} "
            f"| {time.perf_counter() - start:.0f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
