"""The paper's objective stages: a memorisation pre-filter and the multi-task score.

Jozefowicz et al. (2015) discarded a mutant unless it reached 95% on memorisation,
trained survivors on the first task and went on to the others only if they reached 90%
of the GRU's best there, and scored an architecture by its worst ratio to the GRU over
the tasks. :func:`make_multitask_objective` runs those stages inside one Optuna trial,
each stage one :class:`~optuna_rnn.objective.CellObjective` (so training, pruning,
divergence and failures behave as in a single-task study).

Ratios point the same way for every task, so "higher is better" holds for the minimum:

- higher-is-better scores (accuracy): ``score / reference_best``, with the reference's
  best the highest;
- lower-is-better scores (perplexity, NLL): ``reference_best / score``, with the
  reference's best the lowest.

A ratio above 1 beats the reference on that task. The study maximizes.

Importing this module does not import torch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import optuna
from optuna.study import StudyDirection

from optuna_rnn import keys
from optuna_rnn.cell import Cell, zoo
from optuna_rnn.objective import CellObjective, make_objective, run_prefilter
from optuna_rnn.samplers._records import fingerprint_of

if TYPE_CHECKING:
    from optuna_rnn.tasks import Task

__all__ = ["MultitaskObjective", "make_multitask_objective", "ratio_key", "score_key"]

_logger = optuna.logging.get_logger(__name__)

_MAX_STEPS = inspect.signature(CellObjective).parameters["max_steps"].default


def score_key(task: Task) -> str:
    """The user attr holding a trial's validation score on ``task``."""
    return keys.score_key(task.name)


def ratio_key(task: Task) -> str:
    """The user attr holding a trial's ratio to the reference on ``task``."""
    return keys.ratio_key(task.name)


def _ratio(task: Task, score: float, best: float) -> float:
    numerator, denominator = (score, best) if task.higher_is_better else (best, score)
    if denominator == 0:
        return math.inf if numerator > 0 else 1.0
    return numerator / denominator


