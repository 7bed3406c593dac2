"""What every cell search space shares: one define-by-run program, run three ways.

A space is a single function ``_program(choose) -> Cell`` that asks ``choose(name,
choices)`` for each decision and builds the cell from the answers. Run with a trial it
*suggests* (Optuna records the params); run with a params dict it *decodes* (and learns the
distributions of those params); run by a search it *encodes*; run with a random generator
it *samples*. Because one program serves them all, a cell, its params and their
distributions can never disagree.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from optuna.distributions import CategoricalChoiceType, CategoricalDistribution
from optuna.trial import BaseTrial

from optuna_rnn.cell.ir import Cell, CellError, GraphBuilder

__all__ = ["CellSpace", "Chooser", "check_numbers", "check_options"]


def check_options(name: str, given: Sequence[Any], allowed: Sequence[Any]) -> tuple[Any, ...]:
    """``given`` as a tuple; ValueError unless it is non-empty, distinct and within ``allowed``."""
    given = tuple(given)
    if not given:
        raise ValueError(f"{name} must name at least one option")
    if len(set(given)) != len(given):
        raise ValueError(f"{name} has repeated options: {given}")
    bad = [g for g in given if g not in allowed]
    if bad:
        raise ValueError(f"{name} has unknown options {bad}; valid options: {list(allowed)}")
    return given


def check_numbers(name: str, given: Sequence[float]) -> tuple[float, ...]:
    """``given`` as distinct finite floats (bias initial values, diagonal offsets)."""
    values = tuple(float(v) for v in given)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name} must be finite numbers, got {values}")
    return check_options(name, values, values)


class Chooser(abc.ABC):
    """Answers a space program's decisions; every decision is a categorical choice.

    A choice list with one element is no decision: it is answered without a parameter,
    so narrowing an option to one value removes its parameter from the space.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.params: dict[str, Any] = {}

    def __call__(self, name: str, choices: Sequence[CategoricalChoiceType]) -> Any:
        if len(choices) == 1:
            return choices[0]
        full = self.prefix + name
        value = self._choose(full, tuple(choices))
        self.params[full] = value
        return value

    @abc.abstractmethod
    def _choose(self, name: str, choices: tuple[CategoricalChoiceType, ...]) -> Any:
        """The value of parameter ``name`` (already prefixed), one of ``choices``."""

    def check(self, builder: GraphBuilder, node: int, *, absorbable: bool = False) -> None:
        """A hook called on each finished part of the cell; searches prune with it.

        ``absorbable``: the node is a sum or product that a reader of the same kind may
        flatten into itself, so the finished cell may not hold it as a node.
        """


class _TrialChooser(Chooser):
    def __init__(self, trial: BaseTrial, prefix: str) -> None:
        super().__init__(prefix)
        self._trial = trial

    def _choose(self, name: str, choices: tuple[CategoricalChoiceType, ...]) -> Any:
        return self._trial.suggest_categorical(name, choices)


class _ParamsChooser(Chooser):
    """Reads decisions from a params dict, validating each and recording distributions."""

    def __init__(self, params: Mapping[str, Any], prefix: str) -> None:
        super().__init__(prefix)
        self._given = params
        self.distributions: dict[str, CategoricalDistribution] = {}

    def _choose(self, name: str, choices: tuple[CategoricalChoiceType, ...]) -> Any:
        if name not in self._given:
            raise CellError(f"parameter {name!r} is missing")
        value = self._given[name]
        for choice in choices:
            # bool is an int in Python: True must not match a choice of 1, nor 1.0 of True.
            if choice == value and isinstance(choice, bool) == isinstance(value, bool):
                self.distributions[name] = CategoricalDistribution(choices)
                return choice
        raise CellError(f"parameter {name!r} is {value!r}, not one of {list(choices)}")

    def finish(self) -> None:
        """Raise CellError if ``params`` held space parameters that this cell does not use."""
        unused = [k for k in self._given if k.startswith(self.prefix) and k not in self.params]
        if unused:
            raise CellError(f"parameters not used by this cell: {sorted(unused)}")


class _DrawChooser(Chooser):
    """Keeps the decisions ``kept`` holds (where still among the choices) and draws each
    other one uniformly from its choices, as RandomSampler would."""

    def __init__(
        self, rng: np.random.Generator, prefix: str, kept: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(prefix)
        self._rng = rng
        self._kept = kept or {}

    def _choose(self, name: str, choices: tuple[CategoricalChoiceType, ...]) -> Any:
        if name in self._kept and self._kept[name] in choices:
            return self._kept[name]
        return choices[int(self._rng.integers(len(choices)))]


class CellSpace(abc.ABC):
    """A search space of cells that any Optuna sampler can walk.

    Every parameter is categorical, its name starts with :attr:`prefix` and keeps the
    same choices in every trial (Optuna requires it); a parameter is suggested only when
    the cell uses it (define-by-run). Parameters without the prefix (learning rate...)
    are ignored by :meth:`decode`, so a trial's full ``params`` decode as they are.
    """

    def __init__(self, *, prefix: str) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        """The prefix of every parameter name of this space, e.g. ``"cell."``."""
        return self._prefix

    @abc.abstractmethod
    def _program(self, choose: Chooser) -> Cell:
        """Make every decision through ``choose`` (all of them before any CellError)."""

    @abc.abstractmethod
    def encode(self, cell: Cell) -> dict[str, Any]:
        """The params that :meth:`decode` turns into ``cell`` (equal fingerprint).

        Raises CellError when the cell is not a point of this space.
        """

    def suggest(self, trial: BaseTrial) -> Cell:
        """Suggest a cell's params in ``trial`` and return the cell.

        The package's spaces make a valid cell of every assignment, so this never raises
        for them. A space of your own raises CellError when the suggested params make no
        valid cell; all params are suggested first, so the trial still records them.
        """
        return self._program(_TrialChooser(trial, self._prefix))

    def sample(
        self, rng: np.random.Generator, *, kept: Mapping[str, Any] | None = None
    ) -> tuple[Cell, dict[str, Any]]:
        """A random point and its params: each decision drawn uniformly from its choices
        (what RandomSampler's :meth:`suggest` draws), from ``rng`` alone. ``kept``: params
        to keep wherever the program asks for them (a neighbour of that point)."""
        chooser = _DrawChooser(rng, self._prefix, kept)
        cell = self._program(chooser)
        return cell, dict(chooser.params)

    def decode(self, params: Mapping[str, Any]) -> Cell:
        """The cell these params describe; CellError if they are not a point of the space."""
        return self._replay(params)[0]

    def distributions(self, params: Mapping[str, Any]) -> dict[str, CategoricalDistribution]:
        """The distribution of each space parameter in ``params``, in suggestion order.

        These are exactly what :meth:`suggest` passes to ``trial.suggest_categorical``, so
        a sampler can hand ``encode(cell)`` back from ``sample_independent`` or
        ``sample_relative``, or ``enqueue_trial`` it, and Optuna accepts the values.
        """
        chooser = self._replay(params)[1]
        return {name: chooser.distributions[name] for name in chooser.params}

    def __contains__(self, cell: object) -> bool:
        if not isinstance(cell, Cell):
            return False
        try:
            self.encode(cell)
        except CellError:
            return False
        return True

    def _replay(self, params: Mapping[str, Any]) -> tuple[Cell, _ParamsChooser]:
        if not isinstance(params, Mapping):
            raise CellError(f"params must be a mapping, got {type(params).__name__}")
        chooser = _ParamsChooser(params, self._prefix)
        cell = self._program(chooser)
        chooser.finish()
        return cell, chooser
