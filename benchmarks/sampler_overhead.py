"""Milliseconds per ask of CellEvolutionSampler next to TPESampler, on a large SQLite study.

A study of N finished trials is built once per size, like one the evolution sampler
leaves behind: architectures from mutation chains started at LSTM and GRU in the default
GraphSpace, about ten trials per architecture, the paper's hyperparameters, and the
sampler's records. Each sampler then runs against its own copy of the database; one
"ask" is timed twice: ``study.ask()`` alone (where the evolution sampler does all its
work: reading the study, proposing, claiming) and through the trial's last parameter (the
cell through the space, the hyperparameters: where TPE does its work), apart from
``study.tell``; medians. RandomSampler runs first as the floor: what Optuna and the
storage cost with no model at all (each suggest is a committed write, and Random's cells
are often smaller than evolved ones, so "over RandomSampler" also counts extra writes).

    python benchmarks/sampler_overhead.py            # 1,000 and 10,000 trials
    python benchmarks/sampler_overhead.py --sizes 500 --asks 5
    python benchmarks/sampler_overhead.py --sizes 10000 --keep /tmp/overhead  # reuse the study

Bar (issue 6): at most 20 ms per ask at 10,000 finished trials.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from optuna_rnn.cell import CellError, zoo
from optuna_rnn.cell.mutate import mutate
from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.samplers import CellEvolutionSampler
from optuna_rnn.samplers._records import (
    MUTATE,
    PLAN_KEY,
    REEVALUATE,
    ArchitectureChoice,
)
from optuna_rnn.spaces import GraphSpace

SPACE = GraphSpace()
HYPER = Hyperparameters()


def architecture_pool(n: int, rng: np.random.Generator) -> list[dict]:
    """``n`` distinct GraphSpace params: mutation chains from LSTM and GRU."""
    pool = [SPACE.encode(zoo.get(name)) for name in ("lstm", "gru")]
    cells = [zoo.get("lstm"), zoo.get("gru")]
    seen = {c.fingerprint for c in cells}
    while len(pool) < n:
        try:
            child = mutate(cells[rng.integers(len(cells))], rng, max_nodes=SPACE.max_nodes)
        except CellError:
            continue
        if child.fingerprint in seen or child not in SPACE:
            continue
        seen.add(child.fingerprint)
        cells.append(child)
        pool.append(SPACE.encode(child))
    return pool


def finished_trials(n: int, rng: np.random.Generator) -> list[optuna.trial.FrozenTrial]:
    """``n`` COMPLETE trials over ``n / 10`` architectures, with the sampler's records.

    (The paper trained about 23 models per architecture.)
    """
    pool = architecture_pool(max(2, n // 10), rng)
    fingerprints = [SPACE.decode(arch).fingerprint for arch in pool]
    arch_dists = [SPACE.distributions(arch) for arch in pool]
    choices = dict(zip(HYPER.names, HYPER._choices().values()))
    hyper = {
        k: optuna.distributions.CategoricalDistribution(v) for k, v in choices.items() if len(v) > 1
    }
    trials = []
    for i in range(n):
        k = i if i < len(pool) else int(rng.integers(len(pool)))
        action = MUTATE if i < len(pool) else REEVALUATE
        hp = {name: d.choices[rng.integers(len(d.choices))] for name, d in hyper.items()}
        plan = ArchitectureChoice(action, fingerprints[k], params=pool[k])
        trials.append(
            optuna.trial.create_trial(
                value=float(rng.random()),
                params={**pool[k], **hp},
                distributions={**arch_dists[k], **hyper},
                system_attrs={PLAN_KEY: plan.to_json()},
            )
        )
    return trials


def time_asks(
    url: str, sampler: optuna.samplers.BaseSampler, asks: int
) -> tuple[float, float, float]:
    """Median milliseconds of ``study.ask()``, of ask through the last suggest, and of tell.

    One untimed trial first fills the storage's cache, as any long-running worker has.
    """
    study = optuna.load_study(study_name="overhead", storage=url, sampler=sampler)
    ask_ms, full_ms, tell_ms = [], [], []
    for _ in range(asks + 1):
        t0 = time.perf_counter()
        trial = study.ask()
        t1 = time.perf_counter()
        SPACE.suggest(trial)  # every point is a valid cell
        HYPER.suggest(trial)
        t2 = time.perf_counter()
        study.tell(trial, 0.5)
        t3 = time.perf_counter()
        ask_ms.append(1e3 * (t1 - t0))
        full_ms.append(1e3 * (t2 - t0))
        tell_ms.append(1e3 * (t3 - t2))
    ask, full, tell = (statistics.median(ms[1:]) for ms in (ask_ms, full_ms, tell_ms))
    return ask, full, tell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--asks", type=int, default=20, help="asks timed per sampler")
    parser.add_argument("--tpe-asks", type=int, default=5, help="asks timed for TPE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dir",
        default=None,
        help="where the SQLite files go (default: the system's temp dir; "
        "/dev/shm takes the disk's commit latency out)",
    )
    parser.add_argument(
        "--keep",
        default=None,
        help="a folder where each size's built study is kept and reused by later runs "
        "(building 10,000 trials takes most of a run)",
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC {platform.platform()} "
        f"{platform.processor()} {os.cpu_count()} CPUs, optuna {optuna.__version__}, SQLite in {args.dir or 'tmp'}"
    )
    print(
        "trials | sampler | ms study.ask() | ask over RandomSampler | ms through last "
        "suggest | over RandomSampler | ms tell | asks timed"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.sizes:
            kept = args.keep and Path(args.keep) / f"base{n}-seed{args.seed}.db"
            base = Path(tmp) / f"base{n}.db"
            if kept and kept.exists():
                shutil.copy(kept, base)
            else:
                study = optuna.create_study(
                    study_name="overhead", storage=f"sqlite:///{base}", direction="maximize"
                )
                study.add_trials(finished_trials(n, np.random.default_rng(args.seed)))
                del study
                if kept:
                    shutil.copy(base, kept)
            samplers = {
                "RandomSampler": (
                    optuna.samplers.RandomSampler(seed=args.seed),
                    args.asks,
                ),
                "CellEvolutionSampler": (
                    CellEvolutionSampler(space=SPACE, seed=args.seed),
                    args.asks,
                ),
                "TPESampler": (
                    optuna.samplers.TPESampler(seed=args.seed),
                    args.tpe_asks,
                ),
            }
            results = {}
            for name, (sampler, asks) in samplers.items():
                copy = Path(tmp) / f"{name}{n}.db"
                shutil.copy(base, copy)
                results[name] = time_asks(f"sqlite:///{copy}", sampler, asks)
                ask, full, tell = results[name]
                ask_over = ask - results["RandomSampler"][0]
                over = full - results["RandomSampler"][1]
                print(
                    f"{n} | {name} | {ask:.1f} | {ask_over:.1f} | {full:.1f} | {over:.1f} "
                    f"| {tell:.1f} | {asks}",
                    flush=True,
                )
            ratio = results["TPESampler"][1] / results["CellEvolutionSampler"][1]
            print(f"{n} | TPE / evolution, ask through last suggest | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
