"""CellEvolutionSampler: the paper's architecture search as an Optuna sampler."""

from __future__ import annotations

import functools
import secrets
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler, RandomSampler
from optuna.storages import BaseStorage
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn._optuna_compat import storage_of, study_id_of, trial_id_of
from optuna_rnn.cell import Cell, live
from optuna_rnn.cell.ir import DEFAULT_MAX_NODES
from optuna_rnn.cell.mutate import mutate
from optuna_rnn.samplers._architecture import ArchitectureCodec
from optuna_rnn.samplers._index import StudyIndex, View
from optuna_rnn.samplers._mutation import MutationOperator, MutationProposal
from optuna_rnn.samplers._population import (
    AgingPopulation,
    ElitePopulation,
    Member,
    Population,
)
from optuna_rnn.samplers._records import (
    ENQUEUED,
    FINGERPRINT_KEY,
    MUTATE,
    PLAN_KEY,
    RANDOM,
    REEVALUATE,
    ArchitectureChoice,
    drawn_params,
    fingerprint_of,
    hyperparameter_key,
    read_plan,
    write_plan,
)
from optuna_rnn.samplers._reevaluation import Reevaluation
from optuna_rnn.samplers._selection import TournamentSelection
from optuna_rnn.samplers._storage import claims_since, trials_from

if TYPE_CHECKING:
    from optuna_rnn.spaces import CellSpace

__all__ = ["CellEvolutionSampler"]

_logger = optuna.logging.get_logger(__name__)

T = TypeVar("T")
#: Picks a parent from candidates ranked best first: ``(ranked, rng) -> one of them``.
Selection = Callable[[Sequence[T], np.random.Generator], T]
#: Random cells drawn per proposal of the random start, looking for a viable one.
_RANDOM_DRAWS = 20


