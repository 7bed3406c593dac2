"""How sure a result is: bootstrap intervals per cell and the probability of each finding.

A baseline study trains every cell with the same N hyperparameter draws (a paired design:
draw k is one setting for all cells). :func:`draws_of` reads a study into a draws x cells
table of scores; :func:`summarize` gives each cell's best of N and median, each with a
percentile bootstrap interval; :func:`ordering_probabilities` gives, for each of the
paper's findings (:data:`PAPER_ORDERINGS`), the share of bootstrap resamples in which it
holds. Resampling picks N draws with replacement, the same draws for every cell when the
design is paired, so that a draw good for every cell moves them together.

A draw that ended without a score (diverged, failed or pruned) counts as the worst
possible score: it is a draw the cell did not turn into a result. Only waiting and running
trials are left out.

Reading the numbers: the best's interval runs from the best the resampled draws left to
the observed best, its upper end; it shows how much the best rests on one lucky draw, and
its lower end is a conservative bound on the expected best of N (a maximum cannot be
bootstrapped above the observed one). The median's interval is a confidence interval in
the usual sense. An ordering's probability is not a p-value: two cells of one
distribution reach 0.9 in about a quarter of studies at N = 10 (see
``docs/guides/reproduction.md``).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import optuna
import pandas as pd
from optuna.trial import TrialState

from optuna_rnn import keys

__all__ = [
    "DRAW_ATTRS",
    "PAPER_BEST",
    "PAPER_ORDERINGS",
    "Draws",
    "Ordering",
    "draws_of",
    "export_findings",
    "findings_tables",
    "ordering_probabilities",
    "plot_draws",
    "pruning_effect",
    "reference_ratios",
    "summarize",
    "task_label",
]

#: Trial attributes (user or system) that hold a trial's draw index, read in this order.
DRAW_ATTRS = (keys.DRAW,)

#: The paper's Table 2 (Jozefowicz et al., 2015): best validation accuracy per cell.
PAPER_BEST: dict[str, dict[str, float]] = {
    "arithmetic": {
        "tanh": 0.29,
        "lstm": 0.89,
        "lstm_f": 0.29,
        "lstm_i": 0.75,
        "lstm_o": 0.87,
        "lstm_b": 0.90,
        "gru": 0.90,
        "mut1": 0.92,
        "mut2": 0.90,
        "mut3": 0.91,
    },
    "xml": {
        "tanh": 0.32,
        "lstm": 0.42,
        "lstm_f": 0.23,
        "lstm_i": 0.41,
        "lstm_o": 0.42,
        "lstm_b": 0.44,
        "gru": 0.46,
        "mut1": 0.47,
        "mut2": 0.47,
        "mut3": 0.46,
    },
}

Relation = Literal["above", "at_or_above", "close"]


@dataclasses.dataclass(frozen=True)
class Ordering:
    """A finding as a relation between two cells' best-of-N scores on some tasks.

    ``first above second``: ``first`` scores better. ``at_or_above``: no worse than
    ``tolerance`` (relative) below. ``close``: within ``tolerance`` (relative) either way.
    Relative tolerances compare positive scores (accuracy, perplexity, ratios), as a
    ratio oriented so that above 1 means ``first`` is better.
    """

    name: str
    first: str
    relation: Relation
    second: str
    tolerance: float = 0.0
    tasks: tuple[str, ...] = ("arithmetic", "xml")

    def __post_init__(self) -> None:
        if self.relation not in ("above", "at_or_above", "close"):
            raise ValueError(f"unknown relation {self.relation!r}; use above, at_or_above or close")
        if self.tolerance < 0:
            raise ValueError(f"tolerance must not be negative, got {self.tolerance!r}")

    def holds(self, first: np.ndarray, second: np.ndarray, *, maximize: bool) -> np.ndarray:
        """Whether the relation holds, elementwise over paired scores."""
        first, second = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
        if self.relation == "above":
            return first > second if maximize else first < second
        ratio = _ratio(first, second, maximize=maximize)
        if self.relation == "at_or_above":
            return ratio >= 1 - self.tolerance
        return np.abs(ratio - 1) <= self.tolerance


#: The paper's orderings on Arithmetic and XML (its Table 2 and findings 2-4; language
#: modelling is the exception the paper names, so PTB is left out).
PAPER_ORDERINGS: tuple[Ordering, ...] = (
    Ordering("Tanh far below LSTM", "lstm", "above", "tanh"),
    Ordering("LSTM-f far below LSTM", "lstm", "above", "lstm_f"),
    Ordering("LSTM-i below LSTM", "lstm", "above", "lstm_i"),
    Ordering("LSTM-o close to LSTM", "lstm_o", "close", "lstm", tolerance=0.05),
    Ordering("LSTM-b above LSTM", "lstm_b", "above", "lstm"),
    Ordering("LSTM-b near GRU", "lstm_b", "close", "gru", tolerance=0.05),
    Ordering("GRU above LSTM", "gru", "above", "lstm"),
    Ordering("MUT1 at or above GRU", "mut1", "at_or_above", "gru", tolerance=0.01),
)


def _ratio(first: np.ndarray, second: np.ndarray, *, maximize: bool) -> np.ndarray:
    """``first / second`` (``second / first`` when minimizing): above 1 means first is better.

    A worst (infinite) score on one side makes the other infinitely better; on both, NaN.
    """
    worst = -np.inf if maximize else np.inf
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = first / second if maximize else second / first
    first_bad, second_bad = first == worst, second == worst
    ratio = np.where(second_bad & ~first_bad, np.inf, ratio)
    ratio = np.where(first_bad & ~second_bad, 0.0, ratio)
    return np.where(first_bad & second_bad, np.nan, ratio)


@dataclasses.dataclass(frozen=True)
class Draws:
    """Scores of one task: a row per draw, a column per cell (NaN: no such trial).

    ``paired``: rows are the same hyperparameter draw for every cell, and resampling
    picks rows; otherwise each cell's column is resampled on its own.
    """

    scores: pd.DataFrame
    maximize: bool
    paired: bool

    @property
    def worst(self) -> float:
        return -np.inf if self.maximize else np.inf

    def oriented(self) -> np.ndarray:
        """Scores with higher always better (negated when minimizing)."""
        values = self.scores.to_numpy(dtype=float)
        return values if self.maximize else -values

    def resample(self, resamples: int, rng: np.random.Generator) -> np.ndarray:
        """``(resamples, draws, cells)`` oriented scores, draws picked with replacement."""
        values = self.oriented()
        n = values.shape[0]
        if self.paired:
            return values[rng.integers(0, n, size=(resamples, n))]
        out = np.full((resamples, n, values.shape[1]), np.nan)
        for j in range(values.shape[1]):
            column = values[~np.isnan(values[:, j]), j]
            if column.size:
                picks = rng.integers(0, column.size, size=(resamples, column.size))
                out[:, : column.size, j] = column[picks]
        return out


def _trial_label(trial: optuna.trial.FrozenTrial) -> str | None:
    name = trial.user_attrs.get(keys.ZOO_NAME)
    if name:
        return name
    fingerprint = trial.user_attrs.get(keys.FINGERPRINT)
    return fingerprint[:10] if fingerprint else None


def _draw_key(trial: optuna.trial.FrozenTrial) -> tuple[str, object] | None:
    for attr in DRAW_ATTRS:
        for attrs in (trial.user_attrs, trial.system_attrs):
            if attr in attrs:
                return ("draw", attrs[attr])
    return None


def _hyperparameter_key(trial: optuna.trial.FrozenTrial) -> str:
    from optuna_rnn.hyperparameters import Hyperparameters

    chosen = {k: v for k, v in trial.params.items() if k in Hyperparameters.names}
    if not chosen:
        chosen = dict(trial.user_attrs.get(keys.HYPERPARAMETERS) or {})
    return json.dumps(chosen, sort_keys=True, default=str)


def draws_of(
    study: optuna.Study,
    *,
    trials: Sequence[optuna.trial.FrozenTrial] | None = None,
    score: str | None = None,
) -> Draws:
    """The draws x cells score table of a study (or of ``trials``, in its direction).

    Rows pair up by the trial attribute ``draw`` (:data:`DRAW_ATTRS`) where trials have
    one, else by identical hyperparameters (the k-th trial of a cell with a setting meets
    the k-th of every other cell with it). Without a shared row, cells are unpaired.
    Trials superseded by their retry, and surplus trials, are left out
    (:func:`optuna_rnn.cli.run.live_trials`). ``score``: a user attr to read instead of
    the first objective's value, e.g. ``keys.TEST_SCORE`` for the held-out split.
    """
    from optuna_rnn.cli.run import live_trials

    # The score is the first objective (a multi-objective study's others are costs).
    maximize = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    worst = -np.inf if maximize else np.inf
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    if trials is None:
        trials = study.get_trials(deepcopy=False)
    trials = live_trials(trials)  # a retried trial's failed first run is no draw
    columns: dict[str, dict[object, float]] = {}
    seen: dict[tuple[str, str], int] = {}
    for trial in sorted((t for t in trials if t.state in finished), key=lambda t: t.number):
        label = _trial_label(trial)
        if label is None:
            continue
        key = _draw_key(trial)
        if key is None:
            setting = _hyperparameter_key(trial)
            occurrence = seen.get((label, setting), 0)
            seen[label, setting] = occurrence + 1
            key = (setting, occurrence)
        value = None
        if trial.state == TrialState.COMPLETE:
            value = trial.values[0] if score is None else trial.user_attrs.get(score)
        scored = float(value) if value is not None and np.isfinite(value) else worst
        columns.setdefault(label, {})[key] = scored
    scores = pd.DataFrame(columns)
    owners = scores.notna().sum(axis=1)
    paired = len(columns) < 2 or bool((owners >= 2).all())
    if not paired:  # each cell's own draws, top-aligned: rows mean nothing across cells
        scores = pd.DataFrame({c: pd.Series(list(v.values())) for c, v in columns.items()})
    return Draws(scores.reset_index(drop=True), maximize=maximize, paired=paired)


def _interval(values: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    tail = (1 - level) / 2
    # "lower"/"higher" pick observed values: no interpolation across an infinite worst.
    return (
        np.nanquantile(values, tail, axis=0, method="lower"),
        np.nanquantile(values, 1 - tail, axis=0, method="higher"),
    )


def _stats(oriented: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Best and median over the draws axis (-2) of oriented scores, NaN-aware."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column gives NaN
        return np.nanmax(oriented, axis=-2), np.nanmedian(oriented, axis=-2)


def summarize(
    draws: Mapping[str, Draws],
    *,
    level: float = 0.9,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per task and cell: draws, failures, best and median, each with its interval.

    Columns: ``task, cell, n_draws, n_failed, best, best_low, best_high, median,
    median_low, median_high, paired``; intervals are percentile bootstrap intervals at
    ``level`` over ``resamples`` resamples of the draws (seeded: same input, same table).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie between 0 and 1, got {level!r}")
    rng = np.random.default_rng(seed)
    rows = []
    for task, d in draws.items():
        if d.scores.empty:
            continue
        sign = 1.0 if d.maximize else -1.0
        values = d.oriented()
        best, median = _stats(values)
        boot_best, boot_median = _stats(d.resample(resamples, rng))
        best_lo, best_hi = _interval(boot_best, level)
        med_lo, med_hi = _interval(boot_median, level)
        for j, cell in enumerate(d.scores.columns):
            column = d.scores[cell].dropna()
            # Oriented bounds turn round when the scores were negated.
            lo_b, hi_b = sorted((sign * best_lo[j], sign * best_hi[j]))
            lo_m, hi_m = sorted((sign * med_lo[j], sign * med_hi[j]))
            rows.append(
                {
                    "task": task,
                    "cell": cell,
                    "n_draws": int(column.size),
                    "n_failed": int((column == d.worst).sum()),
                    "best": sign * best[j],
                    "best_low": lo_b,
                    "best_high": hi_b,
                    "median": sign * median[j],
                    "median_low": lo_m,
                    "median_high": hi_m,
                    "paired": d.paired,
                }
            )
    return pd.DataFrame(rows)


def ordering_probabilities(
    draws: Mapping[str, Draws],
    orderings: Sequence[Ordering] = PAPER_ORDERINGS,
    *,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Per ordering and task: whether it holds on the observed bests, and how often resampled.

    Columns: ``ordering, task, first, second, first_best, second_best, holds,
    probability``. Orderings whose task or cells a study lacks are left out.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for task, d in draws.items():
        applicable = [
            o
            for o in orderings
            if task in o.tasks and o.first in d.scores.columns and o.second in d.scores.columns
        ]
        if not applicable:
            continue
        sign = 1.0 if d.maximize else -1.0
        cells = list(d.scores.columns)
        best, _ = _stats(d.oriented())
        boot_best, _ = _stats(d.resample(resamples, rng))
        for o in applicable:
            i, j = cells.index(o.first), cells.index(o.second)
            holds = o.holds(sign * best[i], sign * best[j], maximize=d.maximize)
            share = o.holds(sign * boot_best[:, i], sign * boot_best[:, j], maximize=d.maximize)
            rows.append(
                {
                    "ordering": o.name,
                    "task": task,
                    "first": o.first,
                    "second": o.second,
                    "first_best": sign * best[i],
                    "second_best": sign * best[j],
                    "holds": bool(holds),
                    "probability": float(np.mean(share)),
                }
            )
    return pd.DataFrame(
        rows,
        columns=[
            "ordering",
            "task",
            "first",
            "second",
            "first_best",
            "second_best",
            "holds",
            "probability",
        ],
    )


def reference_ratios(
    draws: Mapping[str, Draws],
    reference: str,
    *,
    level: float = 0.9,
    resamples: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each cell's median score as a ratio to ``reference``'s, per task and over tasks.

    The ratio is oriented as the paper's (above 1: better than the reference; perplexity
    turned round) and comes with a percentile bootstrap interval at ``level``, draws
    resampled per cell (or per row when paired). Rows with task ``"min"`` hold the worst
    ratio over the tasks, the paper's score, for the cells every task has: its interval
    takes the minimum within each resample. A failed draw counts as the worst score, so
    the median tolerates a minority of them. Columns: ``task, cell, n_draws, median,
    ratio, ratio_low, ratio_high``.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must lie between 0 and 1, got {level!r}")
    rng = np.random.default_rng(seed)
    rows: list[dict[str, object]] = []
    per_task: dict[str, tuple[pd.Series, pd.DataFrame]] = {}
    for task, d in draws.items():
        cells = list(d.scores.columns)
        if reference not in cells:
            raise ValueError(f"task {task!r} has no draws of the reference {reference!r}")
        sign = 1.0 if d.maximize else -1.0
        _, observed = _stats(d.oriented())
        _, boot = _stats(d.resample(resamples, rng))
        r = cells.index(reference)
        ratio = _ratio(sign * observed, sign * observed[r], maximize=d.maximize)
        boot_ratio = _ratio(sign * boot, sign * boot[:, [r]], maximize=d.maximize)
        per_task[task] = (pd.Series(ratio, index=cells), pd.DataFrame(boot_ratio, columns=cells))
        low, high = _interval(boot_ratio, level)
        for j, cell in enumerate(cells):
            rows.append(
                {
                    "task": task,
                    "cell": cell,
                    "n_draws": int(d.scores[cell].notna().sum()),
                    "median": sign * observed[j],
                    "ratio": ratio[j],
                    "ratio_low": low[j],
                    "ratio_high": high[j],
                }
            )
    if len(per_task) > 1:
        shared = [
            c
            for c in next(iter(per_task.values()))[0].index
            if all(c in ratios.index for ratios, _ in per_task.values())
        ]
        worst = pd.concat([ratios[shared] for ratios, _ in per_task.values()], axis=1).min(axis=1)
        boot_worst = np.minimum.reduce([boot[shared].to_numpy() for _, boot in per_task.values()])
        low, high = _interval(boot_worst, level)
        for j, cell in enumerate(shared):
            rows.append(
                {
                    "task": "min",
                    "cell": cell,
                    "n_draws": min(int(d.scores[cell].notna().sum()) for d in draws.values()),
                    "median": np.nan,
                    "ratio": worst[cell],
                    "ratio_low": low[j],
                    "ratio_high": high[j],
                }
            )
    columns = ["task", "cell", "n_draws", "median", "ratio", "ratio_low", "ratio_high"]
    return pd.DataFrame(rows, columns=columns)


def task_label(study: optuna.Study) -> str:
    """The task name(s) of a study made by ``optuna-rnn`` (``arithmetic``), else its name."""
    from optuna_rnn.cli.spec import SearchSpec, parse_task

    try:
        spec = SearchSpec.from_study(study)
    except ValueError:
        return study.study_name
    return "+".join(parse_task(task)[0] for task in spec.tasks)


def plot_draws(
    d: Draws,
    summary: pd.DataFrame,
    path: Path,
    *,
    task: str,
    paper: Mapping[str, float] | None = None,
) -> Path:
    """One task: each cell's draws as points, its best with the interval, the paper's mark.

    ``summary`` is :func:`summarize`'s rows for this task. Needs matplotlib.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary.set_index("cell")
    cells = list(d.scores.columns)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.75 * len(cells) + 1.5), 4.0))
    jitter = np.random.default_rng(0)
    for x, cell in enumerate(cells):
        values = d.scores[cell].dropna().to_numpy()
        finite = values[np.isfinite(values)]
        ax.plot(
            x + jitter.uniform(-0.18, 0.18, finite.size),
            finite,
            "o",
            color="tab:gray",
            alpha=0.5,
            markersize=4,
            label="draws" if x == 0 else None,
        )
        if finite.size < values.size:
            ax.annotate(
                f"{values.size - finite.size} failed",
                (x, 0),
                xycoords=("data", "axes fraction"),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                fontsize=7,
            )
        best = rows.loc[cell]
        if np.isfinite(best["best"]):
            low = best["best_low"] if np.isfinite(best["best_low"]) else best["best"]
            high = best["best_high"] if np.isfinite(best["best_high"]) else best["best"]
            ax.errorbar(
                x,
                best["best"],
                yerr=[[best["best"] - low], [high - best["best"]]],
                fmt="D",
                color="tab:blue",
                capsize=4,
                label="best, 90% interval" if x == 0 else None,
            )
        if paper and cell in paper:
            ax.plot(
                x,
                paper[cell],
                "_",
                color="tab:red",
                markersize=18,
                markeredgewidth=2,
                label="paper" if cell == next(c for c in cells if c in paper) else None,
            )
    ax.set_xticks(range(len(cells)), cells, rotation=45, ha="right")
    ax.set_xlim(-0.6, len(cells) - 0.4)
    ax.set_ylabel("validation score, " + ("higher is better" if d.maximize else "lower is better"))
    shown = d.scores.to_numpy(dtype=float)
    shown = shown[np.isfinite(shown)]
    if not d.maximize and shown.size and shown.max() / max(shown.min(), 1e-12) > 20:
        ax.set_yscale("log")
    paired = "" if d.paired else " (unpaired)"
    ax.set_title(f"{task}: {d.scores.shape[0]} draws per cell{paired}")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def findings_tables(
    studies: Mapping[str, optuna.Study], *, resamples: int = 2000, seed: int = 0
) -> list[tuple[str, pd.DataFrame]]:
    """``[("findings", summary), ("orderings", probabilities)]`` of studies keyed by task."""
    draws = {task: draws_of(study) for task, study in studies.items()}
    return [
        ("findings", summarize(draws, resamples=resamples, seed=seed)),
        ("orderings", ordering_probabilities(draws, resamples=resamples, seed=seed)),
    ]


