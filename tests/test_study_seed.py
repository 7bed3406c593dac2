"""seed_study on real studies: paired hyperparameter draws, the study's own space, and
refusals that name what is wrong."""

from __future__ import annotations

import optuna
import pytest

from optuna_rnn import CellEvolutionSampler, GatedSpace, GraphSpace, seed_study, zoo
from optuna_rnn.cli.spec import SPEC_ATTR, SearchSpec
from optuna_rnn.objective import Hyperparameters

HP = Hyperparameters.names


def _waiting(study: optuna.Study) -> list[dict]:
    return [t.system_attrs["fixed_params"] for t in study.get_trials()]


def _setting(params: dict) -> dict:
    return {k: v for k, v in params.items() if k in HP}


def test_draws_give_every_cell_the_same_distinct_settings() -> None:
    study = optuna.create_study()
    seed_study(study, ["lstm", "gru", "tanh"], draws=4, hyperparameters={"num_layers": 1})
    enqueued = _waiting(study)
    assert len(enqueued) == 12
    space = GatedSpace()
    cells = [space.decode(p) for p in enqueued]
    by_cell: dict[str, list[dict]] = {}
    for cell, params in zip(cells, enqueued):
        by_cell.setdefault(cell.fingerprint, []).append(_setting(params))
    lstm, gru, tanh = (by_cell[zoo.get(n).fingerprint] for n in ("lstm", "gru", "tanh"))
    assert lstm == gru == tanh  # draw k is one setting for every cell
    assert len({tuple(sorted(s.items())) for s in lstm}) == 4
    assert all(s["num_layers"] == 1 and len(s) == 5 for s in lstm)  # dropout has one choice
    seed_study(study, ["lstm", "gru", "tanh"], draws=4, hyperparameters={"num_layers": 1})
    assert len(study.get_trials()) == 12  # the same seed, the same draws: nothing new
    other = optuna.create_study()
    seed_study(other, ["lstm"], draws=4, hyperparameters={"num_layers": 1}, seed=1)
    assert [_setting(p) for p in _waiting(other)] != lstm


def test_a_cell_given_twice_is_refused_not_silently_dropped() -> None:
    with pytest.raises(ValueError, match="given twice; .* draws=N"):
        seed_study(optuna.create_study(), ["lstm"] * 4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"draws": 0}, "draws must be a positive int"),
        ({"hyperparameters": {"learning_rate": 0.123}}, r"learning_rate=0.123 is not one of"),
        ({"hyperparameters": {"lr": 1.0}}, "unknown hyperparameters"),
        (
            {
                "draws": 4,
                "choices": Hyperparameters(
                    learning_rates=(0.1, 1.0),
                    init_scales=(1.0,),
                    max_grad_norms=(5.0,),
                    layer_counts=(1,),
                    param_budgets=(1000,),
                ),
            },
            "draws=4 exceeds the 2 distinct settings",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        seed_study(optuna.create_study(), ["gru"], **kwargs)


def test_the_space_comes_from_the_evolution_sampler_and_asks_never_fail() -> None:
    space = GraphSpace(max_nodes=30)
    study = optuna.create_study(
        sampler=CellEvolutionSampler(space=space, population_size=4, seed=0), direction="maximize"
    )
    seed_study(study, ["lstm", "gru"])
    assert [space.decode(p) for p in _waiting(study)] == [zoo.get("lstm"), zoo.get("gru")]
    study.optimize(lambda t: -space.suggest(t).num_inner_nodes, n_trials=5)
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)


def test_the_space_comes_from_the_stored_search() -> None:
    study = optuna.create_study()
    spec = SearchSpec(space="graph", max_nodes=31, sampler="random")
    study.set_user_attr(SPEC_ATTR, spec.to_json())
    seed_study(study, ["gru"])
    assert GraphSpace(max_nodes=31).decode(_waiting(study)[0]) == zoo.get("gru")


def test_a_study_of_another_space_is_refused() -> None:
    study = optuna.create_study()
    seed_study(study, ["gru"])  # GatedSpace params
    with pytest.raises(
        ValueError, match="trial 0 .* holds params of another space than GraphSpace"
    ):
        seed_study(study, ["lstm"], space=GraphSpace())
    assert len(study.get_trials()) == 1
