"""Load pickles of plain data only: containers and numbers, never code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

from optuna_rnn.tasks.files import DataError

__all__ = ["load_plain_pickle"]

# Lists, dicts, tuples, strings and numbers have opcodes of their own; sets need a global.
_ALLOWED_GLOBALS = frozenset({("builtins", "set"), ("builtins", "frozenset")})


def _python3_name(module: str, name: str) -> tuple[str, str]:
    """A Python 2 global (``__builtin__.set``) by its Python 3 name, as pickle's own
    compatibility mapping renames it when it loads a protocol 0-2 pickle."""
    from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING

    if (module, name) in NAME_MAPPING:
        return NAME_MAPPING[(module, name)]
    return IMPORT_MAPPING.get(module, module), name


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global but ``set``/``frozenset``, so no callable can be reached."""

    def find_class(self, module: str, name: str) -> Any:
        if _python3_name(module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: only plain data is allowed")


def load_plain_pickle(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``path`` admitting only plain containers and numbers.

    Python 2 pickles (the usual format of the polyphonic music sets) load too. A missing,
    empty, corrupt or code-carrying file raises an error naming it, before anything in
    it runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    with path.open("rb") as f:
        try:
            return _PlainUnpickler(f, encoding="latin1").load()
        except Exception as e:  # any failure to unpickle means a corrupt or unsafe file
            raise DataError(f"{path} is not a plain-data pickle: {e}") from e
