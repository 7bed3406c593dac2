"""What optuna-dashboard shows: per-trial cell attrs, note and diagram; a study leaderboard.

Trial user attrs carry the cell (``equations``, ``fingerprint``, ``zoo_name``) so the
dashboard's trial table can be sorted and filtered by architecture; a markdown note
repeats the equations readably above an SVG diagram of the cell, uploaded as an
artifact (which the dashboard also lists under the trial's artifacts). The study note holds the leaderboard.
Notes need the ``optuna-dashboard`` package (extra ``[dashboard]``); the attrs and the
artifact do not.
"""

from __future__ import annotations

import copy
import os
import tempfile
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import optuna
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.trial import TrialState

from optuna_rnn import keys
from optuna_rnn._optuna_compat import storage_of, study_id_of, trial_id_of
from optuna_rnn.cell import Cell, zoo
from optuna_rnn.export import cell_labels, to_markdown
from optuna_rnn.study import Leaderboard

__all__ = [
    "LeaderboardNote",
    "annotate_trial",
    "as_artifact_store",
    "cell_markdown",
    "leaderboard_markdown",
    "name_objectives",
    "save_leaderboard_note",
]

if TYPE_CHECKING:
    import pandas as pd

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


def name_objectives(study: optuna.Study, names: Sequence[str]) -> None:
    """Set the study's metric names (the dashboard's axis and column titles) to ``names``,
    unless they are set so already."""
    if study.metric_names != list(names):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(list(names))


def cell_markdown(cell: Cell, *, title: str, diagram: str | None = None) -> str:
    """A markdown note: the title, the cell's equations, its diagram and its fingerprint.

    ``diagram`` is the URL of the diagram image, shown full width below the equations.
    """
    image = f"![cell diagram]({diagram})\n\n" if diagram else ""
    return f"## {title}\n\n```\n{cell}\n```\n\n{image}Fingerprint `{cell.fingerprint}`\n"


def annotate_trial(
    trial: optuna.Trial,
    cell: Cell,
    *,
    artifact_store: ArtifactStore | None = None,
    note: bool = True,
) -> None:
    """Record ``cell`` on ``trial``: user attrs, an SVG artifact, a markdown note.

    The diagram is uploaded only when an ``artifact_store`` is given; the note (which
    then shows the diagram full width, as the dashboard's own "insert an image" does)
    needs optuna-dashboard (``note=False`` skips it).
    """
    name = zoo.name_of(cell)
    trial.set_user_attr(keys.EQUATIONS, str(cell))
    trial.set_user_attr(keys.FINGERPRINT, cell.fingerprint)
    trial.set_user_attr(keys.ZOO_NAME, name)
    diagram = None
    if artifact_store is not None:
        from optuna_rnn.cell.render import render_svg

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"cell-{cell.fingerprint[:12]}.svg"
            path.write_text(render_svg(cell), encoding="utf-8")
            artifact_id = upload_artifact(
                artifact_store=artifact_store,
                file_path=str(path),
                study_or_trial=trial,
                mimetype="image/svg+xml",
            )
        study_id = study_id_of(trial.study)
        trial_id = trial_id_of(trial, storage_of(trial.study), study_id)
        diagram = f"/artifacts/{study_id}/{trial_id}/{artifact_id}"
    if note:
        from optuna_dashboard import save_note

        title = f"Trial {trial.number}: {name or 'cell ' + cell.fingerprint[:12]}"
        save_note(trial, cell_markdown(cell, title=title, diagram=diagram))


def leaderboard_markdown(board: pd.DataFrame, n_architectures: int) -> str:
    """The study note's text: the leaderboard rows ``board`` of ``n_architectures``."""
    table = board.assign(cell=cell_labels(board))[list(NOTE_COLUMNS)]
    return (
        f"## Leaderboard ({n_architectures} architectures)\n\n"
        "One row per architecture, best first; scores are validation scores, "
        "`best_params` the best trial's hyperparameters.\n\n" + to_markdown(table)
    )


def save_leaderboard_note(study: optuna.Study, *, top: int = 20) -> None:
    """Write the leaderboard (best ``top`` architectures) as the study's dashboard note.

    Reads every trial; an objective that writes the note after each trial keeps a
    :class:`LeaderboardNote` instead.
    """
    from optuna_dashboard import save_note

    board = Leaderboard(study.directions)
    board.update(study.get_trials(deepcopy=False))
    save_note(study, leaderboard_markdown(board.frame(top), len(board)))


class LeaderboardNote:
    """The study note, rewritten as each trial ends from a :class:`Leaderboard` kept here.

    Each write looks only at the trials created since the last write and those then
    still unfinished (in any process sharing the storage), so the note's cost per trial
    does not grow with the study's size beyond reading its trial list.
    Thread-safe, for ``study.optimize(n_jobs=...)``.
    """

    def __init__(self, *, top: int = 20) -> None:
        self.top = top
        self._lock = threading.Lock()
        self._study: str | None = None
        self._board: Leaderboard | None = None
        self._next = 0  # trials numbered below were looked at...
        self._unfinished: set[int] = set()  # ...and these were not finished then

    def write(self, trial: optuna.Trial, values: Sequence[float]) -> None:
        """Rewrite the note of ``trial``'s study, counting ``trial`` complete with ``values``."""
        from optuna_dashboard import save_note

        study = trial.study
        with self._lock:
            if self._board is None or self._study != study.study_name:
                self._board, self._study = Leaderboard(study.directions), study.study_name
                self._next, self._unfinished = 0, set()
            board = self._board
            trials = study.get_trials(deepcopy=False)  # indexed by trial number
            mine = copy.deepcopy(trials[trial.number])
            mine.state, mine.values = TrialState.COMPLETE, list(values)
            board.add(mine)
            fresh = [trials[n] for n in self._unfinished] + trials[self._next :]
            board.update(fresh)
            self._next = len(trials)
            self._unfinished = {t.number for t in fresh if not t.state.is_finished()}
            text = leaderboard_markdown(board.frame(self.top), len(board))
        save_note(study, text)
