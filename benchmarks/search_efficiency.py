"""Search efficiency: how fast each sampler and space reaches the GRU, on real training.

Each study trains cells on a tiny task with the reference backend, on the CPU (a 1,500
parameter budget, three learning rates), for the same ``--trials`` per study and
``--seeds`` seeds, every study starting from nothing (seeding evolution with LSTM or GRU,
as the paper did, would hand it the target). The tasks (``--tasks``):

- ``memorization``: 3 symbols of 6, 140 SGD steps, validated every 20;
- ``memorization2``: 2 symbols of 8, 140 SGD steps, validated every 20;
- ``arithmetic`` (not run by default): the tiny preset (one-digit sums), 120 SGD steps,
  validated every 20;
- ``xml`` (not run by default): the tiny preset, 300 SGD steps, validated every 50.

Both memorisation tasks are graded for GraphSpace: random cells that can remember
(:func:`optuna_rnn.cell.live`; about 27% of GraphSpace's random cells,
``space_draws.py``) spread over many scores and some pass the GRU, while the cells that
cannot score at the floor that chance reaches (RandomSampler's rows show the spread:
on 2026-12-06 its median best at 40 trials was 0.54 [0.39, 0.99] against the GRU's 0.61
on memorisation). Arithmetic is a needle search (most cells sit at one floor score and a
few jump to the GRU's), and XML at 300 steps has a ceiling for GraphSpace (the best of
nearly every GraphSpace study of 20 trials was the same 0.4326, a ceiling the GatedSpace
cells pass at once).

The pairs, with every setting that differs from the class's default:

- CellEvolutionSampler on GraphSpace: ``population_size=10, tournament_size=10,
  mutation=PointMutation(GRAPH), n_startup_trials=5``: each child is a point mutation
  (one parameter of the encoding changed) of the best architecture so far, and every
  proposed cell, random or mutant, can remember (the default ``viable``). A study of
  40 trials needs that pressure: the default tournament of 1 is the paper's uniform pick
  from a population of 100, whose pressure comes from the many it keeps out;
- the same with ``viable=None`` (proposing any cell, as before 2026-12-06), for scale;
- RandomSampler, TPESampler (``multivariate=True, group=True, n_startup_trials=5``) and
  NSGAIISampler (``population_size=10``) on GraphSpace;
- RandomSampler, TPESampler (as above) and GPSampler (``n_startup_trials=5``) on
  GatedSpace.

The model-based samplers start after 5 random trials, not Optuna's default 10, as the
docs recommend for small budgets: with 10 they would be random search for a quarter
of a 40-trial budget. Every study uses ``NopPruner``, so each trial is measured whole (a
pruned trial would count as not reaching the target).

The target on each task is the GRU's best score over the three learning rates (trained
first, same settings). Printed per task and pair: the median trials to reach the target
(a study that never reaches it counts as budget + 1, shown as ">N"), the share of seeds
that reach it, the median best score at the budget with a bootstrap 90% interval
(resampling seeds), and the share of trials that FAILed.

    python benchmarks/search_efficiency.py                    # 10 seeds x 40 trials
    python benchmarks/search_efficiency.py --seeds 2 --trials 8 --tasks arithmetic
    python benchmarks/search_efficiency.py --pairs 0 2        # evolution and Random only

Bars (issue 19), on both tasks: TPE on GraphSpace needs fewer trials than RandomSampler
on GraphSpace (median over seeds); CellEvolutionSampler at most half of RandomSampler's;
no trial FAILs for an invalid cell.
"""

from __future__ import annotations

import argparse
import datetime
import multiprocessing
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import optuna

from optuna_rnn import make_objective
from optuna_rnn.cell import zoo
from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.samplers import CellEvolutionSampler, PointMutation
from optuna_rnn.spaces import CellSpace, GatedSpace, GraphSpace
from optuna_rnn.tasks import XML, Arithmetic, Memorization

#: Each task, its SGD steps per trial and the steps between validations.
TASKS = {
    "memorization": (lambda: Memorization(length=3, alphabet=6, eval_size=60), 140, 20),
    "memorization2": (lambda: Memorization(length=2, alphabet=8, eval_size=60), 140, 20),
    "xml": (lambda: XML("tiny", eval_size=60), 300, 50),
    "arithmetic": (lambda: Arithmetic("tiny", eval_size=60), 120, 20),
}
HYPER = Hyperparameters(
    param_budgets=(1500,),
    layer_counts=(1,),
    learning_rates=(0.3, 1.0, 3.0),
    init_scales=(1.0,),
    max_grad_norms=(5.0,),
)
SETTINGS = {
    "hyperparameters": HYPER,
    "backend": "reference",
    "notes": False,
}
GRAPH, GATED = GraphSpace(max_nodes=24), GatedSpace()
Make = Callable[[int], optuna.samplers.BaseSampler]
STARTUP = 5  # random trials before a model-based sampler (or evolution) takes over


def objective(task: str, space: CellSpace) -> Callable[[optuna.Trial], float]:
    make, steps, eval_every = TASKS[task]
    return make_objective(make(), space=space, max_steps=steps, eval_every=eval_every, **SETTINGS)


