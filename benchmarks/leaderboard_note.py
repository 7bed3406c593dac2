"""Milliseconds per trial to keep the study's leaderboard note, as the study grows.

A study of N finished trials (about three per architecture, some pruned or failed) is
built in memory; then, for each of ``--trials`` new trials, the note is written the way
the objective writes it at a trial's end, in two ways, interleaved:

- ``rebuild``: the leaderboard rebuilt from every trial, then its best 20 rows (what the
  objective did before: ``leaderboard(study, trials=...)`` per trial);
- ``incremental``: :class:`optuna_rnn.dashboard.LeaderboardNote`, which counts only the
  trials finished since its last write (its first write, which counts the whole study
  once, is left out).

Both save the note with optuna-dashboard. Medians over the trials.

    python benchmarks/leaderboard_note.py                 # 1,000 and 10,000 trials
    python benchmarks/leaderboard_note.py --sizes 500 --trials 10
"""

from __future__ import annotations

import argparse
import datetime
import platform
import random
import statistics
import time

import optuna
from optuna.trial import TrialState, create_trial
from optuna_dashboard import save_note

from optuna_rnn import keys, leaderboard
from optuna_rnn.dashboard import LeaderboardNote, leaderboard_markdown

STATES = [TrialState.COMPLETE] * 8 + [TrialState.PRUNED, TrialState.FAIL]


def _attrs(rng: random.Random, n_architectures: int) -> dict:
    fingerprint = f"{rng.randrange(n_architectures):032x}"
    return {
        keys.FINGERPRINT: fingerprint,
        keys.EQUATIONS: f"h' = tanh(W x + U h)  # {fingerprint}",
        keys.ZOO_NAME: None,
        keys.HYPERPARAMETERS: {"learning_rate": rng.choice([0.1, 0.5, 1.0])},
        keys.PARAM_COUNT: rng.randrange(1000, 50_000),
    }


def _study(n: int, rng: random.Random) -> optuna.Study:
    study = optuna.create_study(direction="maximize")
    for _ in range(n):
        state = rng.choice(STATES)
        study.add_trial(
            create_trial(
                state=state,
                value=rng.random() if state == TrialState.COMPLETE else None,
                user_attrs=_attrs(rng, max(1, n // 3)),
                intermediate_values={1: 0.0} if state == TrialState.PRUNED else {},
            )
        )
    return study


def _rebuild(trial: optuna.Trial, value: float) -> None:
    study = trial.study
    trials = study.get_trials(deepcopy=False)
    mine = trials[trial.number]
    finished = [t for t in trials if t.number != trial.number]
    mine = create_trial(state=TrialState.COMPLETE, value=value, user_attrs=mine.user_attrs)
    mine.number = trial.number
    board = leaderboard(study, trials=[*finished, mine])
    save_note(study, leaderboard_markdown(board.head(20), len(board)))


def _incremental(note: LeaderboardNote):
    return lambda trial, value: note.write(trial, [value])


def _time_one(study: optuna.Study, rng: random.Random, write) -> float:
    trial = study.ask()
    for key, value in _attrs(rng, 1000).items():
        trial.set_user_attr(key, value)
    value = rng.random()
    start = time.perf_counter()
    write(trial, value)
    elapsed = time.perf_counter() - start
    study.tell(trial, value)
    return elapsed * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10_000])
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.node()}, {platform.processor() or platform.machine()}, "
        f"optuna {optuna.__version__}"
    )
    print(f"{'trials':>8} {'rebuild ms':>11} {'incremental ms':>15} {'ratio':>6}")
    for n in args.sizes:
        rng = random.Random(n)
        study = _study(n, rng)
        incremental_write = _incremental(LeaderboardNote())
        _time_one(study, rng, incremental_write)  # counts the study once
        rebuild, incremental = [], []
        for _ in range(args.trials):
            rebuild.append(_time_one(study, rng, _rebuild))
            incremental.append(_time_one(study, rng, incremental_write))
        r, i = statistics.median(rebuild), statistics.median(incremental)
        print(f"{n:>8} {r:>11.2f} {i:>15.2f} {r / i:>6.1f}")


if __name__ == "__main__":
    main()
