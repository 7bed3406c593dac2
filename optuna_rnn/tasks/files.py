"""Loading what a task reads: optional extras, text files and checksums, with clear errors."""

from __future__ import annotations

import hashlib
import importlib
import os
from pathlib import Path
from types import ModuleType

__all__ = ["DataError", "cache_dir", "check_md5", "read_text", "require"]


class DataError(ValueError):
    """A data file is empty, corrupt, malformed, or fails its checksum."""


def require(module: str, *, extra: str) -> ModuleType:
    """Import an optional dependency, or say which pip extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(
            f"this task needs the package {module!r}: pip install 'optuna-rnn[{extra}]'"
        ) from e


def read_text(path: str | os.PathLike[str]) -> str:
    """The UTF-8 text of ``path``; a missing, empty or undecodable file names itself."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such data file: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not valid UTF-8 text: {e}") from e
    if not text.strip():
        raise DataError(f"{path} is empty")
    return text


def check_md5(text: str, expected: str, *, source: str) -> None:
    """Raise :class:`DataError` naming ``source`` unless ``text`` has the expected MD5."""
    actual = hashlib.md5(text.encode("utf-8")).hexdigest()
    if actual != expected:
        raise DataError(f"checksum mismatch for {source}: md5 {actual}, expected {expected}")


def cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Where parsed data is cached: ``override``, else ``$OPTUNA_RNN_CACHE``, else
    ``~/.cache/optuna_rnn``."""
    if override is not None:
        return Path(override)
    env = os.environ.get("OPTUNA_RNN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "optuna_rnn"
