"""The Optuna objective: suggest a cell and hyperparameters, train, report, score.

Importing this module does not import torch (the trial does), so the study helpers can
share :class:`Hyperparameters` without paying for it.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import optuna

from optuna_rnn.dashboard import (
    ArtifactStoreLike,
    annotate_trial,
    as_artifact_store,
    save_leaderboard_note,
)

if TYPE_CHECKING:
    from optuna_rnn.cell import Cell
    from optuna_rnn.spaces import CellSpace
    from optuna_rnn.tasks import Task

__all__ = [
    "ADAM_LEARNING_RATES",
    "PAPER_DROPOUTS",
    "CellObjective",
    "Hyperparameters",
    "make_objective",
]

_logger = optuna.logging.get_logger(__name__)

#: The paper's dropout choices for its dropout runs (its search used none).
PAPER_DROPOUTS = (0.0, 0.1, 0.3, 0.5)
#: Learning rates for ``optimizer="adam"`` (a project convention; the paper used SGD).
ADAM_LEARNING_RATES = (1e-3, 2e-3, 5e-3, 1e-2)


@dataclass(frozen=True)
class Hyperparameters:
    """The choice lists a trial samples its hyperparameters from.

    Defaults are the paper's, except the parameter budgets (the paper went up to 20M)
    and dropout (the paper's search used none; pass :data:`PAPER_DROPOUTS` for its
    dropout runs). Each is one categorical Optuna parameter, named in :attr:`names`.
    """

    init_scales: Sequence[float] = (0.3, 0.7, 1.0, 1.4, 2.0, 2.8)
    learning_rates: Sequence[float] = (0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0)
    max_grad_norms: Sequence[float] = (1.0, 2.5, 5.0, 10.0, 20.0)
    layer_counts: Sequence[int] = (1, 2, 3, 4)
    param_budgets: Sequence[int] = (10_000, 25_000, 50_000)
    dropouts: Sequence[float] = (0.0,)

    #: The Optuna parameter names, in the order of the fields above.
    names: ClassVar[tuple[str, ...]] = (
        "init_scale",
        "learning_rate",
        "max_grad_norm",
        "num_layers",
        "param_budget",
        "dropout",
    )

    def __post_init__(self) -> None:
        for field_name, choices in self._choices().items():
            if len(choices) == 0:
                raise ValueError(f"Hyperparameters.{field_name} has no choices")
        checks = {
            "init_scales": lambda v: v > 0,
            "learning_rates": lambda v: v > 0,
            "max_grad_norms": lambda v: v > 0,
            "layer_counts": lambda v: isinstance(v, int) and v >= 1,
            "param_budgets": lambda v: isinstance(v, int) and v >= 1,
            "dropouts": lambda v: 0 <= v < 1,
        }
        for field_name, ok in checks.items():
            bad = [v for v in getattr(self, field_name) if not ok(v)]
            if bad:
                raise ValueError(f"Hyperparameters.{field_name} has invalid choices {bad}")

    def _choices(self) -> dict[str, tuple]:
        fields = (
            "init_scales",
            "learning_rates",
            "max_grad_norms",
            "layer_counts",
            "param_budgets",
            "dropouts",
        )
        return {f: tuple(getattr(self, f)) for f in fields}

    def choices(self) -> dict[str, tuple]:
        """Each Optuna parameter name (:attr:`names`) with its choice list."""
        return dict(zip(self.names, self._choices().values(), strict=True))

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample the hyperparameters; returns ``{name: value}`` for all of them.

        A choice list of one value is no decision and, as in the search spaces, not an
        Optuna parameter.
        """
        return {
            name: trial.suggest_categorical(name, choices) if len(choices) > 1 else choices[0]
            for name, choices in zip(self.names, self._choices().values(), strict=True)
        }


