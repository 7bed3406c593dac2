"""A trial's architecture, read through the search space: its params, cell and fingerprint."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial

from optuna_rnn.cell import Cell, CellError
from optuna_rnn.samplers._records import fingerprint_of
from optuna_rnn.spaces import CellSpace

__all__ = ["ArchitectureCodec"]

_CACHE_SIZE = 65536


class ArchitectureCodec:
    """Everything the sampler asks of the space, in one place.

    Decoding is cached by the params' JSON: a pure function of immutable data, so the
    cache is shared by threads and holds no study state.
    """

    def __init__(self, space: CellSpace) -> None:
        self.space = space
        self._decode = functools.lru_cache(maxsize=_CACHE_SIZE)(self._decode_json)
        self._distributions: dict[str, BaseDistribution] = {}

    def __reduce__(self) -> tuple[type[ArchitectureCodec], tuple[CellSpace]]:
        return ArchitectureCodec, (self.space,)  # the caches are rebuilt, not pickled

    def own(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The space's parameters among ``params`` (the rest are hyperparameters)."""
        prefix = self.space.prefix
        return {k: v for k, v in params.items() if k.startswith(prefix)}

    def _decode_json(self, key: str) -> Cell | None:
        try:
            return self.space.decode(json.loads(key))
        except CellError:
            return None

    def decode(self, params: Mapping[str, Any]) -> Cell | None:
        """The cell the space params among ``params`` describe, or ``None`` (no cell)."""
        own = self.own(params)
        if not own:
            return None
        return self._decode(json.dumps(own, sort_keys=True))

    def fingerprint(self, params: Mapping[str, Any]) -> str | None:
        cell = self.decode(params)
        return None if cell is None else cell.fingerprint

    def fingerprint_of(self, trial: FrozenTrial) -> str | None:
        """The architecture a trial claims or evaluated, decoding its params if unrecorded."""
        recorded = fingerprint_of(trial)
        if recorded is not None:
            return recorded
        return self.fingerprint({**trial.system_attrs.get("fixed_params", {}), **trial.params})

    def distributions(self, params: Mapping[str, Any]) -> dict[str, BaseDistribution]:
        """The distributions the space suggests ``params`` with (``encode``'s output).

        A space keeps one distribution per parameter name, so they are remembered by name
        and the space is asked (a full decode) only for names not seen before.
        """
        if not self._distributions.keys() >= params.keys():
            self._distributions.update(self.space.distributions(params))
        return {k: self._distributions[k] for k in params}