def export_findings(
    studies: Mapping[str, optuna.Study], directory: str | Path, *, plots: bool = True
) -> list[Path]:
    """Write ``findings.{csv,md}``, ``orderings.{csv,md}`` and ``findings-<task>.png``.

    ``studies`` are keyed by task (:func:`task_label` names a study's); the plots need
    matplotlib and mark the paper's value where :data:`PAPER_BEST` has the task.
    """
    from optuna_rnn.export import write_table

    out = Path(directory)
    draws = {task: draws_of(study) for task, study in studies.items()}
    summary = summarize(draws)
    written = write_table(summary, out, "findings")
    written += write_table(ordering_probabilities(draws), out, "orderings")
    if plots:
        for task, d in draws.items():
            if not d.scores.empty:
                written.append(
                    plot_draws(
                        d,
                        summary[summary["task"] == task],
                        out / f"findings-{task}.png",
                        task=task,
                        paper=PAPER_BEST.get(task),
                    )
                )
    return written


def pruning_effect(study: optuna.Study, pruner: optuna.pruners.BasePruner) -> pd.DataFrame:
    """What ``pruner`` would have done to an unpruned study's best of N, replayed offline.

    The study's completed trials are replayed in trial order through ``pruner`` on an
    in-memory study, each reporting its recorded validation values step by step: a trial
    the pruner stops there ends pruned and counts no further, as it would have in the run.
    One row per cell: its best, the best among the trials the pruner keeps, how many it
    stops, and ``changed`` when the best would differ (a pruner that biases best-of-N).
    """
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    replay = optuna.create_study(direction=study.direction, pruner=pruner)
    rows: dict[str, dict[str, list[float]]] = {}
    for frozen in sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number
    ):
        label = _trial_label(frozen)
        if label is None or frozen.value is None:
            continue
        trial = replay.ask()
        stopped = False
        for step in sorted(frozen.intermediate_values):
            trial.report(frozen.intermediate_values[step], step)
            if trial.should_prune():
                stopped = True
                break
        if stopped:
            replay.tell(trial, state=TrialState.PRUNED)
        else:
            replay.tell(trial, frozen.value)
        cell = rows.setdefault(label, {"all": [], "kept": []})
        cell["all"].append(frozen.value)
        if not stopped:
            cell["kept"].append(frozen.value)
    pick = max if maximize else min
    records = []
    for label, cell in rows.items():
        best = pick(cell["all"])
        kept = pick(cell["kept"]) if cell["kept"] else float("nan")
        records.append(
            {
                "cell": label,
                "n_trials": len(cell["all"]),
                "n_pruned": len(cell["all"]) - len(cell["kept"]),
                "best": best,
                "best_if_pruned": kept,
                "changed": best != kept,
            }
        )
    return pd.DataFrame(
        records, columns=["cell", "n_trials", "n_pruned", "best", "best_if_pruned", "changed"]
    )
