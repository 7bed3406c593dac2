"""CellEvolutionSampler in real studies: plans, dedupe, re-evaluation, determinism,
threads, processes on a journal file, HyperbandPruner, multi-objective."""

from __future__ import annotations

import collections
import logging
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from optuna_rnn import zoo
from optuna_rnn.cell import live
from optuna_rnn.cell.mutate import mutate
from optuna_rnn.samplers import (
    AgingPopulation,
    CellEvolutionSampler,
    ElitePopulation,
    MutationProposal,
    PointMutation,
    Reevaluation,
    TournamentSelection,
)
from optuna_rnn.samplers._records import fingerprint_of, read_plan
from optuna_rnn.spaces import GatedSpace, GraphSpace

SPACE = GraphSpace(max_nodes=12)
LR = [0.1, 0.3, 1.0]
SEEDS = ["tanh", "indrnn"]

optuna.logging.set_verbosity(optuna.logging.WARNING)


def objective(trial: optuna.Trial) -> float:
    """Cheap and architecture-dependent: prefers cells of about 8 nodes."""
    cell = SPACE.suggest(trial)
    lr = trial.suggest_categorical("lr", LR)
    return -abs(cell.num_inner_nodes - 8) + lr


def _study(storage=None, **kwargs) -> optuna.Study:
    kwargs.setdefault("seed", 0)
    kwargs.setdefault("population_size", 10)
    study = optuna.create_study(
        storage=storage,
        sampler=CellEvolutionSampler(space=SPACE, **kwargs),
        direction="maximize",
        study_name="evo",
        load_if_exists=True,
    )
    for name in SEEDS:
        study.enqueue_trial(SPACE.encode(zoo.get(name)), skip_if_exists=True)
    return study


def _actions(study: optuna.Study) -> list[tuple]:
    out = []
    for t in study.trials:
        plan = read_plan(t)
        out.append((plan.action if plan else None, fingerprint_of(t), t.params))
    return out


def _assert_no_repeats_but_reevaluations(study: optuna.Study) -> None:
    fresh = collections.Counter()
    for t in study.trials:
        plan = read_plan(t)
        if plan is None or plan.action != "reevaluate":
            fresh[fingerprint_of(t)] += 1
    assert max(fresh.values()) == 1, [fp for fp, n in fresh.items() if n > 1]
    reevaluated = collections.defaultdict(list)
    for t in study.trials:
        reevaluated[fingerprint_of(t)].append(t.params.get("lr"))
    for lrs in reevaluated.values():
        assert len(lrs) == len(set(lrs)), "a hyperparameter draw was repeated"


def test_trials_follow_the_plan_and_never_repeat_an_architecture() -> None:
    study = _study(reevaluate_prob=0.3)
    study.optimize(objective, n_trials=40)
    actions = collections.Counter(a for a, _, _ in _actions(study))
    assert actions["enqueued"] == 2 and actions["mutate"] > 20 and actions["reevaluate"] > 3
    parents = set()
    for t in study.trials:
        plan = read_plan(t)
        assert SPACE.decode(t.params).fingerprint == plan.fingerprint
        assert fingerprint_of(t) == plan.fingerprint
        if plan.action == "mutate":
            assert plan.mutations and plan.parent in parents
        if plan.action == "reevaluate":
            assert plan.parent == plan.fingerprint in parents
        parents.add(plan.fingerprint)
    _assert_no_repeats_but_reevaluations(study)


def test_evolution_climbs_from_the_seeds() -> None:
    study = _study()
    study.optimize(objective, n_trials=40)
    seed_best = max(t.value for t in study.trials[:2])
    assert study.best_value > seed_best


def test_reevaluation_exhausts_the_hyperparameters_then_mutates() -> None:
    study = _study(reevaluate_prob=1.0, population_size=2)  # full: the two seeds
    study.optimize(objective, n_trials=12)
    _assert_no_repeats_but_reevaluations(study)
    tries = collections.Counter(fingerprint_of(t) for t in study.trials)
    assert max(tries.values()) == len(LR)
    assert "mutate" in {a for a, _, _ in _actions(study)}