class CellObjective:
    """The objective: trains the trial's cell on ``task`` and returns its validation score.

    Keyword-only arguments:

    - ``space``: where cells come from (default :class:`~optuna_rnn.GatedSpace`).
    - ``hyperparameters``: the :class:`Hyperparameters` choice lists (the paper's;
      CPU-sized parameter budgets).
    - ``optimizer``: ``"sgd"`` (the paper's, with clipping and learning-rate decay) or
      ``"adam"`` (then the default learning rates are :data:`ADAM_LEARNING_RATES`).
    - ``batch_size`` (20), ``max_steps`` (2000), ``max_seconds`` (``None``): the
      per-trial budgets; ``eval_every`` (100) steps between validations, each reported
      with ``trial.report`` (the validation loss, negated in a maximize study) and
      followed by ``trial.should_prune()``; ``lr_decay`` (2) divides the learning rate
      whenever the validation loss does not improve; ``max_decays`` stops a trial early.
    - ``torch_threads`` (1): torch's intra-op threads, set process-wide at each trial,
      for one single-threaded trial per core; ``None`` leaves the setting alone.
    - ``backend`` (``"auto"``): the :class:`~optuna_rnn.CellRNN` backend; ``device``
      (``"cpu"``): where the model trains, e.g. ``"cuda"``.
    - ``seed`` (0): trial ``n`` seeds its weights and data with ``seed + n``.
    - ``artifact_store``: an Optuna artifact store, or a directory for a
      :class:`~optuna.artifacts.FileSystemArtifactStore`, that receives each trial's
      cell diagram (SVG); ``None``: no diagrams.
    - ``notes``: write dashboard notes (default: when optuna-dashboard is installed).
    - ``catch`` (``(Exception,)``): errors of these types end the trial FAIL with the
      message in user attr ``error`` and the study goes on; others are re-raised.

    A NaN or infinite loss ends the trial pruned, with user attr
    ``ended_because="diverged"``; the test score goes to user attr ``test_score``.
    """

    def __init__(
        self,
        task: Task,
        *,
        space: CellSpace | None = None,
        hyperparameters: Hyperparameters | None = None,
        optimizer: Literal["sgd", "adam"] = "sgd",
        batch_size: int = 20,
        max_steps: int = 2000,
        max_seconds: float | None = None,
        eval_every: int = 100,
        lr_decay: float = 2.0,
        max_decays: int | None = None,
        torch_threads: int | None = 1,
        backend: str = "auto",
        device: str = "cpu",
        seed: int = 0,
        artifact_store: ArtifactStoreLike | None = None,
        notes: bool | None = None,
        catch: tuple[type[Exception], ...] = (Exception,),
    ) -> None:
        from optuna_rnn.train import TrainConfig

        if space is None:
            from optuna_rnn.spaces import GatedSpace

            space = GatedSpace()
        if hyperparameters is None:
            hyperparameters = (
                Hyperparameters(learning_rates=ADAM_LEARNING_RATES)
                if optimizer == "adam"
                else Hyperparameters()
            )
        if notes is None:
            notes = importlib.util.find_spec("optuna_dashboard") is not None
        if torch_threads is not None and torch_threads < 1:
            raise ValueError(f"torch_threads must be at least 1 or None, got {torch_threads!r}")
        self.task = task
        self.space = space
        self.hyperparameters = hyperparameters
        self.torch_threads = torch_threads
        self.backend = backend
        self.device = device
        self.seed = seed
        self.artifact_store = as_artifact_store(artifact_store)
        self.notes = notes
        self.catch = catch
        # Validates the training settings now rather than in every trial.
        self._config = TrainConfig(
            learning_rate=1.0,
            max_grad_norm=1.0,
            optimizer=optimizer,
            batch_size=batch_size,
            max_steps=max_steps,
            max_seconds=max_seconds,
            eval_every=eval_every,
            lr_decay=lr_decay,
            max_decays=max_decays,
        )

    def __call__(self, trial: optuna.Trial) -> float:
        expected = self.task.direction
        if trial.study.direction.name.lower() != expected:
            raise ValueError(
                f"the study must {expected} the {self.task.score_name} of {self.task!r}; "
                f"create it with direction={expected!r}"
            )
        return self.evaluate(trial)

    def evaluate(self, trial: optuna.Trial, *, step_offset: int = 0) -> float:
        """Train and score the trial's cell, in a study of either direction.

        What :meth:`__call__` does without its direction check, for objectives that run
        several tasks in one trial (:func:`optuna_rnn.make_multitask_objective`): losses
        are reported at ``step_offset + step``, negated when the study maximizes.
        """
        try:
            return self._run(trial, step_offset)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            trial.set_user_attr("ended_because", "failed")
            trial.set_user_attr("error", message)
            if not isinstance(err, self.catch):
                raise
            _logger.warning(f"Trial {trial.number} failed: {message}", exc_info=err)
            # Optuna marks a trial that returns NaN as FAIL and goes on with the study.
            return math.nan

    def _run(self, trial: optuna.Trial, step_offset: int = 0) -> float:
        import torch

        from optuna_rnn.train import (
            Diverged,
            build_model,
            hidden_size_for_budget,
            train,
            validate,
        )

        if self.torch_threads is not None:
            torch.set_num_threads(self.torch_threads)
        task = self.task
        cell: Cell = self.space.suggest(trial)
        annotate_trial(trial, cell, artifact_store=self.artifact_store, note=self.notes)
        hp = self.hyperparameters.suggest(trial)
        trial.set_user_attr("hyperparameters", hp)
        width = hidden_size_for_budget(
            cell,
            hp["param_budget"],
            input_size=task.input_size,
            output_size=task.output_size,
            num_layers=hp["num_layers"],
            input_kind=task.input_kind,
        )
        seed = self.seed + trial.number
        torch.manual_seed(seed)
        model = build_model(
            cell,
            task,
            hidden_size=width,
            num_layers=hp["num_layers"],
            dropout=hp["dropout"],
            init_scale=hp["init_scale"],
            backend=self.backend,
        ).to(self.device)
        trial.set_user_attr("width", width)
        trial.set_user_attr("param_count", sum(p.numel() for p in model.parameters()))
        config = dataclasses.replace(
            self._config,
            learning_rate=hp["learning_rate"],
            max_grad_norm=hp["max_grad_norm"],
            seed=seed,
        )
        # Pruners read intermediate values in the study's direction: negate the loss
        # when the study maximizes, so a lower loss is still a better value.
        sign = -1.0 if trial.study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0

        def on_evaluate(step: int, valid: dict[str, float]) -> None:
            trial.report(sign * valid["loss"], step_offset + step)
            if trial.should_prune():
                trial.set_user_attr("ended_because", "pruned")
                raise optuna.TrialPruned(f"pruned at step {step}")

        try:
            result = train(model, task, config, on_evaluate=on_evaluate)
        except Diverged as err:
            trial.set_user_attr("ended_because", "diverged")
            trial.set_user_attr("error", str(err))
            raise optuna.TrialPruned(f"diverged: {err}") from err
        test = validate(model, task, "test", config.batch_size)
        for key, value in {
            "score": result.valid["score"],
            "valid_loss": result.valid["loss"],
            "test_score": test["score"],
            "test_loss": test["loss"],
            "tokens_per_second": result.tokens_per_second,
            "steps": result.steps,
            "best_step": result.best_step,
            "ended_because": result.ended_because,
        }.items():
            trial.set_user_attr(key, value)
        if self.notes:
            save_leaderboard_note(trial.study, trials=_as_completed(trial, result.valid["score"]))
        return result.valid["score"]


def _as_completed(trial: optuna.Trial, value: float) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, ``trial`` (still running) shown complete with ``value``."""
    trials = trial.study.get_trials(deepcopy=False)
    mine = copy.deepcopy(trials[trial.number])
    mine.state, mine.value = optuna.trial.TrialState.COMPLETE, value
    return [mine if t.number == trial.number else t for t in trials]


def make_objective(task: Task, **kwargs: Any) -> CellObjective:
    """An objective that trains the trial's cell on ``task``; see :class:`CellObjective`."""
    return CellObjective(task, **kwargs)
