"""The Optuna objective: suggest a cell and hyperparameters, train, report, score.

Importing this module does not import torch (the trial does).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import optuna

from optuna_rnn import keys
from optuna_rnn.dashboard import (
    ArtifactStoreLike,
    LeaderboardNote,
    annotate_trial,
    as_artifact_store,
    name_objectives,
)
from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.models import ModelCard, artifact_location, record_artifact_store, upload_model

if TYPE_CHECKING:
    from optuna_rnn.cell import Cell
    from optuna_rnn.spaces import CellSpace
    from optuna_rnn.tasks import Task
    from optuna_rnn.train.trainer import OnEvaluate

__all__ = ["OBJECTIVES", "CellObjective", "make_objective", "resolve_objectives", "run_prefilter"]

_logger = optuna.logging.get_logger(__name__)

#: What a trial can return, each in its direction: the validation score (the task's),
#: the parameter count (minimize) and the measured training tokens per second (maximize).
OBJECTIVES = {
    keys.SCORE: None,
    keys.PARAM_COUNT: "minimize",
    keys.TOKENS_PER_SECOND: "maximize",
}
#: Short names accepted for :data:`OBJECTIVES` (as in ``--objectives score,params``).
OBJECTIVE_ALIASES = {"params": keys.PARAM_COUNT}


class CellObjective:
    """The objective: trains the trial's cell on ``task`` and returns its validation score.

    Keyword-only arguments:

    - ``objectives`` (``("score",)``): what the trial returns, from :data:`OBJECTIVES`
      (``"params"`` names ``"param_count"``). Several make a multi-objective objective
      that returns a tuple: create its study with ``directions=objective.directions``;
      the study's metric names are set to ``objectives`` for the dashboard, which then
      shows the Pareto front. Optuna cannot prune multi-objective trials, so there no
      loss is reported; the ``prefilter`` stage is what stops hopeless cells early.
    - ``prefilter``: a task trained first (``True``: the paper's
      :class:`~optuna_rnn.tasks.memorization.Memorization`); a cell scoring under
      ``prefilter_threshold`` (0.95) there ends pruned with ``ended_because="prefilter"``
      before it trains on ``task``. ``None`` (default): no pre-filter.

    - ``space``: where cells come from (default :class:`~optuna_rnn.GatedSpace`).
    - ``hyperparameters``: the :class:`~optuna_rnn.hyperparameters.Hyperparameters`
      choice lists, or a mapping of some of its fields (``{"param_budgets": [500_000]}``)
      that replace those lists of the optimizer's defaults
      (:meth:`~optuna_rnn.hyperparameters.Hyperparameters.for_optimizer`); default: the
      paper's lists with CPU-sized parameter budgets.
    - ``optimizer``: ``"sgd"`` (the paper's, with clipping and learning-rate decay) or
      ``"adam"`` (then the default learning rates are
      :data:`~optuna_rnn.hyperparameters.ADAM_LEARNING_RATES`).
    - ``batch_size`` (20), ``max_steps`` (2000), ``max_seconds`` (``None``): the
      per-trial budgets; ``eval_every`` (100) steps between validations, each reported
      with ``trial.report`` (the validation loss, negated in a maximize study) and
      followed by ``trial.should_prune()``; ``lr_decay`` (2) divides the learning rate
      whenever the validation loss does not improve; ``max_decays`` stops a trial early;
      ``valid_batches`` (``None``: all) validates on the split's first batches during
      the trial and scores the kept weights on the whole split (see ``TrainConfig``).
    - ``torch_threads`` (1): torch's intra-op threads, set process-wide at each trial,
      for one single-threaded trial per core; ``None`` leaves the setting alone.
    - ``backend`` (``"auto"``): the :class:`~optuna_rnn.CellRNN` backend; ``device``
      (``"cpu"``): where the model trains, e.g. ``"cuda"``.
    - ``seed`` (0): trial ``n`` seeds its weights and data with ``seed + n``.
    - ``artifact_store``: an Optuna artifact store, or a directory for a
      :class:`~optuna.artifacts.FileSystemArtifactStore`, that receives each trial's
      cell diagram (SVG) and, for a trial that completes, its trained model
      (:mod:`optuna_rnn.models`; a folder is recorded in the study for
      :func:`~optuna_rnn.load_model`); ``None``: neither.
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
        hyperparameters: Hyperparameters | Mapping[str, Sequence[Any]] | None = None,
        optimizer: Literal["sgd", "adam"] = "sgd",
        batch_size: int = 20,
        max_steps: int = 2000,
        max_seconds: float | None = None,
        eval_every: int = 100,
        valid_batches: int | None = None,
        lr_decay: float = 2.0,
        max_decays: int | None = None,
        torch_threads: int | None = 1,
        backend: str = "auto",
        device: str = "cpu",
        seed: int = 0,
        artifact_store: ArtifactStoreLike | None = None,
        notes: bool | None = None,
        catch: tuple[type[Exception], ...] = (Exception,),
        objectives: Sequence[str] = (keys.SCORE,),
        prefilter: Task | bool | None = None,
        prefilter_threshold: float = 0.95,
    ) -> None:
        from optuna_rnn.train import TrainConfig

        if space is None:
            from optuna_rnn.spaces import GatedSpace

            space = GatedSpace()
        if not isinstance(hyperparameters, Hyperparameters):
            hyperparameters = Hyperparameters.for_optimizer(optimizer, hyperparameters)
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
        self._artifact_folder = artifact_location(artifact_store)
        self.notes = notes
        self._note = LeaderboardNote() if notes else None
        self.catch = catch
        self.objectives = resolve_objectives(objectives)
        # Validates the training settings now rather than in every trial.
        self._config = TrainConfig(
            learning_rate=1.0,
            max_grad_norm=1.0,
            optimizer=optimizer,
            batch_size=batch_size,
            max_steps=max_steps,
            max_seconds=max_seconds,
            eval_every=eval_every,
            valid_batches=valid_batches,
            lr_decay=lr_decay,
            max_decays=max_decays,
        )
        if prefilter is True:
            from optuna_rnn.tasks.memorization import Memorization

            prefilter = Memorization()
        if prefilter and not prefilter.higher_is_better:
            raise ValueError(f"the prefilter {prefilter!r} must score higher-is-better")
        self.prefilter_threshold = prefilter_threshold
        self._prefilter = (
            CellObjective(
                prefilter,
                space=space,
                hyperparameters=hyperparameters,
                optimizer=optimizer,
                batch_size=batch_size,
                max_steps=max_steps,
                max_seconds=max_seconds,
                eval_every=eval_every,
                lr_decay=lr_decay,
                max_decays=max_decays,
                torch_threads=torch_threads,
                backend=backend,
                device=device,
                seed=seed,
                notes=False,
                catch=catch,
            )
            if prefilter
            else None
        )

    @property
    def directions(self) -> list[str]:
        """The study directions ``objectives`` need, e.g. ``["maximize", "minimize"]``."""
        return [OBJECTIVES[name] or self.task.direction for name in self.objectives]

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, ...]:
        study = trial.study
        if [d.name.lower() for d in study.directions] != self.directions:
            what = ", ".join(
                f"{d} the {self.task.score_name if n == keys.SCORE else n}"
                for n, d in zip(self.objectives, self.directions, strict=True)
            )
            create = (
                f"direction={self.directions[0]!r}"
                if len(self.directions) == 1
                else f"directions={self.directions!r}"
            )
            raise ValueError(f"the study must {what} of {self.task!r}; create it with {create}")
        if len(self.objectives) > 1:
            name_objectives(study, self.objectives)
        failed = (math.nan,) * len(self.objectives)
        offset = 0
        if self._prefilter is not None:
            if math.isnan(run_prefilter(self._prefilter, trial, self.prefilter_threshold)):
                return failed[0] if len(failed) == 1 else failed
            offset = self._config.max_steps + 1
        measured = self._measure(trial, offset)
        values = failed if measured is None else tuple(measured[n] for n in self.objectives)
        return values[0] if len(values) == 1 else values

    def evaluate(self, trial: optuna.Trial, *, step_offset: int = 0) -> float:
        """Train and score the trial's cell, in a study of any directions; NaN if it failed.

        One stage of what :meth:`__call__` does (no direction check, no pre-filter, the
        score alone), for objectives that run several tasks in one trial
        (:func:`optuna_rnn.make_multitask_objective`): losses are reported at
        ``step_offset + step``, negated when the study maximizes, and not at all in a
        multi-objective study.
        """
        measured = self._measure(trial, step_offset)
        return math.nan if measured is None else measured[keys.SCORE]

    def _measure(self, trial: optuna.Trial, step_offset: int) -> dict[str, float] | None:
        """:data:`OBJECTIVES` measured on the trial; ``None`` when it failed (caught)."""
        try:
            return self._run(trial, step_offset)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            message = f"{type(err).__name__}: {err}"
            trial.set_user_attr(keys.ENDED_BECAUSE, "failed")
            trial.set_user_attr(keys.ERROR, message)
            if not isinstance(err, self.catch):
                raise
            _logger.warning(f"Trial {trial.number} failed: {message}", exc_info=err)
            # Optuna marks a trial that returns NaN as FAIL and goes on with the study.
            return None

    def _run(self, trial: optuna.Trial, step_offset: int = 0) -> dict[str, float]:
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
        trial.set_user_attr(keys.HYPERPARAMETERS, hp)
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
        param_count = sum(p.numel() for p in model.parameters())
        trial.set_user_attr(keys.WIDTH, width)
        trial.set_user_attr(keys.PARAM_COUNT, param_count)
        config = dataclasses.replace(
            self._config,
            learning_rate=hp["learning_rate"],
            max_grad_norm=hp["max_grad_norm"],
            seed=seed,
        )
        try:
            result = train(model, task, config, on_evaluate=_pruning(trial, step_offset))
        except Diverged as err:
            trial.set_user_attr(keys.ENDED_BECAUSE, "diverged")
            trial.set_user_attr(keys.ERROR, str(err))
            raise optuna.TrialPruned(f"diverged: {err}") from err
        test = validate(model, task, "test", config.batch_size)
        if self.artifact_store is not None:
            self._keep_model(trial, model, hp, config.batch_size, result.valid["score"])
        for key, value in {
            keys.SCORE: result.valid["score"],
            keys.VALID_LOSS: result.valid["loss"],
            keys.TEST_SCORE: test["score"],
            keys.TEST_LOSS: test["loss"],
            keys.TOKENS_PER_SECOND: result.tokens_per_second,
            keys.STEPS: result.steps,
            keys.BEST_STEP: result.best_step,
            keys.ENDED_BECAUSE: result.ended_because,
        }.items():
            trial.set_user_attr(key, value)
        measured = {
            keys.SCORE: result.valid["score"],
            keys.PARAM_COUNT: param_count,
            keys.TOKENS_PER_SECOND: result.tokens_per_second,
        }
        if self._note is not None:
            self._note.write(trial, [measured[n] for n in self.objectives])
        return measured

    def _keep_model(
        self, trial: optuna.Trial, model: Any, hp: dict[str, Any], batch_size: int, score: float
    ) -> None:
        """Upload the trained model (best-validation weights) as an artifact of ``trial``."""
        if self._artifact_folder is not None:
            record_artifact_store(trial.study, self._artifact_folder)
        card = ModelCard.of(
            model,
            self.task,
            hyperparameters=hp,
            batch_size=batch_size,
            score=score,
            trial=trial.number,
        )
        upload_model(trial, model, card, self.artifact_store)


