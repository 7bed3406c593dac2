"""Write a study's results for people: CSV, markdown tables and PNG plots; a trained model.

Tables come from :func:`optuna_rnn.leaderboard` and :meth:`optuna.Study.trials_dataframe`;
plots from :mod:`optuna.visualization.matplotlib` where Optuna has one (history, learning
curves) and matplotlib otherwise (best score per cell). Needs the ``[plots]`` extra
(matplotlib) only for the PNGs. :func:`export_model` writes a trial's trained model as a
folder that stands on its own.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import pandas as pd
from optuna.exceptions import ExperimentalWarning

from optuna_rnn import keys

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

    from optuna_rnn.dashboard import ArtifactStoreLike
    from optuna_rnn.models import ModelCard

__all__ = [
    "best_by_cell",
    "cell_labels",
    "export_model",
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


def plot_leaderboard(board: pd.DataFrame, path: Path, *, top: int = 20, score: str = "score") -> Path:
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


_MODEL_README = """\
# {title}

The trained model of trial {trial} of the Optuna study `{study}`, searched with optuna-rnn.

- Network: {layers} layer(s) of the cell below, {width} units wide, {params} parameters.
- Task `{task}`: {input_kind} input of size {input_size},
  {output_kind} output of size {output_size}.
- Validation {score_name}: {score} (batch size {batch_size}).

```
{equations}
```

## Files

- `model.safetensors`: the weights (the best-validation state), with the model card in
  the file's header; data only, no pickled code.
- `model.json`: the model card: the cell, width, depth, hyperparameters, the task's
  vocabulary and shapes, the batch size of the validation score.
- `cell.txt`, `cell.json`, `cell.svg`: the cell as equations, as JSON
  (`optuna_rnn.Cell.from_dict`) and as a diagram.

## Load it

```python
from optuna_rnn.models import load_model_file

model = load_model_file("model.safetensors")  # eval mode, on the CPU
```

`model(batch, state)` takes an `optuna_rnn.tasks.Batch` of time-major inputs `(T, B)`
(token ids) or `(T, B, F)` (features) and returns `(logits, state)`. On plain tensors:
`logits = model.decoder(model.rnn(model.encoder(inputs))[0])`. The layers are
`model.encoder` (embedding or projection), `model.rnn` (an `optuna_rnn.CellRNN`, called
like `torch.nn.LSTM`) and `model.decoder` (a linear layer to the logits).
With `load_model_file(path, backend="reference")`, `torch.export.export(model.rnn, (x,))`
traces the recurrent layers into a program of plain aten operators.
"""


def export_model(
    study: optuna.Study,
    directory: str | Path,
    trial: int | FrozenTrial | None = None,
    *,
    artifact_store: ArtifactStoreLike | None = None,
) -> list[Path]:
    """Write a trial's trained model (the best trial's by default) as a folder of its own.

    ``model.safetensors`` (weights and card), ``model.json`` (the card), ``cell.txt``,
    ``cell.json``, ``cell.svg`` and ``README.md`` (what it is and how to load it); returns
    the paths. ``artifact_store`` as in :func:`optuna_rnn.load_model`.
    """
    from optuna_rnn.cell import zoo
    from optuna_rnn.cell.render import render_svg
    from optuna_rnn.models import download_model, read_model_card

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = download_model(study, out / "model.safetensors", trial, artifact_store=artifact_store)
    card = read_model_card(weights)
    files = {
        "model.json": json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n",
        "cell.txt": f"{card.cell}\n",
        "cell.json": json.dumps(card.cell.to_dict(), indent=2) + "\n",
        "cell.svg": render_svg(card.cell),
        "README.md": _model_readme(card, study.study_name, zoo.name_of(card.cell),
                                   _count_weights(weights)),
    }
    written = [weights]
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    return written


def _count_weights(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())


def _model_readme(card: ModelCard, study_name: str, zoo_name: str | None, params: int) -> str:
    task = card.task
    return _MODEL_README.format(
        title=f"Cell {zoo_name or card.cell.fingerprint[:12]} trained on {task['name']}",
        trial=card.trial,
        study=study_name,
        layers=card.num_layers,
        width=card.hidden_size,
        params=params,
        score_name=task["score_name"],
        score=f"{card.score:.6g}" if card.score is not None else "unknown",
        task=task["name"],
        input_kind=task["input_kind"],
        input_size=task["input_size"],
        output_kind=task["output_kind"],
        output_size=task["output_size"],
        batch_size=card.batch_size,
        equations=card.cell,
    )
