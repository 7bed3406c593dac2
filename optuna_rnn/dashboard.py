"""What optuna-dashboard shows: per-trial cell attrs, note and diagram; a study leaderboard.

Trial user attrs carry the cell (``equations``, ``fingerprint``, ``zoo_name``) so the
dashboard's trial table can be sorted and filtered by architecture; a markdown note
repeats the equations readably, and an SVG diagram of the cell is uploaded as an
artifact, which the dashboard previews inline. The study note holds the leaderboard.
Notes need the ``optuna-dashboard`` package (extra ``[dashboard]``); the attrs and the
artifact do not.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact

from optuna_rnn.cell import Cell, zoo

__all__ = [
    "annotate_trial",
    "as_artifact_store",
    "cell_markdown",
    "save_leaderboard_note",
]

if TYPE_CHECKING:
    from optuna_rnn._optuna_compat import ArtifactStore

#: The leaderboard columns the study note shows.
NOTE_COLUMNS = (
    "cell",
    "best_score",
    "median_score",
    "n_trials",
    "n_pruned",
    "best_trial",
    "best_params",
)

ArtifactStoreLike = Union["ArtifactStore", str, "os.PathLike[str]"]


def as_artifact_store(store: ArtifactStoreLike | None) -> ArtifactStore | None:
    """An artifact store; a path becomes a :class:`FileSystemArtifactStore` there."""
    if store is None or not isinstance(store, (str, os.PathLike)):
        return store
    Path(store).mkdir(parents=True, exist_ok=True)
    return FileSystemArtifactStore(store)


def cell_markdown(cell: Cell, *, title: str) -> str:
    """A markdown note: the title, the cell's equations and its fingerprint."""
    return f"## {title}\n\n```\n{cell}\n```\n\nFingerprint `{cell.fingerprint}`\n"


def annotate_trial(
    trial: optuna.Trial,
    cell: Cell,
    *,
    artifact_store: ArtifactStore | None = None,
    note: bool = True,
) -> None:
    """Record ``cell`` on ``trial``: user attrs, a markdown note, an SVG artifact.

    The note needs optuna-dashboard (``note=False`` skips it); the diagram is uploaded
    only when an ``artifact_store`` is given.
    """
    name = zoo.name_of(cell)
    trial.set_user_attr("equations", str(cell))
    trial.set_user_attr("fingerprint", cell.fingerprint)
    trial.set_user_attr("zoo_name", name)
    if note:
        from optuna_dashboard import save_note

        title = f"Trial {trial.number}: {name or 'cell ' + cell.fingerprint[:12]}"
        save_note(trial, cell_markdown(cell, title=title))
    if artifact_store is not None:
        from optuna_rnn.cell.render import render_svg

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"cell-{cell.fingerprint[:12]}.svg"
            path.write_text(render_svg(cell), encoding="utf-8")
            upload_artifact(
                artifact_store=artifact_store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype="image/svg+xml",
            )


def save_leaderboard_note(
    study: optuna.Study,
    *,
    trials: Sequence[optuna.trial.FrozenTrial] | None = None,
    top: int = 20,
) -> None:
    """Write the leaderboard (best ``top`` architectures) as the study's dashboard note.

    ``trials`` as in :func:`optuna_rnn.leaderboard`: the objective passes the study's
    trials with the one ending now already marked complete.
    """
    from optuna_dashboard import save_note

    from optuna_rnn.export import cell_labels, to_markdown
    from optuna_rnn.study import leaderboard

    board = leaderboard(study, trials=trials)
    table = board.assign(cell=cell_labels(board))[list(NOTE_COLUMNS)].head(top)
    body = (
        f"## Leaderboard ({len(board)} architectures)\n\n"
        "One row per architecture, best first; scores are validation scores, "
        "`best_params` the best trial's hyperparameters.\n\n" + to_markdown(table)
    )
    save_note(study, body)