class CellEvolutionSampler(BaseSampler):
    """Evolve cell architectures as Jozefowicz et al. (2015) did, inside any Optuna study.

    The sampler owns the architecture parameters of each trial (those of ``space``) and
    hands every other parameter to ``hyperparameter_sampler``. Before each trial it either
    re-evaluates a population member with a hyperparameter draw not yet tried for it
    (probability ``reevaluate_prob``), or mutates one, each chosen by tournament, with
    :func:`optuna_rnn.mutate`, skipping fingerprints already in the study (RUNNING and
    WAITING trials included). An architecture's quality is its best COMPLETE trial in the
    study's direction; multi-objective studies rank by Pareto front.

    Evolution starts from enqueued trials (:func:`optuna_rnn.seed_study` with ``lstm`` and
    ``gru``, as the paper did): until one finishes, they are the parents. A study that
    starts empty starts, as regularised evolution does (Real et al., 2019), from a
    population of distinct random cells of the space: its first ``n_startup_trials``
    trials each train one (and so does any trial that finds no parent yet). When mutants
    keep landing on known fingerprints, the search widens: later attempts apply more
    mutations per child, then draw parents from every architecture of the study, not just
    the population. A trial whose params hold no cell of the space (another space, a
    foreign trial) is left out of evolution, with one warning naming it.

    Every cell it proposes, random or mutant, passes ``viable``: by default
    :func:`optuna_rnn.cell.live`, which refuses cells whose h' never sees the input or
    that remember nothing from step to step (most random cells of ``GraphSpace``, and
    about a quarter of its point mutants, are such cells, and score at chance on any
    task that needs memory).

    All state lives in the storage (trial system attrs ``cell_evolution:*``): threads may
    share one sampler, and processes or machines share nothing but the storage. A trial's
    random draws come from ``(seed, trial.number)``, so one worker with one seed makes the
    same proposals every run.

    The strategies are constructor arguments, as :class:`~optuna.samplers.NSGAIISampler`
    takes its crossover and selection: ``population``, ``selection``, ``mutation`` and
    ``reevaluation``. ``population_size``, ``aging`` and ``tournament_size`` are shorthands
    for the default population and selection; give either the strategy or its shorthand.

    Args:
        space: the architecture space the objective suggests cells from; its parameters
            are the ones this sampler owns. Defaults to ``GraphSpace()``.
        population: which architectures breed, e.g. :class:`ElitePopulation` (default,
            the paper's) or :class:`AgingPopulation`.
        selection: picks the member to mutate or re-evaluate from the population, best
            first: any callable ``(ranked, rng) -> member``; :class:`TournamentSelection`
            by default.
        mutation: any callable ``(cell, rng) -> cell``, to restrict the operators or bring
            your own; by default :func:`optuna_rnn.mutate` with the space's node limit;
            :class:`PointMutation` mutates the space's encoding instead.
            Returning a :class:`~optuna_rnn.cell.mutate.Mutation` records its steps.
        reevaluation: draws a new hyperparameter setting for a known architecture;
            :class:`Reevaluation` by default.
        population_size: architectures kept by the default population (the paper kept 100).
        aging: regularised evolution (Real et al., 2019): the default population is the
            ``population_size`` youngest architectures, not the best.
        tournament_size: members drawn to pick each parent (the best of them wins).
            Defaults to 1 (the paper's uniform choice), or a quarter of the population
            with ``aging=True``, which needs the selection pressure.
        reevaluate_prob: probability of re-evaluating instead of mutating, once the
            population is full (before, every new architecture joins it anyway). The paper
            does not give its ratio.
        hyperparameter_sampler: samples every parameter outside ``space``;
            :class:`~optuna.samplers.RandomSampler` by default, as in the paper.
        n_startup_trials: how many trials of a study that starts empty train random cells
            before evolution starts (with too few, evolution mutates whichever cells came
            first; with too many, it is random search for longer).
        max_attempts: proposals tried per trial, widening as they fail, before its
            architecture is left to ``hyperparameter_sampler`` (a warning says so).
        seed: seed for the sampler's draws and the default ``hyperparameter_sampler``.
        viable: a test every proposed cell must pass (one that fails is drawn again, as
            one the study has seen is); :func:`optuna_rnn.cell.live` by default, ``None``
            for none.
    """

    def __init__(
        self,
        *,
        space: CellSpace | None = None,
        population: Population | None = None,
        selection: Selection | None = None,
        mutation: MutationOperator | None = None,
        reevaluation: Reevaluation | None = None,
        population_size: int | None = None,
        aging: bool = False,
        tournament_size: int | None = None,
        reevaluate_prob: float = 0.2,
        hyperparameter_sampler: BaseSampler | None = None,
        n_startup_trials: int = 5,
        max_attempts: int = 20,
        seed: int | None = None,
        viable: Callable[[Cell], bool] | None = live,
    ) -> None:
        if population is not None and (population_size is not None or aging):
            raise ValueError("give population or population_size/aging, not both")
        if selection is not None and tournament_size is not None:
            raise ValueError("give selection or tournament_size, not both")
        if population_size is not None and population_size < 1:
            raise ValueError(f"population_size must be at least 1, got {population_size}")
        if not 0.0 <= reevaluate_prob <= 1.0:
            raise ValueError(f"reevaluate_prob must lie in [0, 1], got {reevaluate_prob}")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be at least 0, got {n_startup_trials}")
        warnings.warn(
            "CellEvolutionSampler is experimental: its options and the records it keeps in "
            "trial system attrs may change.",
            optuna.exceptions.ExperimentalWarning,
            stacklevel=2,
        )
        if space is None:
            from optuna_rnn.spaces import GraphSpace

            space = GraphSpace()
        if population is None:
            size = 100 if population_size is None else population_size
            population = AgingPopulation(size) if aging else ElitePopulation(size)
        if selection is None:
            if tournament_size is None:
                tournament_size = max(2, population.size // 4) if aging else 1
            selection = TournamentSelection(tournament_size)
        if mutation is None:
            max_nodes = getattr(space, "max_nodes", DEFAULT_MAX_NODES)
            mutation = functools.partial(mutate, max_nodes=max_nodes, return_log=True)
        self._codec = ArchitectureCodec(space)
        self._population = population
        self._selection = selection
        self._mutation = MutationProposal(mutation, encode=space.encode, viable=viable)
        self._viable = viable
        self._reevaluation = reevaluation or Reevaluation()
        self._reevaluate_prob = reevaluate_prob
        self._n_startup_trials = n_startup_trials
        self._max_attempts = max_attempts
        self._hyperparameter_sampler = hyperparameter_sampler or RandomSampler(seed=seed)
        self._seed = secrets.randbits(63) if seed is None else seed
        self._lock = threading.Lock()
        self._indexes: dict[tuple[BaseStorage, int], StudyIndex] = {}
        self._plans: dict[tuple[BaseStorage, int], ArchitectureChoice | None] = {}
        self._cells: dict[tuple[BaseStorage, int], Cell | None] = {}

    def __getstate__(self) -> dict[str, Any]:
        # The study indexes are memos of storages (rebuilt on demand); locks do not pickle.
        state = self.__dict__.copy()
        del state["_lock"], state["_indexes"], state["_plans"], state["_cells"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._indexes = {}
        self._plans = {}
        self._cells = {}

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
        plan = self._plan_of(study, trial)
        if plan is None:
            return {}
        return {
            **self._codec.distributions(self._codec.own(plan.params)),
            **plan.hyperparameters,
        }

    def sample_relative(
        self,
        study: Study,
        trial: FrozenTrial,
        search_space: dict[str, BaseDistribution],
    ) -> dict[str, Any]:
        plan = self._plan_of(study, trial)
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
            self._plans[self._key(study, trial)] = self._plan(study, trial)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # Record what was evaluated: the objective may not have used the plan (fixed
        # params, another space), and random starting cells had no plan at all.
        storage, trial_id = key = self._key(study, trial)
        self._plans.pop(key, None)
        fingerprint = self._evaluated(trial)
        if fingerprint != fingerprint_of(trial):
            storage.set_trial_system_attr(trial_id, FINGERPRINT_KEY, fingerprint)
        self._hyperparameter_sampler.after_trial(study, trial, state, values)

    def _evaluated(self, trial: FrozenTrial) -> str | None:
        """The fingerprint of the cell a finished trial's params describe."""
        plan = read_plan(trial)
        own = self._codec.own(trial.params)
        if plan is not None and own and own == self._codec.own(plan.params):
            return plan.fingerprint
        return self._codec.fingerprint(own)

    # ---------------------------------------------------------------- proposals
    @staticmethod
    def _key(study: Study, trial: FrozenTrial) -> tuple[BaseStorage, int]:
        """The trial's storage and id there: what the sampler's memos are keyed by."""
        storage = storage_of(study)
        return storage, trial_id_of(trial, storage, study_id_of(study))

    def _view(self, study: Study, trial: FrozenTrial, *, refresh: bool) -> View:
        """The study without ``trial``: read from the storage now, or with
        ``refresh=False`` maybe as ``study.ask()`` read it just before (see
        :func:`~optuna_rnn.samplers._storage.trials_from`)."""
        storage, study_id = key = storage_of(study), study_id_of(study)
        with self._lock:
            if key not in self._indexes:
                self._indexes[key] = StudyIndex(
                    self._codec.fingerprint_of,
                    study.directions,
                    trial_id=lambda t: trial_id_of(t, storage, study_id),
                )
            index = self._indexes[key]
        start = index.settled
        trials = trials_from(storage, study_id, start, refresh=refresh)
        return index.view(trials, exclude=trial.number, start=start)

    def _plan_of(self, study: Study, trial: FrozenTrial) -> ArchitectureChoice | None:
        """The trial's plan: as this sampler made it, else as stored.

        Optuna hands samplers a copy of the trial taken before ``before_trial`` wrote
        the plan, so a plan made elsewhere is read back from the storage.
        """
        key = self._key(study, trial)
        if key in self._plans:
            return self._plans[key]
        if PLAN_KEY not in trial.system_attrs:
            trial = key[0].get_trial(key[1])
        return read_plan(trial)

    def _plan(self, study: Study, trial: FrozenTrial) -> ArchitectureChoice | None:
        """Propose, claim and return the trial's plan (``None``: no plan, none stored)."""
        storage, trial_id = self._key(study, trial)
        fixed = trial.system_attrs.get("fixed_params")
        if fixed:
            fingerprint = self._codec.fingerprint(fixed)
            if fingerprint is not None:
                plan = ArchitectureChoice(ENQUEUED, fingerprint)
                write_plan(storage, trial_id, plan)
                return plan
        rng = np.random.default_rng([self._seed, trial.number])
        view = self._view(study, trial, refresh=False)
        population = [
            m for m in self._population.select(view.standings) if self._cell(study, m.best)
        ]
        parents = [m.best for m in population] or self._seeds(study, trial.number)
        # No parent yet, or an unseeded study's start: a new random cell.
        starting = not parents or self._starting(study, trial.number)
        everyone: list[FrozenTrial] | None = None
        for attempt in range(self._max_attempts):
            # Widen as proposals fail: more mutations per child, then every architecture
            # of the study as a parent.
            steps = 1 + 3 * attempt // self._max_attempts
            if 2 * attempt >= self._max_attempts and population and not starting:
                if everyone is None:
                    everyone = self._everyone(study, view)
                parents = everyone
            if starting:
                plan = self._random(rng, view)
            else:
                plan = self._propose(study, trial, rng, view, population, parents, steps)
            if plan is None:
                continue
            write_plan(storage, trial_id, plan)
            # Claim, then read every claim made since the view: of two workers claiming
            # one evaluation at once, the later reader always sees the earlier claim and
            # backs off, so no two claims survive on any storage that orders writes (all
            # of Optuna's). The proposal avoided everything in the view already.
            claims = claims_since(
                storage,
                study_id_of(study),
                after=view.last_trial_id,
                unfinished=view.unfinished_ids,
                exclude=trial_id,
            )
            if not claims.take(plan):
                return plan
            view = self._view(study, trial, refresh=True)
        _logger.warning(
            f"Trial {trial.number}: no new viable architecture in {self._max_attempts} "
            "proposals; its architecture is sampled by the hyperparameter sampler instead."
        )
        write_plan(storage, trial_id, None)
        return None

    def _everyone(self, study: Study, view: View) -> list[FrozenTrial]:
        """The best trial of every architecture of the study that holds a cell, best first."""
        members = view.standings.best(len(view.architectures))
        return [m.best for m in members if self._cell(study, m.best)]

    def _cell(self, study: Study, trial: FrozenTrial) -> Cell | None:
        """The cell ``trial`` holds, or ``None`` (warned once per trial): such a trial is
        left out of evolution."""
        key = self._key(study, trial)
        if key not in self._cells:
            fixed = trial.system_attrs.get("fixed_params", {})
            cell = self._codec.decode({**fixed, **trial.params})
            if cell is None:
                _logger.warning(
                    f"Trial {trial.number} holds no cell of the sampler's space (another "
                    "space, or a trial not made for this search); it is left out of evolution."
                )
            self._cells[key] = cell
        return self._cells[key]

    def _seeds(self, study: Study, exclude: int) -> list[FrozenTrial]:
        """Enqueued trials (any state but FAIL), the parents until one finishes."""
        out = []
        for t in storage_of(study).get_all_trials(study_id_of(study), deepcopy=False):
            if t.number == exclude or t.state == TrialState.FAIL:
                continue
            plan = t.system_attrs.get(PLAN_KEY)
            seeded = (plan is not None and plan["action"] == ENQUEUED) or (
                t.state == TrialState.WAITING and self._codec.fingerprint_of(t) is not None
            )
            if seeded and self._cell(study, t) is not None:
                out.append(t)
        return out

    def _starting(self, study: Study, number: int) -> bool:
        """Whether trial ``number`` belongs to the study's random start: it is among the
        first ``n_startup_trials`` and every trial before it trained a random cell of the
        sampler (a seed, or any trial added by hand, starts evolution at once)."""
        if number >= self._n_startup_trials:
            return False
        return all(
            (t.system_attrs.get(PLAN_KEY) or {}).get("action") == RANDOM
            for t in storage_of(study).get_all_trials(study_id_of(study), deepcopy=False)
            if t.number != number
        )

    def _random(self, rng: np.random.Generator, view: View) -> ArchitectureChoice | None:
        """A random viable cell of the space that the study has not seen, or ``None``."""
        for _ in range(_RANDOM_DRAWS):
            cell, params = self.space.sample(rng)
            if self._viable is None or self._viable(cell):
                break
        else:
            return None
        if cell.fingerprint in view:
            return None
        return ArchitectureChoice(RANDOM, cell.fingerprint, params=params)

    def _propose(
        self,
        study: Study,
        trial: FrozenTrial,
        rng: np.random.Generator,
        view: View,
        population: list[Member],
        parents: list[FrozenTrial],
        steps: int = 1,
    ) -> ArchitectureChoice | None:
        """Re-evaluate a member (probability ``reevaluate_prob``) or mutate a parent
        ``steps`` times; ``None`` when neither finds anything new. Both pick by
        ``selection`` (with the paper's tournament of 1, uniformly)."""
        # Re-evaluating firms up a member's rank against its rivals; until the population
        # is full every new architecture joins it anyway, so a trial is better spent on one.
        full = len(population) >= self._population.size
        if full and rng.random() < self._reevaluate_prob:
            member = self._selection(population, rng)
            plan = self._reevaluate(study, trial, member, view)
            if plan is not None:
                return plan
        parent = self._cell(study, self._selection(parents, rng))
        assert parent is not None, "parents are trials that hold a cell"
        mutant = self._mutation(parent, rng, view, steps=steps)
        if mutant is None:
            return None
        return ArchitectureChoice(
            MUTATE,
            mutant.cell.fingerprint,
            params=mutant.params,
            parent=parent.fingerprint,
            mutations=mutant.log,
        )

    def _reevaluate(
        self, study: Study, trial: FrozenTrial, member: Member, view: View
    ) -> ArchitectureChoice | None:
        arch_params = self._codec.own(member.best.params)
        hyper = {k: d for k, d in member.best.distributions.items() if k not in arch_params}
        tried = {
            hyperparameter_key(drawn_params(t), hyper) for t in view.trials_of(member.fingerprint)
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
        return ArchitectureChoice(
            REEVALUATE,
            member.fingerprint,
            params={**arch_params, **params},
            hyperparameters=hyper,
            parent=member.fingerprint,
        )
