"""Population, selection and re-evaluation strategies of the evolution sampler."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from optuna.distributions import CategoricalDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn.samplers import (
    AgingPopulation,
    Architecture,
    ElitePopulation,
    Reevaluation,
    TournamentSelection,
)
from optuna_rnn.samplers._index import StudyIndex
from optuna_rnn.samplers._population import Standings, rank_architectures
from optuna_rnn.samplers._records import (
    MUTATE,
    REEVALUATE,
    ArchitectureChoice,
    Claims,
    hyperparameter_key,
)

MAX, MIN = StudyDirection.MAXIMIZE, StudyDirection.MINIMIZE


def _trial_id(trial: optuna.trial.FrozenTrial) -> int:
    return trial._trial_id


def _trials(rows: list[tuple[str, object]]) -> list[FrozenTrial]:
    """One COMPLETE trial per (fingerprint, value or values), numbered in order."""
    out = []
    for number, (fp, value) in enumerate(rows):
        values = list(value) if isinstance(value, tuple) else [value]
        t = optuna.trial.create_trial(values=values, user_attrs={"fingerprint": fp})
        t.number = number
        out.append(t)
    return out


def _archs(rows: list[tuple[str, object]]) -> list[Architecture]:
    return _grouped(_trials(rows))


def _grouped(trials: list[FrozenTrial]) -> list[Architecture]:
    groups: dict[str, Architecture] = {}
    for t in trials:
        fp = t.user_attrs["fingerprint"]
        groups[fp] = groups.get(fp, Architecture(fp)).with_trial(t)
    return list(groups.values())


ROWS = [("a", 0.5), ("b", 0.9), ("a", 0.95), ("c", 0.1), ("d", 0.7), ("b", 0.2)]


@pytest.mark.parametrize(
    "direction,expected",
    [(MAX, ["a", "b", "d", "c"]), (MIN, ["c", "b", "a", "d"])],
)
def test_elite_ranks_by_best_trial_in_the_direction(direction, expected) -> None:
    population = ElitePopulation(10)(_archs(ROWS), [direction])
    assert [a.fingerprint for a in population] == expected
    best = {a.fingerprint: a.best.value for a in population}
    assert best["a"] == (0.95 if direction == MAX else 0.5)


def test_elite_keeps_only_the_best() -> None:
    population = ElitePopulation(2)(_archs(ROWS), [MAX])
    assert [a.fingerprint for a in population] == ["a", "b"]


def test_aging_keeps_the_youngest_ranked_best_first() -> None:
    # Births: a=0, b=1, c=3, d=4. The two youngest are c and d, whatever their scores.
    population = AgingPopulation(2)(_archs(ROWS), [MAX])
    assert [a.fingerprint for a in population] == ["d", "c"]


def test_multi_objective_ranks_by_pareto_front() -> None:
    # Maximize both. Front 0: a (1, 3), b (3, 1), d's second trial (2, 2.5); front 1: c.
    rows = [
        ("a", (1.0, 3.0)),
        ("b", (3.0, 1.0)),
        ("c", (1.5, 1.5)),
        ("d", (0.0, 0.0)),
        ("d", (2.0, 2.5)),
    ]
    population = ElitePopulation(10)(_archs(rows), [MAX, MAX])
    ranks = {a.fingerprint: a.rank for a in population}
    assert ranks["a"] == ranks["b"] == ranks["d"] == 0
    assert ranks["c"] == 1
    assert population[-1].fingerprint == "c"
    assert {a.fingerprint: a.best.values for a in population}["d"] == [2.0, 2.5]


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from("abcdef"), st.tuples(*[st.sampled_from([0.0, 0.5, 1.0])] * 2)),
        max_size=30,
    ),
    directions=st.sampled_from([[MIN], [MAX], [MIN, MAX]]),
    arrival=st.randoms(use_true_random=False),
    limit=st.integers(1, 8),
)
def test_standings_kept_as_trials_finish_equal_a_ranking_from_scratch(
    rows, directions, arrival, limit
) -> None:
    """In any finishing order, with ties: the same orders as ranking all architectures."""
    rows = [(fp, values[: len(directions)]) for fp, values in rows]
    trials = _trials(rows)
    archs = _grouped(trials)
    arrival.shuffle(trials)
    standings = Standings(directions)
    for t in trials:
        standings.add(t.user_attrs["fingerprint"], t)
    assert standings == Standings.of(archs, directions)
    assert standings.best(limit) == rank_architectures(archs, directions, limit)
    assert standings.youngest(limit) == sorted(archs, key=lambda a: a.birth)[-limit:]


def test_claims_take_an_architecture_or_one_hyperparameter_draw() -> None:
    claims = Claims.of(
        [
            ArchitectureChoice(MUTATE, "a", params={"cell": 1}).to_json(),
            ArchitectureChoice(REEVALUATE, "b", params={"cell": 2, "lr": 0.1}).to_json(),
            None,  # a withdrawn plan claims nothing
        ]
    )
    lr = {"lr": CategoricalDistribution([0.1, 0.3])}
    choice = ArchitectureChoice
    assert claims.take(choice(MUTATE, "a")) and claims.take(choice(MUTATE, "b"))
    assert not claims.take(choice(MUTATE, "c"))
    assert claims.take(choice(REEVALUATE, "b", params={"lr": 0.1}, hyperparameters=lr))
    assert not claims.take(choice(REEVALUATE, "b", params={"lr": 0.3}, hyperparameters=lr))
    assert not claims.take(choice(REEVALUATE, "a", params={"lr": 0.1}, hyperparameters=lr))


def test_tournament_of_everyone_picks_the_best() -> None:
    rng = np.random.default_rng(0)
    assert {TournamentSelection(5)(list("abcde"), rng) for _ in range(50)} == {"a"}


def test_tournament_of_one_is_uniform() -> None:
    rng = np.random.default_rng(0)
    picks = [TournamentSelection(1)(list("abcd"), rng) for _ in range(4000)]
    counts = np.array([picks.count(c) for c in "abcd"])
    assert np.all(np.abs(counts - 1000) < 150)


def test_tournament_size_is_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        TournamentSelection(0)


def test_reevaluation_draws_only_untried_hyperparameters() -> None:
    dists = {"lr": CategoricalDistribution([0.1, 0.2, 0.3])}
    rng = np.random.default_rng(0)
    draw = lambda name, dist: dist.choices[rng.integers(len(dist.choices))]
    tried: set[str] = set()
    seen = []
    for _ in range(3):
        params = Reevaluation(max_attempts=200)(dists, tried, draw)
        assert params is not None
        tried.add(hyperparameter_key(params, ("lr",)))
        seen.append(params["lr"])
    assert sorted(seen) == [0.1, 0.2, 0.3]
    assert Reevaluation(max_attempts=200)(dists, tried, draw) is None
    assert Reevaluation()({}, set(), draw) is None


def _study_trials(study: optuna.Study) -> list[FrozenTrial]:
    return study._storage.get_all_trials(study._study_id, deepcopy=False)


def _fingerprint(t: FrozenTrial) -> str | None:
    return t.user_attrs.get("fp")


def test_index_groups_trials_and_leaves_the_asker_out() -> None:
    study = optuna.create_study()
    for fp, state in [
        ("a", TrialState.COMPLETE),
        ("a", TrialState.PRUNED),
        ("b", TrialState.FAIL),
        (None, TrialState.COMPLETE),
    ]:
        study.add_trial(
            optuna.trial.create_trial(
                state=state,
                value=1.0 if state == TrialState.COMPLETE else None,
                user_attrs={} if fp is None else {"fp": fp},
            )
        )
    running = study.ask()
    running.set_user_attr("fp", "c")
    asker = study.ask()
    asker.set_user_attr("fp", "d")
    view = StudyIndex(_fingerprint, [MIN], trial_id=_trial_id).view(
        _study_trials(study), exclude=asker.number
    )
    assert set(view.architectures) == {"a"} and len(view.architectures["a"].trials) == 1
    assert {fp: len(ts) for fp, ts in view.finished.items()} == {"a": 2, "b": 1}
    assert set(view.unfinished) == {"c"}
    assert "b" in view and "c" in view and "d" not in view
    assert len(view.trials_of("a")) == 2


def test_incremental_index_equals_a_fresh_one() -> None:
    """The index is a memo: indexing a growing study step by step changes nothing."""
    rng = np.random.default_rng(0)
    study = optuna.create_study()
    index = StudyIndex(_fingerprint, [MIN], trial_id=_trial_id)
    pending: list[optuna.Trial] = []
    for step in range(60):
        trial = study.ask()
        trial.set_user_attr("fp", "abcde"[rng.integers(5)])
        pending.append(trial)
        if rng.random() < 0.6:
            done = pending.pop(int(rng.integers(len(pending))))
            state = [TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL][rng.integers(3)]
            study.tell(
                done,
                float(rng.random()) if state == TrialState.COMPLETE else None,
                state=state,
            )
        incremental = index.view(_study_trials(study), exclude=-1)
        fresh = StudyIndex(_fingerprint, [MIN], trial_id=_trial_id).view(
            _study_trials(study), exclude=-1
        )
        assert incremental == fresh, step
