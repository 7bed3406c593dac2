"""Milliseconds per ask of CellEvolutionSampler beside RandomSampler, on a large SQLite study.

A study of N finished trials is built once per size, like one the evolution sampler
leaves behind: architectures from mutation chains started at LSTM and GRU in the default
GraphSpace, about ten trials per architecture, the paper's hyperparameters, and the
sampler's records. Each sampler then runs against its own copy of the database, opened
as users get it (:func:`optuna_rnn.storage.open_storage`: the CLI's storage, with its
write-ahead log, heartbeats and ``BEGIN IMMEDIATE``); one "ask" is timed twice: ``study.ask()`` alone (where the evolution sampler does all its
work: reading the study, proposing, claiming) and through the trial's last parameter (the
cell through the space, the hyperparameters: where TPE does its work), apart from
``study.tell``; medians. RandomSampler is the floor: what Optuna and the storage cost
with no model at all (each suggest is a committed write, and Random's cells are often
smaller than evolved ones, so "over RandomSampler" also counts extra writes). Each repeat
times every sampler once, in turns (the first goes last in the next repeat), so that a
busy machine slows them alike; the summary gives each sampler's median and range over
the repeats.

    python benchmarks/sampler_overhead.py            # 1,000 and 10,000 trials
    python benchmarks/sampler_overhead.py --sizes 500 --asks 5
    python benchmarks/sampler_overhead.py --sizes 10000 --repeats 5 --tpe-asks 0 \
        --keep /tmp/overhead  # reuse the built study; no TPE

Bar (issues 6 and 19): ``study.ask()`` with CellEvolutionSampler at most 20 ms at 10,000
finished trials. ``--plain`` adds both samplers on Optuna's own storage for the same file
(``optuna.load_study(storage="sqlite:///...")``), the storage before issue 19's fixes.
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
from collections import defaultdict
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
from optuna_rnn.storage import open_storage

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
    url: str, sampler: optuna.samplers.BaseSampler, asks: int, *, plain: bool = False
) -> tuple[float, float, float]:
    """Median milliseconds of ``study.ask()``, of ask through the last suggest, and of tell,
    on the storage :func:`open_storage` opens for ``url`` (``plain``: Optuna's own).

    One untimed trial first fills the storage's cache, as any long-running worker has.
    """
    storage = url if plain else open_storage(url)
    study = optuna.load_study(study_name="overhead", storage=storage, sampler=sampler)
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


def build(n: int, folder: Path, keep: str | None, seed: int) -> Path:
    """The study of ``n`` finished trials, built (or copied from ``keep``) into ``folder``."""
    kept = keep and Path(keep) / f"base{n}-seed{seed}.db"
    base = folder / f"base{n}.db"
    if kept and kept.exists():
        shutil.copy(kept, base)
        return base
    study = optuna.create_study(
        study_name="overhead", storage=f"sqlite:///{base}", direction="maximize"
    )
    study.add_trials(finished_trials(n, np.random.default_rng(seed)))
    del study
    if kept:
        shutil.copy(base, kept)
    return base


PLAIN = " (plain URL)"


def samplers(seed: int, asks: int, tpe_asks: int, plain: bool) -> dict[str, tuple]:
    """Fresh samplers (no memo of an earlier repeat) and how many asks each is timed;
    ``plain`` adds Random and evolution on Optuna's own storage for the URL."""
    out = {
        "RandomSampler": (optuna.samplers.RandomSampler(seed=seed), asks),
        "CellEvolutionSampler": (CellEvolutionSampler(space=SPACE, seed=seed), asks),
    }
    if tpe_asks:
        out["TPESampler"] = (optuna.samplers.TPESampler(seed=seed), tpe_asks)
    if plain:
        out["RandomSampler" + PLAIN] = (optuna.samplers.RandomSampler(seed=seed), asks)
        out["CellEvolutionSampler" + PLAIN] = (
            CellEvolutionSampler(space=SPACE, seed=seed),
            asks,
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--asks", type=int, default=20, help="asks timed per sampler")
    parser.add_argument("--tpe-asks", type=int, default=5, help="asks timed for TPE (0: none)")
    parser.add_argument("--repeats", type=int, default=3, help="turns of every sampler")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="also time Random and evolution on Optuna's own storage for the same URL "
        "(optuna.load_study(storage='sqlite:///...'): rollback journal, no cache shortcut)",
    )
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
    # open_storage's heartbeats are meant for study.optimize; ask/tell here is the same work.
    warnings.filterwarnings("ignore", "Heartbeat of storage")
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC {platform.platform()} "
        f"{platform.processor()} {os.cpu_count()} CPUs, optuna {optuna.__version__}, "
        f"SQLite in {args.dir or 'tmp'} through optuna_rnn.storage.open_storage "
        "(WAL, synchronous=NORMAL, BEGIN IMMEDIATE, heartbeats)"
    )
    print(
        "trials | repeat | sampler | ms study.ask() | ask over RandomSampler | ms through "
        "last suggest | over RandomSampler | ms tell | asks timed"
    )
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in args.sizes:
            base = build(n, Path(tmp), args.keep, args.seed)
            asks_ms: dict[str, list[float]] = defaultdict(list)
            for rep in range(args.repeats):
                turn = samplers(args.seed, args.asks, args.tpe_asks, args.plain)
                names = list(turn)
                names = names[rep % len(names) :] + names[: rep % len(names)]
                results = {}
                for name in names:
                    sampler, asks = turn[name]
                    copy = Path(tmp) / f"{name}{n}-{rep}.db"
                    shutil.copy(base, copy)
                    results[name] = time_asks(
                        f"sqlite:///{copy}", sampler, asks, plain=name.endswith(PLAIN)
                    )
                    asks_ms[name].append(results[name][0])
                for name in turn:
                    ask, full, tell = results[name]
                    floor = results["RandomSampler" + PLAIN * name.endswith(PLAIN)]
                    ask_over, over = ask - floor[0], full - floor[1]
                    print(
                        f"{n} | {rep} | {name} | {ask:.1f} | {ask_over:.1f} | {full:.1f} "
                        f"| {over:.1f} | {tell:.1f} | {turn[name][1]}",
                        flush=True,
                    )
            print(
                f"{n} | summary | sampler | median ms study.ask() [range] over {args.repeats} repeats"
            )
            for name, ms in asks_ms.items():
                print(
                    f"{n} | summary | {name} | {statistics.median(ms):.1f} "
                    f"[{min(ms):.1f}, {max(ms):.1f}]"
                )


if __name__ == "__main__":
    main()