def test_same_seed_same_proposals() -> None:
    runs = []
    for seed in (3, 3, 4):
        study = _study(seed=seed, reevaluate_prob=0.3)
        study.optimize(objective, n_trials=20)
        runs.append(_actions(study))
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_the_cached_sql_storage_gives_the_same_proposals() -> None:
    """There the sampler proposes from Optuna's cache as study.ask() left it, and checks
    its claims in one query of its own: it must see what the public reads show."""
    runs = []
    for storage in (None, "sqlite:///:memory:"):
        study = _study(storage, seed=3, reevaluate_prob=0.3, population_size=4)
        study.optimize(objective, n_trials=12)
        runs.append(_actions(study))
    assert runs[0] == runs[1]
    assert {"mutate", "reevaluate"} <= {action for action, _, _ in runs[1]}


def test_reseed_rng_changes_proposals() -> None:
    runs = []
    for reseed in (False, True):
        study = _study(seed=3)
        if reseed:
            study.sampler.reseed_rng()
        study.optimize(objective, n_trials=10)
        runs.append(_actions(study))
    assert runs[0] != runs[1]


def test_a_running_trials_architecture_is_not_proposed_again() -> None:
    """Two studies that differ only in the architecture a RUNNING trial holds."""

    def propose(running_cell):
        study = _study()
        study.optimize(objective, n_trials=2)
        params = SPACE.encode(running_cell)
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.RUNNING,
                params=params,
                distributions=SPACE.distributions(params),
            )
        )
        trial = study.ask()  # trial 3 in both studies: the same random draws
        return SPACE.decode(read_plan(study._storage.get_trial(trial._trial_id)).params)

    proposed = propose(zoo.get("tanh"))  # tanh is a seed: the RUNNING trial changes nothing
    assert propose(proposed) != proposed


class _RacedSampler(CellEvolutionSampler):
    """A worker that another one overtakes: between its read of the study and its first
    proposal, ``rival`` (another process: its own storage handle) asks a trial, and this
    worker then proposes exactly what the rival claimed. Only its claim check can save it."""

    def __init__(self, rival: optuna.Study, **kwargs) -> None:
        super().__init__(space=SPACE, population_size=10, **kwargs)
        self.rival: optuna.Study | None = rival
        self.rival_plan = None

    def _propose(self, study, trial, rng, view, population, parents, steps=1):
        if self.rival is None:
            return super()._propose(study, trial, rng, view, population, parents, steps)
        rival, self.rival = self.rival, None
        asked = rival.ask()
        self.rival_plan = read_plan(rival._storage.get_trial(asked._trial_id))
        return self.rival_plan


@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_claim_made_after_the_read_makes_the_proposal_back_off(tmp_path: Path, kind) -> None:
    if kind == "sqlite":
        url = f"sqlite:///{tmp_path / 'study.db'}"
        handles = [optuna.storages.get_storage(url) for _ in range(2)]
    else:
        path = str(tmp_path / "journal.log")
        handles = [JournalStorage(JournalFileBackend(path)) for _ in range(2)]
    seeded = optuna.create_study(storage=handles[0], study_name="evo", direction="maximize")
    for name in SEEDS:  # finished seeds, one write each
        params = SPACE.encode(zoo.get(name))
        seeded.add_trial(
            optuna.trial.create_trial(
                value=0.0, params=params, distributions=SPACE.distributions(params)
            )
        )
    rival = optuna.load_study(
        study_name="evo",
        storage=handles[1],
        sampler=CellEvolutionSampler(space=SPACE, population_size=10, seed=1),
    )
    raced = optuna.load_study(
        study_name="evo", storage=handles[0], sampler=_RacedSampler(rival, seed=0)
    )
    trial = raced.ask()
    plan = read_plan(raced._storage.get_trial(trial._trial_id))
    rival_plan = raced.sampler.rival_plan
    assert rival_plan is not None and rival_plan.action == "mutate"
    assert plan is not None and plan.fingerprint != rival_plan.fingerprint


