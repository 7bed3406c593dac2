"""Search efficiency: evolution against random search and TPE, on a cheap real objective.

Each study trains cells on a tiny Memorization (3 symbols of 6, 60 SGD steps, a 1,500
parameter budget, three learning rates) with the reference backend, on the CPU:

- CellEvolutionSampler on GraphSpace (population 10),
- RandomSampler on GraphSpace,
- TPESampler on GraphSpace and on GatedSpace,

each for ``--seeds`` seeds and the same ``--trials`` per study, every study starting
from nothing (evolution's first parent is the first valid random cell; seeding it with
LSTM or GRU, as the paper did, would hand it the target). The target is the GRU's best
score over the three learning rates (trained first, same settings). Printed per sampler: the median best score after
the budget and the median number of trials to reach the target (a study that never
reaches it counts as budget + 1, shown as ">N").

    python benchmarks/search_efficiency.py                 # 5 seeds x 30 trials
    python benchmarks/search_efficiency.py --seeds 2 --trials 10

Bar (issue 6): evolution reaches the target in fewer trials (median) than random search.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import time

import optuna

from optuna_rnn import make_objective
from optuna_rnn.cell import zoo
from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.samplers import CellEvolutionSampler
from optuna_rnn.spaces import CellSpace, GatedSpace, GraphSpace
from optuna_rnn.tasks.memorization import Memorization

TASK = Memorization(length=3, alphabet=6, eval_size=60)
HYPER = Hyperparameters(
    param_budgets=(1500,),
    layer_counts=(1,),
    learning_rates=(0.3, 1.0, 3.0),
    init_scales=(1.0,),
    max_grad_norms=(5.0,),
)
SETTINGS = {
    "hyperparameters": HYPER,
    "max_steps": 60,
    "eval_every": 20,
    "backend": "reference",
    "notes": False,
}


def run(space: CellSpace, sampler: optuna.samplers.BaseSampler, trials: int) -> list[float]:
    """The study's values in trial order (failed and pruned trials count as -inf)."""
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(make_objective(TASK, space=space, **SETTINGS), n_trials=trials)
    return [t.value if t.value is not None else -float("inf") for t in study.trials]


def gru_target() -> float:
    space = GatedSpace()
    study = optuna.create_study(direction="maximize")
    params = space.encode(zoo.get("gru"))
    for lr in HYPER.learning_rates:
        study.enqueue_trial({**params, "learning_rate": lr})
    study.optimize(make_objective(TASK, space=space, **SETTINGS), n_trials=3)
    return study.best_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--trials", type=int, default=30)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    graph, gated = GraphSpace(max_nodes=24), GatedSpace()
    configs = {
        "CellEvolutionSampler, GraphSpace": (
            graph,
            lambda s: CellEvolutionSampler(space=graph, population_size=10, seed=s),
        ),
        "RandomSampler, GraphSpace": (graph, lambda s: optuna.samplers.RandomSampler(seed=s)),
        "TPESampler, GraphSpace": (graph, lambda s: optuna.samplers.TPESampler(seed=s)),
        "TPESampler, GatedSpace": (gated, lambda s: optuna.samplers.TPESampler(seed=s)),
    }
    start = time.perf_counter()
    target = gru_target()
    print(
        f"# {datetime.date.today()} {platform.platform()} {os.cpu_count()} CPUs, "
        f"optuna {optuna.__version__}; {args.seeds} seeds x {args.trials} trials"
    )
    print(f"target: the GRU's best score {target:.4f}")
    print("sampler | median best score | median trials to target | reached | per seed")
    for name, (space, make_sampler) in configs.items():
        bests, reach = [], []
        for seed in range(args.seeds):
            values = run(space, make_sampler(seed), args.trials)
            bests.append(max(values))
            hit = next((i + 1 for i, v in enumerate(values) if v >= target), args.trials + 1)
            reach.append(hit)
        median = statistics.median(reach)
        shown = f">{args.trials}" if median > args.trials else f"{median:g}"
        reached = sum(r <= args.trials for r in reach)
        per_seed = ", ".join(">N" if r > args.trials else str(r) for r in reach)
        print(
            f"{name} | {statistics.median(bests):.4f} | {shown} | {reached}/{args.seeds} "
            f"| {per_seed}",
            flush=True,
        )
    print(f"# {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
