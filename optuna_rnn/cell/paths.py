"""Whether a cell can remember: paths from the input, through the states, to h'.

A cell whose h' never depends on ``x`` computes the same sequence for every input; one
whose states form no cycle forgets everything after a fixed number of steps; one whose
cycle the input never enters remembers nothing about the input. On a task that needs
memory all three score at chance, yet all are valid cells (a search space or a mutation
can make them), so searches ask here. The states start at zero (as
:class:`~optuna_rnn.CellRNN` starts them unless given a state), so a state whose update
is zero whenever the states are (``h' = h * x``) stays zero for ever and carries
nothing: paths run only through nodes that can be nonzero.
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna_rnn.cell.ir import BIAS, MUL, ONE, SIGMOID, STATE, SUB, Cell, Node, X

__all__ = ["Paths", "live", "paths"]


@dataclass(frozen=True)
class Paths:
    """What the unrolled cell's graph connects.

    A structural test: where it finds no path, no weights make one; where it finds one,
    some weights can still cut it (a ReLU that is zero for them, two routes that cancel).

    Attributes:
        input: ``x`` reaches h', in the same step or later through the states.
        recurrent: a state that h' depends on lies on a cycle of states, so a value can
            persist for any number of steps.
        memory: ``x`` enters such a cycle, so an input reaches h' again and again, for
            as many steps as the sequence lasts.
    """

    input: bool
    recurrent: bool
    memory: bool


def paths(cell: Cell) -> Paths:
    """The paths of ``cell`` (see :class:`Paths`)."""
    nodes = cell.nodes
    zero = _zero_for_ever(cell)
    # Each state's next value depends on these leaves (x and states) of this step.
    reads = {s: _leaves(nodes, i, zero) for s, i in cell.updates.items()}
    upstream = _upstream("h", reads) | {"h"}  # the states h' depends on, at any delay
    cycles = [s for s in upstream if s in _upstream(s, reads)]
    return Paths(
        input=any(X in reads[s] for s in upstream),
        recurrent=bool(cycles),
        memory=any(X in reads[t] for s in cycles for t in _upstream(s, reads)),
    )


def live(cell: Cell) -> bool:
    """Whether ``cell`` can remember its input (:attr:`Paths.memory`): the evolution
    sampler's default test of the cells it proposes."""
    return paths(cell).memory


def _zero(node: Node, zero: set[int]) -> bool:
    """Whether a node is zero when the nodes in ``zero`` are (biases train away from 0)."""
    if node.op in (X, ONE, BIAS, SIGMOID):
        return False
    if node.op == MUL:
        return any(j in zero for j in node.inputs)
    if node.op == SUB and len(set(node.inputs)) == 1:
        return True  # s - s
    return all(j in zero for j in node.inputs)  # sums, linear maps (no bias), tanh, relu


def _zero_for_ever(cell: Cell) -> set[int]:
    """The nodes that stay zero at every step, the states starting at zero."""
    nodes = cell.nodes
    states = set(cell.updates)  # zero at the first step
    while True:
        zero: set[int] = set()
        for i, n in enumerate(nodes):  # canonical order: operands before readers
            if (n.op == STATE and n.name in states) or (n.op != STATE and _zero(n, zero)):
                zero.add(i)
        still = {s for s in states if cell.updates[s] in zero}
        if still == states:  # fewer zero states each round, so this ends
            return zero
        states = still


def _leaves(nodes: tuple[Node, ...], root: int, zero: set[int]) -> set[str]:
    """``x`` and the states that ``root`` reads through nodes that can be nonzero."""
    out: set[str] = set()
    seen, stack = set(), [root]
    while stack:
        i = stack.pop()
        if i in seen or i in zero:
            continue
        seen.add(i)
        n = nodes[i]
        if n.op in (X, STATE):
            out.add(X if n.op == X else n.name)
        stack.extend(n.inputs)
    return out


def _upstream(state: str, reads: dict[str, set[str]]) -> set[str]:
    """The states that ``state``'s next value depends on, over one step or more."""
    seen: set[str] = set()
    stack = [r for r in reads[state] if r != X]
    while stack:
        s = stack.pop()
        if s not in seen:
            seen.add(s)
            stack.extend(r for r in reads[s] if r != X)
    return seen
