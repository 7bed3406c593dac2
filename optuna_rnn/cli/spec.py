"""A search's recipe, kept in the study so that any worker, anywhere, rebuilds it.

A :class:`SearchSpec` names the tasks, search space, sampler, pruner and objective
options of a search in plain JSON. ``optuna-rnn search`` stores it as the study's user
attribute ``optuna_rnn:spec``; ``optuna-rnn worker`` reads it back, so joining a study
takes only its storage URL and name. The builders are thin: each maps a name onto the
library's own classes and functions.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import optuna

from optuna_rnn.keys import SEARCH_SPEC as SPEC_ATTR

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SPACES",
    "SPEC_ATTR",
    "TASKS",
    "SearchSpec",
    "parse_assignment",
    "parse_task",
]

#: Command-line task names and the classes of :mod:`optuna_rnn.tasks` they name.
TASKS = {
    "memorization": "Memorization",
    "arithmetic": "Arithmetic",
    "xml": "XML",
    "ptb": "PennTreebank",
    "jsb": "JSBChorales",
}
SPACES = ("gated", "graph")
SAMPLERS = ("evolution", "tpe", "random", "gp")
PRUNERS = ("median", "hyperband", "none")


def parse_assignment(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as JSON where it parses (``3``, ``true``, ``[1, 2]``)."""
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise ValueError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def parse_task(text: str) -> tuple[str, str | None, dict[str, Any]]:
    """Split ``NAME[:PRESET][,KEY=VALUE...]`` (``arithmetic:small,eval_size=200``).

    Returns the name, the preset (or ``None``) and the keyword arguments of the task class.
    """
    head, *assignments = text.split(",")
    name, _, preset = head.partition(":")
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    return name, preset or None, dict(parse_assignment(a) for a in assignments)


