"""Write a study's results for people: CSV, markdown tables and PNG plots.

Tables come from :func:`optuna_rnn.leaderboard` and :meth:`optuna.Study.trials_dataframe`;
plots from :mod:`optuna.visualization.matplotlib` where Optuna has one (history, learning
curves) and matplotlib otherwise (best score per cell). Needs the ``[plots]`` extra
(matplotlib) only for the PNGs. A trial's trained model is exported by
:func:`optuna_rnn.models.export_model`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import optuna
import pandas as pd
from optuna.exceptions import ExperimentalWarning

from optuna_rnn import keys

__all__ = [
    "best_by_cell",
    "cell_labels",
    "export_study",
    "format_leaderboard",
    "plot_leaderboard",
    "to_markdown",
    "write_table",
]

#: Leaderboard columns worth reading in a terminal or a markdown table.
SUMMARY_COLUMNS = ("cell", "best_score", "median_score", "n_trials", "n_pruned", keys.PARAM_COUNT)


def cell_labels(board: pd.DataFrame) -> pd.Series:
    """A short name per leaderboard row: the zoo name, else the fingerprint's first 10."""
    names = board[keys.ZOO_NAME]
    return names.where(names.notna(), board[keys.FINGERPRINT].str[:10])


def _summary(board: pd.DataFrame, top: int | None) -> pd.DataFrame:
    summary = board.assign(cell=cell_labels(board))[list(SUMMARY_COLUMNS)]
    return summary if top is None else summary.head(top)


def _cell_text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", "<br>")


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub markdown table of ``frame`` (floats to 4 significant digits)."""
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell_text(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def format_leaderboard(board: pd.DataFrame, *, top: int | None = 10) -> str:
    """The leaderboard as terminal text, best first, with the winner's equations below."""
    if board.empty:
        return "(no finished trials yet)"
    summary = _summary(board, top)
    text = summary.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
    if math.isnan(board["best_score"].iloc[0]):
        return f"{text}\n\n(no trial completed)"
    return f"{text}\n\nbest cell ({summary['cell'].iloc[0]}):\n{board[keys.EQUATIONS].iloc[0]}"


def best_by_cell(studies: Mapping[str, optuna.Study]) -> pd.DataFrame:
    """One row per cell, one column per study: the cell's best score there.

    Rows follow the first study's leaderboard; a cell missing from a study gets NaN.
    This is the shape of the paper's Table 2 (studies keyed by task).
    """
    from optuna_rnn import leaderboard

    columns = {}
    for name, study in studies.items():
        board = leaderboard(study)
        columns[name] = pd.Series(board["best_score"].to_numpy(), index=cell_labels(board))
    order = list(dict.fromkeys(label for column in columns.values() for label in column.index))
    return pd.DataFrame(columns).reindex(order).rename_axis("cell").reset_index()


def write_table(frame: pd.DataFrame, directory: Path, stem: str) -> list[Path]:
    """``stem.csv`` (every column) and ``stem.md`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    csv, md = directory / f"{stem}.csv", directory / f"{stem}.md"
    frame.to_csv(csv, index=False)
    md.write_text(to_markdown(frame))
    return [csv, md]


def _figure_of(axes: object) -> object:
    """The figure behind what an Optuna matplotlib plot returns (Axes or array of them)."""
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.get_figure()


def plot_leaderboard(
    board: pd.DataFrame, path: Path, *, top: int = 20, score: str = "score"
) -> Path:
    """A bar per cell of its best score, with its median as a dot, best at the top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = board.head(top).iloc[::-1]
    labels = cell_labels(shown)
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(shown) + 1.2))
    ax.barh(labels, shown["best_score"], color="tab:blue", label="best")
    ax.plot(shown["median_score"], labels, "o", color="tab:orange", label="median")
    ax.set_xlabel(score)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _save_optuna_plot(plot: object, study: optuna.Study, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fig = _figure_of(plot(study))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def export_study(
    study: optuna.Study,
    directory: str | Path,
    *,
    plots: bool = True,
    top: int = 20,
    extra_tables: Sequence[tuple[str, pd.DataFrame]] = (),
) -> list[Path]:
    """Write ``trials.csv``, ``leaderboard.{csv,md}`` and PNG plots; returns the paths.

    Plots: ``leaderboard.png`` (best and median score per cell; a multi-objective
    study's first objective), ``history.png`` (Optuna's optimisation history; for several
    objectives ``pareto_front.png``, Optuna's Pareto-front plot) and ``learning_curves.png`` (reported validation
    values per trial, where trials reported any). ``extra_tables`` adds ``(stem, frame)``
    tables, as the study scripts do for their comparisons.
    """
    from optuna_rnn import leaderboard

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    trials = study.trials_dataframe()
    trials_csv = out / "trials.csv"
    trials.to_csv(trials_csv, index=False)
    board = leaderboard(study)
    written = [trials_csv, *write_table(board, out, "leaderboard")]
    for stem, frame in extra_tables:
        written += write_table(frame, out, stem)
    if plots and not board.empty:
        from optuna.visualization import matplotlib as optuna_plots

        written.append(plot_leaderboard(board, out / "leaderboard.png", top=top))
        if len(study.directions) > 1:
            written.append(
                _save_optuna_plot(optuna_plots.plot_pareto_front, study, out / "pareto_front.png")
            )
        else:
            written.append(
                _save_optuna_plot(
                    optuna_plots.plot_optimization_history, study, out / "history.png"
                )
            )
        if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            written.append(
                _save_optuna_plot(
                    optuna_plots.plot_intermediate_values, study, out / "learning_curves.png"
                )
            )
    return written
