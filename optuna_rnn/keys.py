"""Every trial and study attribute key that optuna-rnn writes or reads, in one place.

User attrs are for people (the dashboard's trial table, exports, the leaderboard);
system attrs hold the samplers' cross-trial state. Writers and readers import these
names, so a key is spelled once.
"""

from __future__ import annotations

__all__ = [
    "ARTIFACT_STORE",
    "BEST_STEP",
    "DRAW",
    "ENDED_BECAUSE",
    "EQUATIONS",
    "ERROR",
    "EVOLUTION_FINGERPRINT",
    "EVOLUTION_PLAN",
    "FINGERPRINT",
    "HYPERPARAMETERS",
    "PARAM_COUNT",
    "SCORE",
    "SEARCH_SPEC",
    "STEPS",
    "SURPLUS",
    "TEST_LOSS",
    "TEST_SCORE",
    "TOKENS_PER_SECOND",
    "VALID_LOSS",
    "WIDTH",
    "WORKER",
    "ZOO_NAME",
    "ratio_key",
    "score_key",
]

# Trial user attrs: the cell (optuna_rnn.dashboard.annotate_trial).
EQUATIONS = "equations"
FINGERPRINT = "fingerprint"
ZOO_NAME = "zoo_name"

# Trial user attrs: the training run (optuna_rnn.objective).
HYPERPARAMETERS = "hyperparameters"
WIDTH = "width"
PARAM_COUNT = "param_count"
SCORE = "score"
VALID_LOSS = "valid_loss"
TEST_SCORE = "test_score"
TEST_LOSS = "test_loss"
TOKENS_PER_SECOND = "tokens_per_second"
STEPS = "steps"
BEST_STEP = "best_step"
#: Why a trial ended: the trainer's reason, or "pruned", "diverged", "failed",
#: "prefilter", "first_task", "no_reference", :data:`SURPLUS`.
ENDED_BECAUSE = "ended_because"
ERROR = "error"
#: Which of a paired design's hyperparameter draws a seeded trial holds
#: (optuna_rnn.seed_study with draws=N; read by optuna_rnn.findings).
DRAW = "draw"

# Trial user attrs: the command line's workers (optuna_rnn.cli.run).
WORKER = "worker"
#: The :data:`ENDED_BECAUSE` value of a trial that started after the study was full.
SURPLUS = "surplus"

#: Study user attr: the search's recipe (optuna_rnn.cli.spec.SearchSpec as JSON).
SEARCH_SPEC = "optuna_rnn:spec"
#: Study user attr: the folder of the file-system artifact store the trials' diagrams and
#: trained models went to (optuna_rnn.models).
ARTIFACT_STORE = "optuna_rnn:artifact_store"

# Trial system attrs: the evolution sampler's state (optuna_rnn.samplers._records).
_EVOLUTION = "cell_evolution:"
#: The fingerprint a trial evaluated, where it differs from its plan's.
EVOLUTION_FINGERPRINT = _EVOLUTION + "fingerprint"
#: A trial's plan: its claim on an architecture and the parameters fixed for it.
EVOLUTION_PLAN = _EVOLUTION + "plan"


def score_key(task_name: str) -> str:
    """The user attr holding a multi-task trial's validation score on one task."""
    return f"score_{task_name}"


def ratio_key(task_name: str) -> str:
    """The user attr holding a multi-task trial's ratio to the reference on one task."""
    return f"ratio_{task_name}"
