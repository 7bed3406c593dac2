"""Encoding by search: find the decisions of a space program that rebuild a given cell.

A depth-first search over the program's decisions, replaying a prefix of answers and
branching at the first new decision. Each finished part of the cell (a gate, a sum) is
checked against the target's sub-expressions and the branch dies unless the target holds
an equal one, so the search visits a few hundred prefixes, not the whole space.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from optuna.distributions import CategoricalChoiceType

from optuna_rnn.cell.ir import COMMUTATIVE, STATE, Cell, CellError, GraphBuilder, Node
from optuna_rnn.spaces.base import Chooser

__all__ = ["search_params"]


def _structure_ids(nodes: Sequence[Node], table: dict[tuple, int], out: list[int]) -> None:
    """Extend ``out`` with an id per node, equal iff the sub-expressions are equal.

    Names of weights and biases are ignored (they do not change the computation); state
    names, initial values and diagonal offsets count. ``table`` is shared between graphs.
    """
    for node in nodes[len(out) :]:
        inputs = [out[j] for j in node.inputs]
        if node.op in COMMUTATIVE:
            inputs.sort()
        key = (node.op, node.name if node.op == STATE else None, node.value, tuple(inputs))
        out.append(table.setdefault(key, len(table)))


class _Target:
    """The cell searched for, as sub-expression ids (sums and products also by operands)."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.table: dict[tuple, int] = {}
        ids: list[int] = []
        _structure_ids(cell.nodes, self.table, ids)
        self.wanted = set(ids)
        self.sums = [
            (n.op, Counter(ids[j] for j in n.inputs)) for n in cell.nodes if n.op in COMMUTATIVE
        ]

    def holds(self, nodes: Sequence[Node], ids: list[int], node: int, absorbable: bool) -> bool:
        """Whether the target holds ``node`` (of a partial graph whose ``ids`` are known).

        A sum read by a sum is flattened into it (a product into a product), so an
        ``absorbable`` sum also counts as held when a target sum has all its operands.
        """
        if ids[node] in self.wanted:
            return True
        n = nodes[node]
        if not absorbable or n.op not in COMMUTATIVE:
            return False
        need = Counter(ids[j] for j in n.inputs)
        return any(op == n.op and not need - have for op, have in self.sums)


class _Branch(Exception):
    def __init__(self, choices: tuple[CategoricalChoiceType, ...]) -> None:
        self.choices = choices


class _Dead(Exception):
    pass


class _Replay(Chooser):
    def __init__(self, prefix: str, answers: tuple, target: _Target) -> None:
        super().__init__(prefix)
        self._answers = answers
        self._target = target
        self._ids: list[int] = []

    def _choose(self, name: str, choices: tuple[CategoricalChoiceType, ...]) -> Any:
        k = len(self.params)
        if k < len(self._answers):
            return self._answers[k]
        raise _Branch(choices)

    def check(self, builder: GraphBuilder, node: int, *, absorbable: bool = False) -> None:
        _structure_ids(builder.nodes, self._target.table, self._ids)
        if not self._target.holds(builder.nodes, self._ids, node, absorbable):
            raise _Dead


def search_params(
    program: Callable[[Chooser], Cell], target: Cell, *, prefix: str, space: str
) -> dict[str, Any]:
    """The params (in decision order) for which ``program`` builds ``target``.

    The first match in choice order wins, so the result is deterministic. Raises
    CellError naming ``space`` when no decisions rebuild the target.
    """
    wanted = _Target(target)
    stack: list[tuple] = [()]
    while stack:
        answers = stack.pop()
        replay = _Replay(prefix, answers, wanted)
        try:
            cell = program(replay)
        except _Branch as branch:
            stack.extend(answers + (c,) for c in reversed(branch.choices))
            continue
        except (_Dead, CellError):
            continue
        if cell.fingerprint == target.fingerprint:
            return replay.params
    raise CellError(f"the cell is not a point of {space}:\n{target}")
