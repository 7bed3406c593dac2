"""A trial's trained model as an Optuna artifact: kept at the trial's end, loaded anywhere.

The artifact is one safetensors file (``model-<task>.safetensors``): the tensors of the
model's best-validation ``state_dict``, and in the file's header a JSON :class:`ModelCard`
with all that rebuilding the model takes (the cell, the width and depth, the
hyperparameters, the task's vocabulary and shapes, the validation score). Weights are
data only: nothing is ever unpickled.

Optuna keeps no record of where a study's artifacts live, so the objective writes the
folder of a file-system store into the study's user attr ``optuna_rnn:artifact_store``;
:func:`load_model` reads it there unless given a store.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import optuna
from optuna.artifacts import (
    ArtifactMeta,
    download_artifact,
    get_all_artifact_meta,
    upload_artifact,
)
from optuna.trial import FrozenTrial, TrialState

from optuna_rnn import keys
from optuna_rnn._optuna_compat import storage_of
from optuna_rnn.cell import Cell
from optuna_rnn.dashboard import ArtifactStoreLike, as_artifact_store

if TYPE_CHECKING:
    from optuna_rnn._optuna_compat import ArtifactStore
    from optuna_rnn.tasks import Task
    from optuna_rnn.train import SequenceModel

__all__ = [
    "ARTIFACT_STORE_ATTR",
    "ModelCard",
    "artifact_location",
    "best_cell",
    "download_model",
    "export_model",
    "load_model",
    "load_model_file",
    "model_card",
    "read_model_card",
    "record_artifact_store",
    "save_model_file",
    "upload_model",
]

#: The study user attr naming the folder of the study's file-system artifact store.
ARTIFACT_STORE_ATTR = keys.ARTIFACT_STORE
#: The safetensors header key of the card, and the card's format.
CARD_KEY = "optuna_rnn.model_card"
CARD_FORMAT = "optuna-rnn-model/1"
MODEL_SUFFIX = ".safetensors"
_T = TypeVar("_T")
_TASK_FIELDS = (
    "name",
    "input_kind",
    "input_size",
    "output_kind",
    "output_size",
    "score_name",
    "higher_is_better",
    "vocab",
)


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a saved model is and how to rebuild it.

    Attributes:
        cell: the trial's cell.
        hidden_size: the width every layer has.
        num_layers: stacked cell layers.
        dropout: the training dropout (off in eval mode).
        hyperparameters: the trial's hyperparameters (``init_scale``, ``learning_rate``...).
        task: the task's ``name``, ``input_kind``, ``input_size``, ``output_kind``,
            ``output_size``, ``score_name``, ``higher_is_better`` and ``vocab`` (the
            symbol of each token id, or ``None``).
        batch_size: the batch size the validation score was measured with (a streamed
            task's score depends on it).
        score: the validation score of these weights, or ``None``.
        trial: the trial number, or ``None``.
    """

    cell: Cell
    hidden_size: int
    num_layers: int
    dropout: float
    hyperparameters: dict[str, Any]
    task: dict[str, Any]
    batch_size: int
    score: float | None = None
    trial: int | None = None

    @classmethod
    def of(
        cls,
        model: SequenceModel,
        task: Task,
        *,
        hyperparameters: dict[str, Any],
        batch_size: int,
        score: float | None = None,
        trial: int | None = None,
    ) -> ModelCard:
        """The card of ``model``, trained on ``task``."""
        info = {f: getattr(task, f, None) for f in _TASK_FIELDS}
        info["vocab"] = None if info["vocab"] is None else list(info["vocab"])
        return cls(
            cell=model.rnn.cell,
            hidden_size=model.rnn.hidden_size,
            num_layers=model.rnn.num_layers,
            dropout=model.rnn.dropout,
            hyperparameters=dict(hyperparameters),
            task=info,
            batch_size=batch_size,
            score=score,
            trial=trial,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form (the cell as :meth:`Cell.to_dict` and as equations)."""
        out = dataclasses.asdict(self)
        out["cell"] = self.cell.to_dict()
        out["equations"] = str(self.cell)
        out["format"] = CARD_FORMAT
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Read :meth:`to_dict`'s form back; a clear ValueError for anything else."""
        if not isinstance(data, dict) or data.get("format") != CARD_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ValueError(
                f"not an optuna-rnn model card (format {found!r}, expected {CARD_FORMAT!r})"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        missing = names - {"score", "trial"} - data.keys()
        if missing:
            raise ValueError(f"the model card lacks {sorted(missing)}")
        fields = {k: v for k, v in data.items() if k in names}
        fields["cell"] = Cell.from_dict(data["cell"])
        return cls(**fields)

    def build(self, *, backend: str = "auto") -> SequenceModel:
        """A freshly initialised model of this card's architecture."""
        from optuna_rnn.train import SequenceModel

        return SequenceModel(
            self.cell,
            input_kind=self.task["input_kind"],
            input_size=self.task["input_size"],
            output_size=self.task["output_size"],
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            dropout=self.dropout,
            backend=backend,
        )


# ------------------------------------------------------------------------ files
def save_model_file(path: str | os.PathLike[str], model: SequenceModel, card: ModelCard) -> Path:
    """Write ``model``'s weights and ``card`` to one safetensors file at ``path``."""
    from safetensors.torch import save_file

    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {CARD_KEY: json.dumps(card.to_dict(), sort_keys=True)}
    save_file(state, str(path), metadata=metadata)
    return Path(path)


def read_model_card(path: str | os.PathLike[str]) -> ModelCard:
    """The card of a model file, without reading its weights."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    if CARD_KEY not in metadata:
        raise ValueError(f"{path} is a safetensors file without an optuna-rnn model card")
    return ModelCard.from_dict(json.loads(metadata[CARD_KEY]))


def load_model_file(
    path: str | os.PathLike[str], *, backend: str = "auto", device: str = "cpu"
) -> SequenceModel:
    """The model a file of :func:`save_model_file` holds, in eval mode on ``device``."""
    from safetensors.torch import load_file

    card = read_model_card(path)
    model = card.build(backend=backend)
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


# ------------------------------------------------------------------- artifacts
def artifact_location(store: ArtifactStoreLike | None) -> str | None:
    """The absolute folder of a file-system store given as a path, else ``None``."""
    if isinstance(store, (str, os.PathLike)):
        return str(Path(store).resolve())
    return None


def record_artifact_store(study: optuna.Study, location: str) -> None:
    """Name ``location`` as the study's artifact folder (where :func:`load_model` looks)."""
    if study.user_attrs.get(ARTIFACT_STORE_ATTR) != location:
        study.set_user_attr(ARTIFACT_STORE_ATTR, location)


def upload_model(
    trial: optuna.Trial, model: SequenceModel, card: ModelCard, artifact_store: ArtifactStore
) -> str:
    """Upload ``model`` with ``card`` as an artifact of ``trial``; returns its id."""
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model_file(Path(tmp) / f"model-{card.task['name']}{MODEL_SUFFIX}", model, card)
        return upload_artifact(
            artifact_store=artifact_store,
            file_path=str(path),
            study_or_trial=trial,
            mimetype="application/octet-stream",
        )


def _store_of(study: optuna.Study, artifact_store: ArtifactStoreLike | None) -> ArtifactStore:
    if artifact_store is None:
        artifact_store = study.user_attrs.get(ARTIFACT_STORE_ATTR)
        if artifact_store is None:
            raise ValueError(
                f"study {study.study_name!r} names no artifact store; pass artifact_store= "
                "(the store or folder its trials uploaded to)"
            )
        if not Path(artifact_store).is_dir():
            raise ValueError(
                f"study {study.study_name!r} keeps its artifacts in {artifact_store}, which "
                "is not a folder here; pass artifact_store= where they are now"
            )
    store = as_artifact_store(artifact_store)
    assert store is not None
    return store


def _trial_of(study: optuna.Study, trial: int | FrozenTrial | None) -> FrozenTrial:
    if trial is None:
        if len(study.directions) > 1:
            raise ValueError(
                "a multi-objective study has no single best trial: pass trial= one of "
                "study.best_trials"
            )
        return study.best_trial
    number = trial.number if isinstance(trial, FrozenTrial) else trial
    found = [t for t in study.get_trials(deepcopy=False) if t.number == number]
    if not found:
        raise ValueError(f"study {study.study_name!r} has no trial {number}")
    return found[0]


def _model_meta(study: optuna.Study, trial: FrozenTrial) -> ArtifactMeta:
    metas = [
        m
        for m in get_all_artifact_meta(trial, storage=storage_of(study))
        if m.filename.startswith("model-") and m.filename.endswith(MODEL_SUFFIX)
    ]
    if len(metas) != 1:
        state = trial.state.name
        why = "" if trial.state == TrialState.COMPLETE else f" (it ended {state})"
        raise ValueError(
            f"trial {trial.number} of study {study.study_name!r} has "
            f"{'no' if not metas else len(metas)} model artifact{'s' if metas else ''}{why}; "
            "trials keep their model when the objective has an artifact_store"
        )
    return metas[0]


def download_model(
    study: optuna.Study,
    path: str | os.PathLike[str],
    trial: int | FrozenTrial | None = None,
    *,
    artifact_store: ArtifactStoreLike | None = None,
) -> Path:
    """Copy a trial's model file (the best trial's by default) to ``path``."""
    store = _store_of(study, artifact_store)
    meta = _model_meta(study, _trial_of(study, trial))
    download_artifact(
        artifact_store=store,
        file_path=str(path),
        artifact_id=meta.artifact_id,
    )
    return Path(path)


def _fetch(
    study: optuna.Study,
    trial: int | FrozenTrial | None,
    artifact_store: ArtifactStoreLike | None,
    read: Callable[[Path], _T],
) -> _T:
    """``read`` applied to a downloaded copy of the trial's model file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = download_model(
            study, Path(tmp) / f"model{MODEL_SUFFIX}", trial, artifact_store=artifact_store
        )
        return read(path)


def load_model(
    study: optuna.Study,
    trial: int | FrozenTrial | None = None,
    *,
    artifact_store: ArtifactStoreLike | None = None,
    backend: str = "auto",
    device: str = "cpu",
) -> SequenceModel:
    """The trained model of ``trial`` (the best trial by default), in eval mode.

    ``trial`` is a trial number or a :class:`~optuna.trial.FrozenTrial`. The weights come
    from the study's artifact store: ``artifact_store`` (a store or a folder), else the
    folder the study records. Call it as ``model(batch, state)`` or score it with
    ``optuna_rnn.train.validate(model, task, "valid", model_card(study).batch_size)``.
    """
    return _fetch(
        study,
        trial,
        artifact_store,
        lambda path: load_model_file(path, backend=backend, device=device),
    )


def model_card(
    study: optuna.Study,
    trial: int | FrozenTrial | None = None,
    *,
    artifact_store: ArtifactStoreLike | None = None,
) -> ModelCard:
    """The :class:`ModelCard` of ``trial``'s model (the best trial's by default)."""
    return _fetch(study, trial, artifact_store, read_model_card)


def best_cell(study: optuna.Study) -> Cell:
    """The cell of the study's best trial (read from its ``equations`` user attr)."""
    trial = _trial_of(study, None)
    equations = trial.user_attrs.get(keys.EQUATIONS)
    if equations is None:
        raise ValueError(f"trial {trial.number} of study {study.study_name!r} records no cell")
    return Cell.parse(equations)


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

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = download_model(study, out / "model.safetensors", trial, artifact_store=artifact_store)
    card = read_model_card(weights)
    files = {
        "model.json": json.dumps(card.to_dict(), indent=2, sort_keys=True) + "\n",
        "cell.txt": f"{card.cell}\n",
        "cell.json": json.dumps(card.cell.to_dict(), indent=2) + "\n",
        "cell.svg": render_svg(card.cell),
        "README.md": _model_readme(
            card, study.study_name, zoo.name_of(card.cell), _count_weights(weights)
        ),
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
