"""CellEvolutionSampler: the paper's architecture search as an Optuna sampler."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn.cell.ir import DEFAULT_MAX_NODES
from optuna_rnn.samplers._architecture import ArchitectureCodec
from optuna_rnn.samplers._mutation import MutationProposal
from optuna_rnn.samplers._population import AgingPopulation, Architecture, ElitePopulation
from optuna_rnn.samplers._records import (
    ENQUEUED,
    FINGERPRINT_KEY,
    MUTATE,
    PLAN_KEY,
    REEVALUATE,
    Plan,
    hyperparameter_key,
    read_plan,
    write_plan,
)
from optuna_rnn.samplers._reevaluation import Reevaluation
from optuna_rnn.samplers._selection import TournamentSelection

if TYPE_CHECKING:
    from optuna_rnn.spaces import CellSpace

__all__ = ["CellEvolutionSampler"]

_logger = optuna.logging.get_logger(__name__)


class CellEvolutionSampler(BaseSampler):
    """Evolve cell architectures as Jozefowicz et al. (2015) did, inside any Optuna study.

    The sampler owns the architecture parameters of each trial (those of ``space``) and
    hands every other parameter to ``hyperparameter_sampler``. Before each trial it either
    re-evaluates a population member with a hyperparameter draw not yet tried for it
    (probability ``reevaluate_prob``), or mutates a member chosen by tournament with
    :func:`optuna_rnn.mutate`, skipping fingerprints already in the study (RUNNING and
    WAITING trials included). An architecture's quality is its best COMPLETE trial in the
    study's direction; multi-objective studies rank by Pareto front.

    Evolution starts from enqueued trials (:func:`optuna_rnn.seed_study` with ``lstm`` and
    ``gru``, as the paper did): until one finishes, they are the parents. A study with no
    architecture at all starts from random cells drawn by ``hyperparameter_sampler``.

    All state lives in the storage (trial system attrs ``cell_evolution:*``): threads may
    share one sampler, and processes or machines share nothing but the storage. A trial's
    random draws come from ``(seed, trial.number)``, so one worker with one seed makes the
    same proposals every run.

    Args:
        space: the architecture space the objective suggests cells from; its parameters
            are the ones this sampler owns. Defaults to ``GraphSpace()``.
        population_size: architectures kept (the paper kept 100).
        reevaluate_prob: probability of re-evaluating instead of mutating. The paper does
            not give its ratio.
        hyperparameter_sampler: samples every parameter outside ``space``;
            :class:`~optuna.samplers.RandomSampler` by default, as in the paper.
        aging: regularised evolution (Real et al., 2019): the population is the
            ``population_size`` youngest architectures, not the best.
        tournament_size: members drawn to pick each parent (the best of them wins).
            Defaults to 1 (the paper's uniform choice), or a quarter of the population
            with ``aging=True``, which needs the selection pressure.
        max_attempts: proposals tried per trial before its architecture is left to
            ``hyperparameter_sampler`` (a warning says so).
        seed: seed for the sampler's draws and the default ``hyperparameter_sampler``.
    """

    def __init__(
        self,
        *,
        space: CellSpace | None = None,
        population_size: int = 100,
        reevaluate_prob: float = 0.2,
        hyperparameter_sampler: BaseSampler | None = None,
        aging: bool = False,
        tournament_size: int | None = None,
        max_attempts: int = 20,
        seed: int | None = None,
    ) -> None:
        if population_size < 1:
            raise ValueError(f"population_size must be at least 1, got {population_size}")
        if not 0.0 <= reevaluate_prob <= 1.0:
            raise ValueError(f"reevaluate_prob must lie in [0, 1], got {reevaluate_prob}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if space is None:
            from optuna_rnn.spaces import GraphSpace

            space = GraphSpace()
        if tournament_size is None:
            tournament_size = max(2, population_size // 4) if aging else 1
        self._codec = ArchitectureCodec(space)
        self._population = (AgingPopulation if aging else ElitePopulation)(population_size)
        self._selection = TournamentSelection(tournament_size)
        self._mutation = MutationProposal(
            max_nodes=getattr(space, "max_nodes", DEFAULT_MAX_NODES), encode=space.encode
        )
        self._reevaluation = Reevaluation()
        self._reevaluate_prob = reevaluate_prob
        self._max_attempts = max_attempts
        self._hyperparameter_sampler = hyperparameter_sampler or RandomSampler(seed=seed)
        self._seed = secrets.randbits(63) if seed is None else seed

    @property
    def space(self) -> CellSpace:
        """The architecture space whose parameters this sampler owns."""
        return self._codec.space

    def reseed_rng(self) -> None:
        self._seed = secrets.randbits(63)
        self._hyperparameter_sampler.reseed_rng()

    # ---------------------------------------------------------------- BaseSampler API
    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        plan = _stored_plan(study, trial)
        return {} if plan is None else dict(plan.distributions)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        plan = _stored_plan(study, trial)
        if plan is None:
            return {}
        return {k: v for k, v in plan.params.items() if k in search_space}

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._hyperparameter_sampler.sample_independent(
            study, trial, param_name, param_distribution
        )

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._hyperparameter_sampler.before_trial(study, trial)
        if PLAN_KEY not in trial.system_attrs:
            self._plan(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # Record what was evaluated: the objective may not have used the plan (fixed
        # params, another space), and random starting cells had no plan at all.
        plan = read_plan(trial)
        own = self._codec.own(trial.params)
        if plan is not None and own and own == self._codec.own(plan.params):
            fingerprint: str | None = plan.fingerprint
        else:
            fingerprint = self._codec.fingerprint(own)
        if trial.system_attrs.get(FINGERPRINT_KEY) != fingerprint:
            study._storage.set_trial_system_attr(trial._trial_id, FINGERPRINT_KEY, fingerprint)
        self._hyperparameter_sampler.after_trial(study, trial, state, values)

    # ---------------------------------------------------------------- proposals
    def _plan(self, study: Study, trial: FrozenTrial) -> None:
        storage = study._storage
        trials = storage.get_all_trials(study._study_id, deepcopy=False)
        fixed = trial.system_attrs.get("fixed_params")
        if fixed:
            fingerprint = self._codec.fingerprint(fixed)
            if fingerprint is not None:
                write_plan(storage, trial._trial_id, Plan(ENQUEUED, fingerprint))
                return
        rng = np.random.default_rng([self._seed, trial.number])
        others = [t for t in trials if t.number != trial.number]
        architectures = self._codec.architectures(others)
        population = self._population(architectures.values(), study.directions)
        parents = [a.best for a in population] or self._seeds(others)
        if not parents:
            return  # nothing to evolve yet: hyperparameter_sampler draws a random cell
        taken = {fp for t in others if (fp := self._codec.fingerprint_of(t)) is not None}
        for _ in range(self._max_attempts):
            plan = self._propose(study, trial, rng, population, parents, others, taken)
            if plan is None:
                continue
            write_plan(storage, trial._trial_id, plan)
            if not self._conflicts(study, trial, plan):
                return
            taken.add(plan.fingerprint)
        _logger.warning(
            f"Trial {trial.number}: no new architecture in {self._max_attempts} proposals; "
            "its architecture is sampled by the hyperparameter sampler instead."
        )
        storage.set_trial_system_attr(trial._trial_id, PLAN_KEY, None)
        storage.set_trial_system_attr(trial._trial_id, FINGERPRINT_KEY, None)

    def _seeds(self, trials: list[FrozenTrial]) -> list[FrozenTrial]:
        """Enqueued trials (any state but FAIL), the parents until one finishes."""
        out = []
        for t in trials:
            if t.state == TrialState.FAIL:
                continue
            plan = read_plan(t)
            if (plan is not None and plan.action == ENQUEUED) or (
                t.state == TrialState.WAITING and self._codec.fingerprint_of(t) is not None
            ):
                out.append(t)
        return out

    def _propose(
        self,
        study: Study,
        trial: FrozenTrial,
        rng: np.random.Generator,
        population: list[Architecture],
        parents: list[FrozenTrial],
        others: list[FrozenTrial],
        taken: set[str],
    ) -> Plan | None:
        if population and rng.random() < self._reevaluate_prob:
            member = population[int(rng.integers(len(population)))]
            plan = self._reevaluate(study, trial, member, others)
            if plan is not None:
                return plan
        parent = self._selection(parents, rng)
        parent_cell = self._codec.cell(parent)
        found = self._mutation(parent_cell, rng, taken)
        if found is None:
            return None
        mutation, params = found
        return Plan(
            MUTATE,
            mutation.cell.fingerprint,
            params=params,
            distributions=self._codec.distributions(params),
            parent=parent_cell.fingerprint,
            mutations=tuple(f"{s.transformation}: {s.detail}" for s in mutation.steps),
        )

    def _reevaluate(
        self, study: Study, trial: FrozenTrial, member: Architecture, others: list[FrozenTrial]
    ) -> Plan | None:
        reference = member.best
        assert reference is not None
        arch_params, arch_distributions = self._codec.split(reference)
        hyper = {k: d for k, d in reference.distributions.items() if k not in arch_params}
        names = tuple(hyper)
        tried = {
            _hyperparameter_key(t, names)
            for t in others
            if self._codec.fingerprint_of(t) == member.fingerprint
        }
        params = self._reevaluation(
            hyper,
            tried,
            lambda name, dist: self._hyperparameter_sampler.sample_independent(
                study, trial, name, dist
            ),
        )
        if params is None:
            return None
        return Plan(
            REEVALUATE,
            member.fingerprint,
            params={**arch_params, **params},
            distributions={**arch_distributions, **hyper},
            hyperparameters=names,
            parent=member.fingerprint,
        )

    def _conflicts(self, study: Study, trial: FrozenTrial, plan: Plan) -> bool:
        """Whether another trial claims the same evaluation (read after our own claim).

        Each worker writes its claim, then reads every claim; of two workers claiming one
        fingerprint at once the later reader always sees the earlier claim and backs off,
        so no two claims survive, on any storage that orders writes (all of Optuna's).
        """
        key = hyperparameter_key(plan.params, plan.hyperparameters)
        for t in study._storage.get_all_trials(study._study_id, deepcopy=False):
            if t.number == trial.number or self._codec.fingerprint_of(t) != plan.fingerprint:
                continue
            if plan.action != REEVALUATE or _hyperparameter_key(t, plan.hyperparameters) == key:
                return True
        return False


def _stored_plan(study: Study, trial: FrozenTrial) -> Plan | None:
    """The trial's plan; re-read, since Optuna hands samplers a copy taken before it existed."""
    if PLAN_KEY not in trial.system_attrs:
        trial = study._storage.get_trial(trial._trial_id)
    return read_plan(trial)


def _hyperparameter_key(trial: FrozenTrial, names: tuple[str, ...]) -> str:
    """The hyperparameter draw a trial made or was planned to make."""
    plan = read_plan(trial)
    planned = plan.params if plan is not None else {}
    return hyperparameter_key({**planned, **trial.params}, names)