@dataclasses.dataclass(frozen=True)
class SearchSpec:
    """What a search runs, JSON-safe.

    Attributes:
        tasks: ``NAME[:PRESET][,KEY=VALUE...]`` per task (:func:`parse_task`); several
            tasks make the paper's min-over-tasks score relative to ``reference``
            (:func:`optuna_rnn.make_multitask_objective`).
        space: ``"gated"`` (:class:`~optuna_rnn.GatedSpace`) or ``"graph"``
            (:class:`~optuna_rnn.GraphSpace` with ``max_nodes``, if given); by default ``"graph"``
            for evolution (mutants leave the gated space) and ``"gated"`` otherwise.
        sampler: ``"evolution"`` (:class:`~optuna_rnn.CellEvolutionSampler`), ``"tpe"``,
            ``"random"`` or ``"gp"``.
        pruner: ``"median"``, ``"hyperband"`` or ``"none"``; by default ``"median"``, and
            ``"none"`` for several objectives, which Optuna cannot prune (there the
            objective option ``prefilter`` stops hopeless cells early).
        n_trials: the study's total trial count, shared by all its workers.
        seed: seeds the sampler (worker ``k`` of a local pool uses ``seed + k``).
        seed_cells: zoo cells enqueued first (:func:`optuna_rnn.seed_study`).
        seed_draws: how often each seed cell is enqueued, each time with its own
            hyperparameter draw (``optuna-rnn baselines``).
        objectives: what the study optimises (:data:`optuna_rnn.objective.OBJECTIVES`);
            several, for one task, make a multi-objective study.
        population_size, aging, tournament_size: the evolution sampler's population and
            parent selection (:class:`~optuna_rnn.CellEvolutionSampler`).
        n_startup_trials: trials of an unseeded evolution study that train random cells
            before evolution starts (the sampler's ``n_startup_trials``).
        any_cell: evolution may propose cells that cannot remember (the sampler's
            ``viable=None``); by default it proposes only :func:`optuna_rnn.cell.live` ones.
        objective: keyword arguments of :func:`optuna_rnn.make_objective`;
            ``hyperparameters`` is a dict of some
            :class:`~optuna_rnn.hyperparameters.Hyperparameters` choice lists, which
            replace those of the optimizer's defaults.
    """

    tasks: tuple[str, ...] = ("memorization",)
    space: str | None = None
    max_nodes: int | None = None
    sampler: str = "evolution"
    pruner: str | None = None
    n_trials: int = 20
    seed: int | None = 0
    seed_cells: tuple[str, ...] = ("lstm", "gru")
    seed_draws: int = 1
    population_size: int = 100
    aging: bool = False
    tournament_size: int | None = None
    n_startup_trials: int = 5
    any_cell: bool = False
    reference: str = "gru"
    objective: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    objectives: tuple[str, ...] = ("score",)

    def __post_init__(self) -> None:
        from optuna_rnn.objective import resolve_objectives

        object.__setattr__(self, "objectives", resolve_objectives(self.objectives))
        several = len(self.objectives) > 1
        if several and self.pruner not in (None, "none"):
            raise ValueError(
                "Optuna cannot prune multi-objective trials: drop the pruner; "
                "the objective option prefilter=true stops hopeless cells early instead"
            )
        if self.pruner is None:
            object.__setattr__(self, "pruner", "none" if several else "median")
        if several and len(self.tasks) > 1:
            raise ValueError("several objectives need a single task")
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "seed_cells", tuple(self.seed_cells))
        object.__setattr__(self, "objective", dict(self.objective))
        if self.space is None:
            object.__setattr__(self, "space", "graph" if self.sampler == "evolution" else "gated")
        if not self.tasks:
            raise ValueError("a search needs at least one task")
        for task in self.tasks:
            parse_task(task)
        for value, choices, what in (
            (self.space, SPACES, "space"),
            (self.sampler, SAMPLERS, "sampler"),
            (self.pruner, PRUNERS, "pruner"),
        ):
            if value not in choices:
                raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
        from optuna_rnn.cell import zoo

        unknown = [name for name in self.seed_cells if name not in zoo.names()]
        if unknown:
            raise ValueError(f"unknown zoo cells {unknown}; choose from {', '.join(zoo.names())}")
        evolution = (
            self.population_size,
            self.aging,
            self.tournament_size,
            self.n_startup_trials,
            self.any_cell,
        ) != (100, False, None, 5, False)
        if evolution and self.sampler != "evolution":
            raise ValueError(
                "population_size, aging, tournament_size, n_startup_trials and any_cell set the "
                f"evolution sampler; this search uses {self.sampler!r}"
            )
        if self.population_size < 1 or (self.tournament_size or 1) < 1:
            raise ValueError("population_size and tournament_size must be at least 1")
        if self.n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be at least 0, got {self.n_startup_trials}")
        seeded = len(self.seed_cells) * self.seed_draws
        if self.n_trials < seeded:
            raise ValueError(
                f"n_trials ({self.n_trials}) is smaller than the {seeded} seeded trials; "
                "raise n_trials or seed fewer cells"
            )

    # ------------------------------------------------------------------ storage form
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> SearchSpec:
        return cls(**json.loads(text))

    @classmethod
    def from_study(cls, study: optuna.Study) -> SearchSpec:
        """The spec that ``optuna-rnn search`` stored in ``study``."""
        text = study.user_attrs.get(SPEC_ATTR)
        if text is None:
            raise ValueError(
                f"study {study.study_name!r} was not created by `optuna-rnn search` "
                "(it has no search spec to join)"
            )
        return cls.from_json(text)

    def same_search(self, other: SearchSpec) -> bool:
        """Whether two specs run the same search, whatever their trial counts."""
        ignored = {"n_trials": 0, "seed": None, "seed_cells": (), "seed_draws": 1}
        return dataclasses.replace(self, **ignored) == dataclasses.replace(other, **ignored)

    # ------------------------------------------------------------------- builders
    @property
    def multitask(self) -> bool:
        return len(self.tasks) > 1

    def build_tasks(self) -> list[Any]:
        """The task objects, built from :mod:`optuna_rnn.tasks` (imports torch)."""
        from optuna_rnn import tasks

        built = []
        for text in self.tasks:
            name, preset, options = parse_task(text)
            if preset is not None:
                options["preset"] = preset
            try:
                built.append(getattr(tasks, TASKS[name])(**options))
            except TypeError as err:  # an option the task class does not take
                raise ValueError(f"task {text!r}: {err}") from None
        return built

    def build_space(self) -> Any:
        from optuna_rnn import GatedSpace, GraphSpace

        if self.space == "gated":
            return GatedSpace()
        return GraphSpace() if self.max_nodes is None else GraphSpace(max_nodes=self.max_nodes)

    def enqueue_seeds(self, study: optuna.Study) -> None:
        """Enqueue the seed cells, each ``seed_draws`` times, as the study's first trials
        (draw k is the same hyperparameter setting for every cell)."""
        from optuna_rnn import seed_study

        seed_study(study, self.seed_cells, space=self.build_space(), draws=self.seed_draws)

    def build_sampler(self, seed: int | None) -> optuna.samplers.BaseSampler:
        if self.sampler == "evolution":
            from optuna_rnn import CellEvolutionSampler

            return CellEvolutionSampler(
                space=self.build_space(),
                population_size=self.population_size,
                aging=self.aging,
                tournament_size=self.tournament_size,
                n_startup_trials=self.n_startup_trials,
                seed=seed,
                **({"viable": None} if self.any_cell else {}),
            )
        if self.sampler == "tpe":
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
        if self.sampler == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)

    def build_pruner(self) -> optuna.pruners.BasePruner:
        if self.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1)
        if self.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner()
        return optuna.pruners.NopPruner()

    def build_objective(self) -> Callable[[optuna.Trial], float]:
        """The objective every worker runs (imports torch)."""
        options = dict(self.objective)
        space = self.build_space()
        tasks = self.build_tasks()
        if self.multitask:
            from optuna_rnn import make_multitask_objective

            return make_multitask_objective(tasks, reference=self.reference, space=space, **options)
        from optuna_rnn import make_objective

        return make_objective(tasks[0], space=space, objectives=self.objectives, **options)

    def validate(self) -> None:
        """Build everything a trial builds, once, and raise ValueError naming what cannot
        be built: task options, objective settings (``backend``, ``device``...), a task
        whose problem space is too small for its splits. A search validates before its
        first trial, so bad settings never cost a run of failed trials."""
        try:
            objective = self.build_objective()
        except (TypeError, OSError) as err:  # an unknown option, an unusable artifact_store
            raise ValueError(str(err)) from None
        options = dict(self.objective)
        backend, device = options.get("backend", "auto"), options.get("device", "cpu")
        from optuna_rnn import CellRNN, zoo

        try:
            CellRNN(zoo.get(self.reference), 2, 2, backend=backend).to(device)
        except ValueError as err:
            raise ValueError(f"--set backend={backend!r}: {err}") from None
        except (RuntimeError, AssertionError, TypeError) as err:  # torch's words for a bad device
            first = (str(err).strip() or type(err).__name__).splitlines()[0]
            raise ValueError(f"--set device={device!r} cannot be used here: {first}") from None
        tasks = getattr(objective, "tasks", None) or [objective.task]
        for task in tasks:
            check = getattr(task, "check_splits", None)
            if check is not None:
                check()

    def direction(self) -> str:
        """``maximize`` for the multi-task ratio score, else the task's own direction."""
        if self.multitask:
            return "maximize"
        from optuna_rnn import tasks

        cls = getattr(tasks, TASKS[parse_task(self.tasks[0])[0]])
        return "maximize" if cls.higher_is_better else "minimize"

    def directions(self) -> list[str]:
        """The study's directions, one per objective (the score's is :meth:`direction`)."""
        from optuna_rnn.objective import OBJECTIVES

        return [OBJECTIVES[name] or self.direction() for name in self.objectives]