class MultitaskObjective:
    """Pre-filter, then tasks in order; the value is the minimum ratio to the reference.

    Build it with :func:`make_multitask_objective`. Per trial, user attrs
    ``score_<task>`` and ``ratio_<task>`` for each task trained (``score_<prefilter>``
    too), ``score`` the returned minimum, and ``ended_because`` for a trial stopped by
    a stage: ``"prefilter"`` (memorisation under ``prefilter_threshold``),
    ``"first_task"`` (under ``first_task_threshold`` of the reference on the first
    task), ``"no_reference"`` (the reference has no score on a task yet).
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        *,
        reference: Cell,
        reference_scores: Mapping[str, float] | None,
        prefilter: Task | None,
        prefilter_threshold: float,
        first_task_threshold: float | None,
        objective_kwargs: Mapping[str, Any],
    ) -> None:
        tasks = list(tasks)
        if not tasks:
            raise ValueError("make_multitask_objective needs at least one task")
        names = [t.name for t in tasks] + ([prefilter.name] if prefilter is not None else [])
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be distinct (they key user attrs), got {names}")
        if prefilter is not None and not prefilter.higher_is_better:
            raise ValueError(f"the prefilter {prefilter!r} must score higher-is-better")
        unknown = sorted(set(reference_scores or {}) - {t.name for t in tasks})
        if unknown:
            raise ValueError(f"reference_scores names tasks not in tasks: {unknown}")
        self.tasks = tasks
        self.reference = reference
        self.reference_scores = dict(reference_scores or {})
        self.prefilter = prefilter
        self.prefilter_threshold = prefilter_threshold
        self.first_task_threshold = first_task_threshold
        kwargs = dict(objective_kwargs)
        self._stride = kwargs.get("max_steps", _MAX_STEPS) + 1
        stages = ([prefilter] if prefilter is not None else []) + tasks
        # The first stage annotates the trial (note, diagram); later ones would repeat it.
        quiet = {**kwargs, "notes": False, "artifact_store": None}
        self._objectives = {
            task.name: make_objective(task, **(kwargs if k == 0 else quiet))
            for k, task in enumerate(stages)
        }

    def __call__(self, trial: optuna.Trial) -> float:
        if trial.study.directions != [StudyDirection.MAXIMIZE]:
            raise ValueError(
                "a multi-task study maximizes the ratio to the reference: "
                "create it with direction='maximize'"
            )
        stage = 0
        if self.prefilter is not None:
            stage_objective = self._objectives[self.prefilter.name]
            if math.isnan(run_prefilter(stage_objective, trial, self.prefilter_threshold)):
                return math.nan
            stage += 1
        ratios = []
        for k, task in enumerate(self.tasks):
            score = self._train(trial, task, stage + k)
            if math.isnan(score):
                return score
            best = self._reference_best(trial, task, score)
            if best is None:
                self._stop(
                    trial,
                    "no_reference",
                    f"the reference has no {task.name} score "
                    "yet: enqueue it first, e.g. seed_study(study, ['gru'])",
                )
            ratio = _ratio(task, score, best)
            trial.set_user_attr(ratio_key(task), ratio)
            ratios.append(ratio)
            if (
                k == 0
                and self.first_task_threshold is not None
                and (ratio < self.first_task_threshold)
            ):
                self._stop(
                    trial,
                    "first_task",
                    f"{ratio:.4g} of the reference on "
                    f"{task.name}, under {self.first_task_threshold:g}",
                )
        value = min(ratios)
        trial.set_user_attr(keys.SCORE, value)
        return value

    def _train(self, trial: optuna.Trial, task: Task, stage: int) -> float:
        score = self._objectives[task.name].evaluate(trial, step_offset=stage * self._stride)
        if not math.isnan(score):
            trial.set_user_attr(score_key(task), score)
        return score

    def _stop(self, trial: optuna.Trial, because: str, detail: str) -> NoReturn:
        trial.set_user_attr(keys.ENDED_BECAUSE, because)
        raise optuna.TrialPruned(detail)

    def _reference_best(self, trial: optuna.Trial, task: Task, score: float) -> float | None:
        """The reference's best score on ``task`` in the study (this trial's included)."""
        if task.name in self.reference_scores:
            return self.reference_scores[task.name]
        key = score_key(task)
        scores = [
            t.user_attrs[key]
            for t in trial.study.get_trials(deepcopy=False)
            if t.number != trial.number
            and key in t.user_attrs
            and fingerprint_of(t) == self.reference.fingerprint
        ]
        if trial.user_attrs.get(keys.FINGERPRINT) == self.reference.fingerprint:
            scores.append(score)
        if not scores:
            return None
        return max(scores) if task.higher_is_better else min(scores)


def make_multitask_objective(
    tasks: Sequence[Task],
    reference: str | Cell = "gru",
    *,
    reference_scores: Mapping[str, float] | None = None,
    prefilter: Task | None | bool = True,
    prefilter_threshold: float = 0.95,
    first_task_threshold: float | None = 0.9,
    **kwargs: Any,
) -> MultitaskObjective:
    """The paper's multi-task objective: min over ``tasks`` of the ratio to ``reference``.

    Args:
        tasks: trained in order, each with :func:`optuna_rnn.make_objective` and one
            hyperparameter draw per trial; names must be distinct.
        reference: a zoo name or a :class:`Cell`; its best score per task in the same
            study is the denominator (enqueue it first: ``seed_study(study, ["gru"])``).
        reference_scores: fixed reference scores by task name instead (e.g. from an
            earlier study); tasks not named here still use the study.
        prefilter: the memorisation pre-filter task; ``True`` for the paper's
            :class:`~optuna_rnn.tasks.memorization.Memorization`, ``None`` or ``False``
            for none.
        prefilter_threshold: prefilter score under which a trial is pruned (paper: 0.95).
        first_task_threshold: ratio on the first task under which a trial is pruned
            before the other tasks (paper: 0.9); ``None`` trains every task.
        kwargs: passed to :func:`optuna_rnn.make_objective` for every stage (``space``,
            ``hyperparameters``, ``max_steps``...).
    """
    if prefilter is True:
        from optuna_rnn.tasks.memorization import Memorization

        prefilter = Memorization()
    cell = zoo.get(reference) if isinstance(reference, str) else reference
    return MultitaskObjective(
        tasks,
        reference=cell,
        reference_scores=reference_scores,
        prefilter=prefilter or None,
        prefilter_threshold=prefilter_threshold,
        first_task_threshold=first_task_threshold,
        objective_kwargs=kwargs,
    )
