"""Fixtures shared by the test modules; the constants they share are in ``_helpers.py``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest
import torch
from _helpers import STUDIES


@pytest.fixture
def study_scripts(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Imports a study script (``studies/<name>.py``) by name; forgets every one afterwards,
    so that the next test imports them afresh."""
    monkeypatch.syspath_prepend(str(STUDIES))
    yield importlib.import_module
    for name, module in list(sys.modules.items()):
        if Path(getattr(module, "__file__", None) or "/").parent == STUDIES:
            del sys.modules[name]


@pytest.fixture
def one_thread() -> Iterator[None]:
    """torch on one thread, as a trial trains by default (``torch_threads=1``); the
    previous count comes back afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
