"""Bootstrap findings: known answers on synthetic scores, and real studies read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from _helpers import tiny_cli_args

from optuna_rnn import GatedSpace, zoo
from optuna_rnn.dashboard import annotate_trial
from optuna_rnn.findings import (
    PAPER_BEST,
    PAPER_ORDERINGS,
    Draws,
    Ordering,
    draws_of,
    findings_tables,
    ordering_probabilities,
    plot_draws,
    reference_ratios,
    summarize,
)
from optuna_rnn.objective import Hyperparameters

ABOVE = Ordering("a above b", "a", "above", "b", tasks=("t",))


def _draws(a: np.ndarray, b: np.ndarray, *, maximize: bool = True) -> dict[str, Draws]:
    return {"t": Draws(pd.DataFrame({"a": a, "b": b}), maximize=maximize, paired=True)}


def _probability(draws: dict[str, Draws], ordering: Ordering = ABOVE, seed: int = 0) -> float:
    table = ordering_probabilities(draws, [ordering], resamples=400, seed=seed)
    return float(table["probability"].iloc[0])


def test_well_separated_cells_give_probability_one_and_zero() -> None:
    rng = np.random.default_rng(0)
    a, b = 0.9 + 0.01 * rng.standard_normal(10), 0.5 + 0.01 * rng.standard_normal(10)
    assert _probability(_draws(a, b)) == 1.0
    assert _probability(_draws(b, a)) == 0.0
    # Perplexity: lower is better, so a's lower scores put it above.
    assert _probability(_draws(100 + rng.random(10), 300 + rng.random(10), maximize=False)) == 1.0


def test_identical_cells_hold_half_the_time_on_average() -> None:
    rng = np.random.default_rng(1)
    probabilities = [
        _probability(_draws(*rng.standard_normal((2, 10))), seed=s) for s in range(200)
    ]
    assert np.mean(probabilities) == pytest.approx(0.5, abs=0.05)


def test_median_interval_covers_the_true_median_at_about_the_nominal_rate() -> None:
    rng = np.random.default_rng(2)
    covered = []
    for s in range(200):
        a = 0.6 + 0.1 * rng.standard_normal(10)  # true median 0.6
        row = summarize(_draws(a, a), resamples=400, seed=s).iloc[0]
        covered.append(row["median_low"] <= 0.6 <= row["median_high"])
    assert 0.8 <= np.mean(covered) <= 0.97


def test_best_lower_end_bounds_the_expected_best_of_n() -> None:
    rng = np.random.default_rng(3)
    expected_best = rng.standard_normal((100_000, 10)).max(axis=1).mean()
    below = [
        summarize(_draws(*rng.standard_normal((2, 10))), resamples=300, seed=s).iloc[0]["best_low"]
        <= expected_best
        for s in range(200)
    ]
    assert np.mean(below) >= 0.95


def test_summary_intervals_bracket_the_point_values_in_both_directions() -> None:
    rng = np.random.default_rng(4)
    for maximize in (True, False):
        a, b = rng.random(12) + 1, rng.random(12) + 2
        table = summarize(_draws(a, b, maximize=maximize), resamples=300).set_index("cell")
        assert (table["best_low"] <= table["best"]).all()
        assert (table["best"] <= table["best_high"]).all()
        assert (table["median_low"] <= table["median"]).all()
        assert (table["median"] <= table["median_high"]).all()
        assert table.loc["a", "best"] == (a.max() if maximize else a.min())
        assert table.loc["b", "median"] == pytest.approx(np.median(b))


def test_paired_resampling_follows_a_shared_draw_effect() -> None:
    # Draw quality dominates, a is better than b by a little on every draw: paired, the
    # ordering is sure; resampling each cell on its own hides it under the draw effect.
    rng = np.random.default_rng(5)
    draw = rng.standard_normal(10)
    a, b = draw + 0.05, draw
    paired = _probability(_draws(a, b))
    unpaired = _probability(
        {"t": Draws(pd.DataFrame({"a": a, "b": b}), maximize=True, paired=False)}
    )
    assert paired == 1.0
    assert unpaired < 0.9


def test_the_papers_table_satisfies_every_paper_ordering() -> None:
    draws = {
        task: Draws(pd.DataFrame({c: [v] for c, v in best.items()}), maximize=True, paired=True)
        for task, best in PAPER_BEST.items()
    }
    table = ordering_probabilities(draws, resamples=10)
    assert len(table) == 2 * len(PAPER_ORDERINGS)
    assert table["holds"].all(), table[~table["holds"]]
    assert (table["probability"] == 1.0).all()


def test_close_and_at_or_above_use_relative_tolerances() -> None:
    close = Ordering("close", "a", "close", "b", tolerance=0.05)
    ones = np.ones(3)
    assert close.holds(np.array([0.96, 1.04, 0.94]), ones, maximize=True).tolist() == [
        True,
        True,
        False,
    ]
    at_or_above = Ordering("x", "a", "at_or_above", "b", tolerance=0.01)
    assert at_or_above.holds(np.array([0.995, 0.98]), ones[:2], maximize=True).tolist() == [
        True,
        False,
    ]
    # Perplexity 100 against 104: a is better by 4%.
    assert close.holds(np.array(100.0), np.array(104.0), maximize=False)
    above = Ordering("x", "a", "above", "b")
    assert not above.holds(np.array(104.0), np.array(100.0), maximize=False)
    # A cell whose every draw failed is worst whatever the other scored.
    assert at_or_above.holds(np.array(0.1), np.array(-np.inf), maximize=True)
    assert not at_or_above.holds(np.array(np.inf), np.array(500.0), maximize=False)


def test_bad_orderings_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown relation"):
        Ordering("x", "a", "below", "b")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tolerance"):
        Ordering("x", "a", "close", "b", tolerance=-0.1)
    with pytest.raises(ValueError, match="level"):
        summarize(_draws(np.ones(3), np.ones(3)), level=90)


def _ratios(draws: dict[str, Draws], **kwargs: object) -> pd.DataFrame:
    return reference_ratios(draws, "b", resamples=400, **kwargs).set_index(["task", "cell"])


def test_reference_ratios_are_ratios_of_medians_in_the_papers_orientation() -> None:
    a, b = np.array([0.6, 0.8, 0.9, 0.7, 0.8]), np.array([0.4, 0.4, 0.5, 0.4, 0.3])
    table = _ratios(_draws(a, b))
    assert table.loc[("t", "a"), "ratio"] == pytest.approx(0.8 / 0.4)
    assert table.loc[("t", "b"), "ratio"] == pytest.approx(1.0)
    assert table.loc[("t", "a"), "ratio_low"] > 1  # a is better in every resample
    # Perplexity: the reference's median over the cell's, so a lower one is above 1.
    table = _ratios(_draws(np.full(5, 100.0), np.full(5, 150.0), maximize=False))
    assert table.loc[("t", "a"), "ratio"] == pytest.approx(1.5)


def test_the_min_row_is_the_worst_task_within_each_resample() -> None:
    rng = np.random.default_rng(5)
    good = Draws(
        pd.DataFrame({"a": 0.9 + 0.01 * rng.random(6), "b": np.full(6, 0.6)}),
        maximize=True,
        paired=False,
    )
    bad = Draws(
        pd.DataFrame({"a": np.full(6, 300.0), "b": np.full(6, 200.0)}),
        maximize=False,
        paired=False,
    )
    table = reference_ratios({"x": good, "y": bad}, "b", resamples=400).set_index(["task", "cell"])
    assert table.loc[("min", "a"), "ratio"] == pytest.approx(200 / 300)
    assert table.loc[("min", "a"), "ratio_high"] == pytest.approx(200 / 300)
    assert table.loc[("min", "b"), "ratio"] == pytest.approx(1.0)


def test_a_failed_minority_leaves_the_median_ratio_finite() -> None:
    a = np.array([0.8, 0.8, -np.inf, 0.8, 0.8])
    assert _ratios(_draws(a, np.full(5, 0.4))).loc[("t", "a"), "ratio"] == pytest.approx(2.0)


def test_reference_ratios_need_the_reference() -> None:
    with pytest.raises(ValueError, match="reference 'b'"):
        reference_ratios({"t": Draws(pd.DataFrame({"a": [1.0]}), True, False)}, "b")


# ---------------------------------------------------------------- real studies


def _score(cell: str, draw: int) -> float:
    return {"lstm": 0.5, "gru": 0.7}[cell] + 0.01 * draw


def _objective(trial: optuna.Trial) -> float:
    space = GatedSpace()
    cell = space.suggest(trial)
    annotate_trial(trial, cell, note=False)
    hp = Hyperparameters().suggest(trial)
    trial.set_user_attr("hyperparameters", hp)
    if hp["learning_rate"] == 5.0:
        raise RuntimeError("diverged")  # a FAIL trial: the worst score
    draw = Hyperparameters().learning_rates.index(hp["learning_rate"])
    score = _score(zoo.name_of(cell), draw)
    trial.set_user_attr("test_score", score - 0.1)
    return score


def _paired_study(storage: str, *, draw_attr: bool) -> optuna.Study:
    """Two cells, the same seven settings each (learning rate k is draw k)."""
    study = optuna.create_study(storage=storage, direction="maximize")
    space = GatedSpace()
    for cell in ("lstm", "gru"):
        for k, lr in enumerate(Hyperparameters().learning_rates):
            params = {
                **space.encode(zoo.get(cell)),
                "learning_rate": lr,
                "init_scale": 1.0,
                "max_grad_norm": 5.0,
                "num_layers": 1,
                "param_budget": 10_000,
            }
            study.enqueue_trial(params, user_attrs={"draw": k} if draw_attr else None)
    study.optimize(_objective, n_trials=14, catch=(RuntimeError,))
    return study


@pytest.mark.parametrize("draw_attr", [True, False])
def test_a_paired_study_reads_back_as_its_draws(tmp_path: Path, draw_attr: bool) -> None:
    study = _paired_study(f"sqlite:///{tmp_path}/s.db", draw_attr=draw_attr)
    draws = draws_of(
        optuna.load_study(study_name=study.study_name, storage=f"sqlite:///{tmp_path}/s.db")
    )
    assert draws.paired and draws.maximize
    assert draws.scores.shape == (7, 2)
    for cell in ("lstm", "gru"):
        column = sorted(draws.scores[cell])
        assert column[0] == -np.inf  # the failed draw
        assert column[1:] == pytest.approx(sorted(_score(cell, k) for k in range(6)))
    # Rows pair the same draw: gru - lstm is 0.2 on every draw that scored.
    diff = (draws.scores["gru"] - draws.scores["lstm"]).dropna()
    assert diff.to_numpy() == pytest.approx(np.full(6, 0.2))
    tables = dict(findings_tables({"arithmetic": study}, resamples=200))
    summary = tables["findings"].set_index("cell")
    assert summary.loc["gru", "best"] == pytest.approx(0.75)
    assert summary.loc["gru", "n_failed"] == 1 and summary.loc["gru", "n_draws"] == 7
    gru_lstm = tables["orderings"].set_index("ordering").loc["GRU above LSTM"]
    assert gru_lstm["holds"] and gru_lstm["probability"] == 1.0


def test_draws_can_read_a_user_attr_such_as_the_test_score(tmp_path: Path) -> None:
    study = _paired_study(f"sqlite:///{tmp_path}/s.db", draw_attr=True)
    valid, test = draws_of(study), draws_of(study, score="test_score")
    finite = np.isfinite(valid.scores.to_numpy())
    assert test.scores.to_numpy()[finite] == pytest.approx(valid.scores.to_numpy()[finite] - 0.1)


def test_independent_random_draws_are_read_as_unpaired(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = GatedSpace()
    for cell in ("lstm", "gru", "lstm", "gru", "lstm", "gru"):
        study.enqueue_trial(space.encode(zoo.get(cell)))
    study.optimize(_objective, n_trials=6, catch=(RuntimeError,))
    draws = draws_of(study)
    assert not draws.paired
    assert draws.scores.notna().sum().to_dict() == {"lstm": 3, "gru": 3}


def test_the_plot_marks_draws_best_and_paper(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(6)
    draws = {
        "arithmetic": Draws(
            pd.DataFrame({"lstm": rng.random(10), "gru": rng.random(10)}),
            maximize=True,
            paired=True,
        )
    }
    draws["arithmetic"].scores.loc[3, "lstm"] = -np.inf
    summary = summarize(draws, resamples=100)
    path = plot_draws(
        draws["arithmetic"],
        summary,
        tmp_path / "arithmetic.png",
        task="arithmetic",
        paper=PAPER_BEST["arithmetic"],
    )
    assert path.stat().st_size > 1000


def test_optuna_rnn_export_writes_the_findings(tmp_path: Path) -> None:
    from optuna_rnn.cli import main

    url = f"sqlite:///{tmp_path}/b.db"
    assert (
        main(
            [
                "baselines",
                *tiny_cli_args(max_steps=20, eval_every=10),
                "--cells",
                "lstm,gru",
                "--draws",
                "2",
                "--no-progress",
                "--storage",
                url,
                "--study-name",
                "b",
            ]
        )
        == 0
    )
    out = tmp_path / "export"
    assert main(["export", "--storage", url, "--study-name", "b", "--out", str(out)]) == 0
    findings = pd.read_csv(out / "findings.csv")
    assert findings["task"].tolist() == ["memorization", "memorization"]
    assert sorted(findings["cell"]) == ["gru", "lstm"] and (findings["n_draws"] == 2).all()
    assert (out / "orderings.md").exists()  # no paper ordering is about memorisation
    assert (out / "findings-memorization.png").read_bytes()[:4] == b"\x89PNG"


def test_pruning_replay_finds_the_slow_starter_a_median_pruner_would_stop() -> None:
    from optuna_rnn.findings import pruning_effect

    study = optuna.create_study(direction="minimize")
    # Three quick learners per cell (loss 1.0 then about 0.8), then lstm's slow starter: worst at
    # the first validation, best at the end. The median pruner stops it at step 1.
    curves = [("gru", [1.0, 0.8 - 0.01 * k]) for k in range(3)]
    curves += [("lstm", [1.0, 0.8 - 0.01 * k]) for k in range(3)]
    curves += [("lstm", [3.0, 0.5])]
    for cell, curve in curves:
        trial = study.ask()
        trial.set_user_attr("zoo_name", cell)
        for step, value in enumerate(curve):
            trial.report(value, step)
        study.tell(trial, curve[-1])
    pruner = optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    effect = pruning_effect(study, pruner).set_index("cell")
    assert effect.loc["lstm", "best"] == 0.5
    assert effect.loc["lstm", "best_if_pruned"] == pytest.approx(0.78)
    assert effect.loc["lstm", "changed"] and effect.loc["lstm", "n_pruned"] == 1
    assert not effect.loc["gru", "changed"] and effect.loc["gru", "n_pruned"] == 0
    # Without a pruner nothing changes.
    assert not pruning_effect(study, optuna.pruners.NopPruner())["changed"].any()