def _pruning(trial: optuna.Trial, step_offset: int) -> OnEvaluate | None:
    """Reports each validation loss and prunes where the pruner says so; ``None`` in a
    multi-objective study, where Optuna cannot prune."""
    directions = trial.study.directions
    if len(directions) > 1:
        return None
    # Pruners read intermediate values in the study's direction: negate the loss
    # when the study maximizes, so a lower loss is still a better value.
    sign = -1.0 if directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0

    def on_evaluate(step: int, valid: dict[str, float]) -> None:
        trial.report(sign * valid["loss"], step_offset + step)
        if trial.should_prune():
            trial.set_user_attr(keys.ENDED_BECAUSE, "pruned")
            raise optuna.TrialPruned(f"pruned at step {step}")

    return on_evaluate


def resolve_objectives(objectives: Sequence[str]) -> tuple[str, ...]:
    """``objectives`` as :data:`OBJECTIVES` names (aliases resolved); a clear error for a
    name that is none, a repeat or none at all."""
    names = tuple(OBJECTIVE_ALIASES.get(n, n) for n in objectives)
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown or not names or len(set(names)) != len(names):
        choices = ", ".join([*OBJECTIVES, *OBJECTIVE_ALIASES])
        raise ValueError(
            f"objectives must be distinct names from {choices}; got {list(objectives)}"
        )
    return names


def run_prefilter(stage: CellObjective, trial: optuna.Trial, threshold: float) -> float:
    """Train the trial's cell on ``stage``'s task, the pre-filter, and return its score.

    The score goes to user attr ``score_<task>``; under ``threshold`` the trial ends
    pruned with ``ended_because="prefilter"``. NaN: the stage failed (see
    :meth:`CellObjective.evaluate`).
    """
    score = stage.evaluate(trial)
    if math.isnan(score):
        return score
    trial.set_user_attr(keys.score_key(stage.task.name), score)
    if score < threshold:
        trial.set_user_attr(keys.ENDED_BECAUSE, "prefilter")
        raise optuna.TrialPruned(f"{stage.task.name} score {score:.4g} under {threshold:g}")
    return score


def make_objective(task: Task, **kwargs: Any) -> CellObjective:
    """An objective that trains the trial's cell on ``task``; see :class:`CellObjective`."""
    return CellObjective(task, **kwargs)