def test_two_threads_share_one_sampler() -> None:
    study = _study(seed=None, reevaluate_prob=0.3)
    study.optimize(objective, n_trials=40, n_jobs=2)
    assert len(study.trials) == 40
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    _assert_no_repeats_but_reevaluations(study)


WORKER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    import test_samplers_evolution as m
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend
    study = m._study(JournalStorage(JournalFileBackend({path!r})), seed=None,
                     reevaluate_prob=0.3)
    study.optimize(m.objective, n_trials=10)
    """
)


def test_four_processes_on_one_journal_file(tmp_path: Path) -> None:
    path = str(tmp_path / "journal.log")
    _study(JournalStorage(JournalFileBackend(path)))
    script = WORKER.format(tests=str(Path(__file__).parent), path=path)
    procs = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    study = optuna.load_study(study_name="evo", storage=JournalStorage(JournalFileBackend(path)))
    assert len(study.trials) == 40
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    _assert_no_repeats_but_reevaluations(study)


def test_hyperband_pruner_hands_the_sampler_a_bracket_view() -> None:
    def reporting(trial: optuna.Trial) -> float:
        value = objective(trial)
        for step in range(9):
            trial.report(value + step, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study = _study(reevaluate_prob=0.3)
    study.pruner = optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9)
    study.optimize(reporting, n_trials=30)
    states = collections.Counter(t.state for t in study.trials)
    assert states[TrialState.PRUNED] > 0 and states[TrialState.COMPLETE] > 2
    # The dedupe holds across brackets: the sampler reads the whole study.
    _assert_no_repeats_but_reevaluations(study)


def test_multi_objective_study() -> None:
    def two(trial: optuna.Trial) -> tuple[float, float]:
        value = objective(trial)
        return value, float(SPACE.decode(trial.params).num_inner_nodes)

    study = optuna.create_study(
        directions=["maximize", "minimize"],
        sampler=CellEvolutionSampler(space=SPACE, population_size=5, seed=0),
    )
    for name in SEEDS:
        study.enqueue_trial(SPACE.encode(zoo.get(name)))
    study.optimize(two, n_trials=20)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    _assert_no_repeats_but_reevaluations(study)


def test_without_seeds_the_first_cells_are_distinct_random_cells_then_evolve() -> None:
    study = optuna.create_study(
        sampler=CellEvolutionSampler(space=SPACE, n_startup_trials=4, seed=1),
        direction="maximize",
    )
    study.optimize(objective, n_trials=15)
    plans = [read_plan(t) for t in study.trials]
    assert [p.action for p in plans[:4]] == ["random"] * 4
    assert len({p.fingerprint for p in plans[:4]}) == 4
    for t, p in zip(study.trials, plans):
        assert fingerprint_of(t) == SPACE.decode(t.params).fingerprint == p.fingerprint
    assert all(p.action in ("mutate", "reevaluate") for p in plans[4:])


def test_a_seeded_study_evolves_from_the_first_trial_after_the_seeds() -> None:
    study = _study(n_startup_trials=10)
    study.optimize(objective, n_trials=8)
    actions = [a for a, _, _ in _actions(study)]
    assert actions[:2] == ["enqueued"] * 2
    assert set(actions[2:]) <= {"mutate", "reevaluate"}


def test_importing_the_sampler_does_not_import_torch() -> None:
    code = (
        "import sys, optuna_rnn\n"
        "optuna_rnn.CellEvolutionSampler(seed=0)\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"population_size": 0}, "population_size"),
        ({"reevaluate_prob": 1.5}, "reevaluate_prob"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"n_startup_trials": -1}, "n_startup_trials"),
        ({"tournament_size": 0}, "tournament size"),
        ({"population_size": 5, "population": ElitePopulation(5)}, "not both"),
        ({"tournament_size": 2, "selection": TournamentSelection(2)}, "not both"),
    ],
)
def test_bad_arguments_are_named(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        CellEvolutionSampler(space=SPACE, **kwargs)


def test_the_sampler_pickles_and_keeps_proposing() -> None:
    study = _study(seed=3)
    study.optimize(objective, n_trials=6)
    study.sampler = pickle.loads(pickle.dumps(study.sampler))
    study.optimize(objective, n_trials=6)
    _assert_no_repeats_but_reevaluations(study)
    again = _study(seed=3)
    again.optimize(objective, n_trials=12)
    assert _actions(again) == _actions(study)  # the memos it dropped changed nothing


def test_an_unseeded_study_of_the_open_space_never_fails() -> None:
    space = GraphSpace(max_nodes=24)
    study = optuna.create_study(
        sampler=CellEvolutionSampler(space=space, population_size=5, seed=2), direction="maximize"
    )
    study.optimize(lambda t: -abs(space.suggest(t).num_inner_nodes - 8), n_trials=25)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert len({space.decode(t.params) for t in study.trials}) == 25


def test_a_small_space_widens_instead_of_falling_back_to_random_cells(caplog) -> None:
    space = GraphSpace(max_nodes=4)
    study = optuna.create_study(
        sampler=CellEvolutionSampler(
            space=space, population_size=3, reevaluate_prob=0.0, n_startup_trials=1, seed=0
        )
    )
    with caplog.at_level(logging.WARNING):
        study.optimize(lambda t: abs(space.suggest(t).num_inner_nodes - 3), n_trials=60)
    assert caplog.messages == []
    assert all(read_plan(t).action == "mutate" for t in study.trials[1:])
    assert len({space.decode(t.params) for t in study.trials}) == 60


def test_a_trial_of_another_space_is_left_out_with_one_warning(caplog) -> None:
    gated = GatedSpace()
    study = _study()
    params = gated.encode(zoo.get("gru"))  # "cell." params that GraphSpace cannot read
    foreign = optuna.trial.create_trial(
        value=100.0,
        params=params,
        distributions=gated.distributions(params),
        user_attrs={"fingerprint": zoo.get("gru").fingerprint},
    )
    study.add_trial(foreign)
    with caplog.at_level(logging.WARNING):
        study.optimize(objective, n_trials=12)
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("Trial 2 holds no cell of the sampler's space")
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    parents = {read_plan(t).parent for t in study.trials if read_plan(t) is not None}
    assert zoo.get("gru").fingerprint not in parents


def test_mutation_takes_any_callable_from_cell_and_rng_to_cell() -> None:
    calls = []

    def only_paper_mutations(cell, rng):
        calls.append(cell.fingerprint)
        return mutate(cell, rng, max_nodes=SPACE.max_nodes)  # a bare Cell: no log

    study = _study(mutation=only_paper_mutations, reevaluate_prob=0.0)
    study.optimize(objective, n_trials=10)
    plans = [read_plan(t) for t in study.trials[len(SEEDS) :]]
    assert calls and all(p.action == "mutate" and p.mutations == () for p in plans)
    _assert_no_repeats_but_reevaluations(study)


def test_strategies_are_constructor_arguments() -> None:
    sampler = CellEvolutionSampler(
        space=SPACE,
        population=AgingPopulation(4),
        selection=TournamentSelection(2),
        reevaluation=Reevaluation(max_attempts=3),
        seed=0,
    )
    study = optuna.create_study(sampler=sampler, direction="maximize")
    for name in SEEDS:
        study.enqueue_trial(SPACE.encode(zoo.get(name)))
    study.optimize(objective, n_trials=15)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    _assert_no_repeats_but_reevaluations(study)


def test_reevaluation_picks_its_member_by_the_selection() -> None:
    def best(ranked, rng):
        return ranked[0]

    study = _study(selection=best, reevaluate_prob=1.0, population_size=2)
    study.optimize(objective, n_trials=10)
    plans = [read_plan(t) for t in study.trials]
    reevaluated = [i for i, p in enumerate(plans) if p.action == "reevaluate"]
    assert reevaluated
    for i in reevaluated:
        done = [t for t in study.trials[:i] if t.state == TrialState.COMPLETE]
        top = max(done, key=lambda t: (t.value, -t.number))
        assert plans[i].parent == fingerprint_of(top)


def test_point_mutation_makes_neighbours_in_the_space() -> None:
    mutation = PointMutation(SPACE)
    rng = np.random.default_rng(0)
    changed = 0
    for k in range(50):
        parent, params = SPACE.sample(np.random.default_rng(k))
        # Every kept decision is kept: the whole point comes back, whatever the draws.
        assert SPACE.sample(rng, kept=params) == (parent, params)
        child = mutation(parent, rng)
        assert SPACE.decode(SPACE.encode(child)) == child
        changed += child.fingerprint != parent.fingerprint
    assert changed > 35


def test_point_mutation_as_the_samplers_mutation() -> None:
    study = _study(mutation=PointMutation(SPACE), reevaluate_prob=0.0)
    study.optimize(objective, n_trials=15)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {read_plan(t).action for t in study.trials[len(SEEDS) :]} == {"mutate"}
    _assert_no_repeats_but_reevaluations(study)


def test_no_reevaluation_until_the_population_is_full() -> None:
    study = _study(reevaluate_prob=1.0, population_size=6)
    study.optimize(objective, n_trials=14)
    actions = [a for a, _, _ in _actions(study)]
    # Two seeds, four mutants fill the population of six; then re-evaluations.
    assert actions[:6] == ["enqueued"] * 2 + ["mutate"] * 4
    assert "reevaluate" in actions[6:]


def test_an_unseeded_study_proposes_only_cells_that_can_remember() -> None:
    """Most random cells of the open space, and many of its mutants, never carry the input
    from step to step (:func:`optuna_rnn.cell.live`); the sampler proposes none of them,
    at the random start or after, unless told to (``viable=None``)."""
    space = GraphSpace(max_nodes=24)

    def run(**kwargs) -> list[bool]:
        sampler = CellEvolutionSampler(
            space=space, population_size=4, tournament_size=4, seed=5, **kwargs
        )
        study = optuna.create_study(sampler=sampler, direction="maximize")
        study.optimize(lambda t: -abs(space.suggest(t).num_inner_nodes - 8), n_trials=30)
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
        assert {read_plan(t).action for t in study.trials} >= {"random", "mutate"}
        return [live(space.decode(t.params)) for t in study.trials]

    assert all(run())
    assert not all(run(viable=None))


def test_viable_takes_any_test_of_a_cell() -> None:
    small = lambda cell: cell.num_inner_nodes <= 6  # noqa: E731
    space = GraphSpace(max_nodes=24)
    study = optuna.create_study(
        sampler=CellEvolutionSampler(space=space, population_size=4, seed=0, viable=small)
    )
    study.optimize(lambda t: space.suggest(t).num_inner_nodes, n_trials=20)
    assert all(small(space.decode(t.params)) for t in study.trials)
    assert len({space.decode(t.params) for t in study.trials}) == 20


def test_mutation_proposal_draws_again_until_the_mutant_is_viable() -> None:
    proposal = MutationProposal(PointMutation(SPACE), encode=SPACE.encode, viable=live)
    rng = np.random.default_rng(0)
    parent = SPACE.decode(SPACE.encode(zoo.get("tanh")))
    mutants = [proposal(parent, rng, set()) for _ in range(100)]
    assert all(m is not None and live(m.cell) for m in mutants)
    unfiltered = MutationProposal(PointMutation(SPACE), encode=SPACE.encode)
    assert not all(live(unfiltered(parent, rng, set()).cell) for _ in range(100))