def _tpe(seed: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, group=True, n_startup_trials=STARTUP
    )


def _evolution(seed: int, **kwargs) -> CellEvolutionSampler:
    return CellEvolutionSampler(
        space=GRAPH,
        population_size=10,
        tournament_size=10,
        mutation=PointMutation(GRAPH),
        n_startup_trials=STARTUP,
        seed=seed,
        **kwargs,
    )


PAIRS: dict[str, tuple[CellSpace, Make]] = {
    "CellEvolutionSampler, GraphSpace": (GRAPH, _evolution),
    "CellEvolutionSampler (viable=None), GraphSpace": (
        GRAPH,
        lambda s: _evolution(s, viable=None),
    ),
    "RandomSampler, GraphSpace": (GRAPH, lambda s: optuna.samplers.RandomSampler(seed=s)),
    "TPESampler, GraphSpace": (GRAPH, _tpe),
    "NSGAIISampler, GraphSpace": (
        GRAPH,
        lambda s: optuna.samplers.NSGAIISampler(seed=s, population_size=10),
    ),
    "RandomSampler, GatedSpace": (GATED, lambda s: optuna.samplers.RandomSampler(seed=s)),
    "TPESampler, GatedSpace": (GATED, _tpe),
    "GPSampler, GatedSpace": (
        GATED,
        lambda s: optuna.samplers.GPSampler(seed=s, n_startup_trials=STARTUP),
    ),
}


def run(task: str, pair: str, seed: int, trials: int) -> tuple[list[float], int]:
    """The study's values in trial order (failed and pruned trials count as -inf), and
    how many trials FAILed."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    space, make = PAIRS[pair]
    study = optuna.create_study(
        direction="maximize", sampler=make(seed), pruner=optuna.pruners.NopPruner()
    )
    study.optimize(objective(task, space), n_trials=trials)
    values = [t.value if t.value is not None else -float("inf") for t in study.trials]
    failed = sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
    return values, failed


def gru_target(task: str) -> float:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    params = GATED.encode(zoo.get("gru"))
    for lr in HYPER.learning_rates:
        study.enqueue_trial({**params, "learning_rate": lr})
    study.optimize(objective(task, GATED), n_trials=3)
    return study.best_value


def _unit(args: tuple[str, str, int, int]) -> tuple[str, str, int, list[float], int]:
    task, pair, seed, trials = args
    return (task, pair, seed, *run(task, pair, seed, trials))


def bootstrap_median(values: list[float], *, level: float = 0.9, n: int = 2000) -> tuple:
    """A percentile bootstrap interval of the median (seeds resampled with replacement)."""
    rng = np.random.default_rng(0)
    data = np.asarray(values)
    medians = np.median(rng.choice(data, size=(n, len(data)), replace=True), axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(medians, tail)), float(np.quantile(medians, 1 - tail))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=1, help="worker processes")
    parser.add_argument(
        "--tasks", nargs="+", choices=sorted(TASKS), default=["memorization", "memorization2"]
    )
    parser.add_argument(
        "--pairs", nargs="+", metavar="N", type=int, help="run only these rows (0 first)"
    )
    args = parser.parse_args()
    pairs = [p for i, p in enumerate(PAIRS) if args.pairs is None or i in args.pairs]
    start = time.perf_counter()
    print(
        f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
        f"{platform.platform()} {os.cpu_count()} CPUs, optuna {optuna.__version__}; "
        f"{args.seeds} seeds x {args.trials} trials, {args.jobs} processes",
        flush=True,
    )
    units = [(t, p, s, args.trials) for t in args.tasks for p in pairs for s in range(args.seeds)]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        targets = dict(zip(args.tasks, pool.map(gru_target, args.tasks)))
        results: dict[tuple[str, str], list[tuple[list[float], int]]] = {}
        for task, pair, seed, values, failed in pool.imap_unordered(_unit, units):
            results.setdefault((task, pair), []).append((seed, values, failed))
    for task in args.tasks:
        print(f"\n{task}: target = the GRU's best score {targets[task]:.4f}")
        print(
            "sampler, space | median trials to target | reached | median best [90% CI] "
            "| FAIL share | trials to target per seed (-: not reached)"
        )
        for pair in pairs:
            runs = [(v, f) for _, v, f in sorted(results[task, pair])]  # in seed order
            bests = [max(v) for v, _ in runs]
            reach = [
                next((i + 1 for i, x in enumerate(v) if x >= targets[task]), args.trials + 1)
                for v, _ in runs
            ]
            median = statistics.median(reach)
            shown = f">{args.trials}" if median > args.trials else f"{median:g}"
            low, high = bootstrap_median(bests)
            failed = sum(f for _, f in runs) / sum(len(v) for v, _ in runs)
            per_seed = " ".join(str(r) if r <= args.trials else "-" for r in reach)
            print(
                f"{pair} | {shown} | {sum(r <= args.trials for r in reach)}/{len(runs)} "
                f"| {statistics.median(bests):.4f} [{low:.4f}, {high:.4f}] | {failed:.0%} "
                f"| {per_seed}",
                flush=True,
            )
    print(f"\n# {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
