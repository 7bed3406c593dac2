"""The paper's mutation of a cell graph (Jozefowicz et al. 2015, "Mutation").

One call draws ``p ~ U[0, 1]``, visits every operation node (linear maps, elementwise
nodes, activations; not ``x``, states, biases or the constant) and, with probability
``p``, applies one of the transformations that fit the node, chosen uniformly (a pass
that would transform no node is never drawn: the nodes are drawn given that one is):

``change_activation``
    tanh / sigmoid / ReLU / a linear map becomes another of tanh, sigmoid, ReLU,
    Linear(0, .), Linear(1, .), Linear(0.9, .), Linear(1.1, .).
``change_elementwise``
    add / multiply / subtract becomes another of them (an n-ary node turned into a
    subtraction subtracts one random operand from the rest).
``insert_activation``
    a random activation from the list above between the node and one of its inputs.
``remove_node``
    a node with one input and one reader is replaced by its input.
``replace_with_ancestor``
    the node is replaced by one of its ancestors; what lay between is dropped.
``combine_ancestors``
    the node becomes the sum, product or difference of one of its ancestors and an
    ancestor of another random node (one that precedes it, so no cycle can form).

Linear(a, .) is a new linear map with diagonal offset ``a`` plus a new bias, with fresh
names. A pass whose result is not a valid cell (:class:`CellError`), is larger than
``max_nodes``, equals the input, or has lost every learnable parameter of a parent that
had some (nothing could train it: see :attr:`Cell.learnable`) is thrown away and drawn
again with the same ``p``.
Everything is drawn from the given ``numpy.random.Generator``: same seed, same mutant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar, overload

import numpy as np

from optuna_rnn.cell.ir import (
    ACTIVATIONS,
    ADD,
    DEFAULT_MAX_NODES,
    ELEMENTWISE,
    LEAF_OPS,
    LINEAR,
    SUB,
    Cell,
    CellError,
    GraphBuilder,
    fresh_name,
)

__all__ = ["TRANSFORMATIONS", "Mutation", "Step", "mutate"]

CHANGE_ACTIVATION = "change_activation"
CHANGE_ELEMENTWISE = "change_elementwise"
INSERT_ACTIVATION = "insert_activation"
REMOVE_NODE = "remove_node"
REPLACE_WITH_ANCESTOR = "replace_with_ancestor"
COMBINE_ANCESTORS = "combine_ancestors"
TRANSFORMATIONS = (
    CHANGE_ACTIVATION,
    CHANGE_ELEMENTWISE,
    INSERT_ACTIVATION,
    REMOVE_NODE,
    REPLACE_WITH_ANCESTOR,
    COMBINE_ANCESTORS,
)

# The paper's activation set; a float is Linear(a, .) with that diagonal offset.
NEW_ACTIVATIONS: tuple[str | float, ...] = (*ACTIVATIONS, 0.0, 1.0, 0.9, 1.1)
_ACTIVATION_NODES = frozenset({*ACTIVATIONS, LINEAR})
MAX_ATTEMPTS = 1000
T = TypeVar("T")


@dataclass(frozen=True)
class Step:
    """One transformation applied to one node of the parent (its index in ``parent.nodes``)."""

    transformation: str
    node: int
    detail: str


@dataclass(frozen=True)
class Mutation:
    """A mutant with its history: the ``p`` drawn, the steps of the accepted pass, and
    how many passes were drawn (the rejected ones included)."""

    parent: Cell
    cell: Cell
    p: float
    steps: tuple[Step, ...]
    attempts: int

    @property
    def transformations(self) -> frozenset[str]:
        """The kinds of transformation that fired in the accepted pass."""
        return frozenset(s.transformation for s in self.steps)


@overload
def mutate(
    cell: Cell,
    rng: np.random.Generator,
    *,
    max_nodes: int = ...,
    return_log: Literal[False] = ...,
) -> Cell: ...


@overload
def mutate(
    cell: Cell, rng: np.random.Generator, *, max_nodes: int = ..., return_log: Literal[True]
) -> Mutation: ...


def mutate(
    cell: Cell,
    rng: np.random.Generator,
    *,
    max_nodes: int = DEFAULT_MAX_NODES,
    return_log: bool = False,
) -> Cell | Mutation:
    """A random mutant of ``cell``: valid, at most ``max_nodes`` nodes, another fingerprint.

    With ``return_log=True`` returns a :class:`Mutation` saying which transformations
    fired. Raises :class:`CellError` if the cell has no operation node or no valid mutant
    turns up in ``MAX_ATTEMPTS`` passes.
    """
    if not isinstance(cell, Cell):
        raise TypeError(f"mutate needs a Cell, got {type(cell).__name__}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"mutate needs a numpy.random.Generator, got {type(rng).__name__}")
    graph = _Graph(cell)
    if not graph.visitable:
        raise CellError(f"the cell {str(cell)!r} has no operation node to mutate")
    p = float(rng.random())
    for attempt in range(1, MAX_ATTEMPTS + 1):
        rewrite = _Rewrite(graph, rng)
        try:
            child = rewrite.run(_fire(graph.visitable, p, rng), max_nodes)
        except CellError:
            continue
        if child.fingerprint != cell.fingerprint and (child.learnable or not cell.learnable):
            if not return_log:
                return child
            return Mutation(cell, child, p, tuple(rewrite.steps), attempt)
    raise CellError(f"no valid mutant of the cell in {MAX_ATTEMPTS} passes (p={p:.3g})")


def _fire(visitable: list[int], p: float, rng: np.random.Generator) -> set[int]:
    """The nodes a pass transforms: each with probability ``p``, given that one at least
    does (a pass that changes nothing is drawn again, so draw it conditioned directly)."""
    n = len(visitable)
    weights = np.array([math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(1, n + 1)])
    total = weights.sum()
    count = 1 + int(rng.choice(n, p=weights / total)) if total > 0 else 1
    return {int(i) for i in rng.choice(visitable, size=count, replace=False)}


class _Graph:
    """What every pass needs to know about the parent, computed once per call."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.nodes = cell.nodes
        self.visitable = [i for i, n in enumerate(self.nodes) if n.op not in LEAF_OPS]
        outputs = [len(c) for c in cell.consumers()]
        for i in cell.updates.values():
            outputs[i] += 1
        self.outputs = outputs
        self.ancestors: list[list[int]] = []
        masks: list[int] = []
        for n in self.nodes:
            mask = 0
            for j in n.inputs:
                mask |= masks[j] | (1 << j)
            masks.append(mask)
            self.ancestors.append([j for j in range(len(masks)) if mask >> j & 1])
        taken = {n.name for n in self.nodes if n.name} | set(cell.labels.values())
        self.taken = frozenset(taken | set(cell.states))
        # combine_ancestors partners: other nodes with an ancestor before i (no cycles).
        self.partners = {
            i: [k for k in self.visitable if k != i and self.ancestors[k][0] < i]
            for i in self.visitable
        }
        self.kinds = {i: self._kinds(i) for i in self.visitable}

    def _kinds(self, i: int) -> list[str]:
        n = self.nodes[i]
        out = []
        if n.op in _ACTIVATION_NODES:
            out.append(CHANGE_ACTIVATION)
        if n.op in ELEMENTWISE:
            out.append(CHANGE_ELEMENTWISE)
        out += [INSERT_ACTIVATION, REPLACE_WITH_ANCESTOR]
        if len(n.inputs) == 1 and self.outputs[i] == 1:
            out.append(REMOVE_NODE)
        if self.partners[i]:
            out.append(COMBINE_ANCESTORS)
        return out


class _Rewrite:
    """One pass: rebuilds the parent node by node in a fresh builder, transforming some.

    Each transformation is the method named after it (``TRANSFORMATIONS``): it gets the
    parent's node index and the node's inputs in the new graph, and returns the new node.
    """

    def __init__(self, graph: _Graph, rng: np.random.Generator) -> None:
        self.g = graph
        self.rng = rng
        self.b = GraphBuilder()
        self.new: list[int] = []
        self.steps: list[Step] = []
        self._taken = set(graph.taken)

    def run(self, fire: set[int], max_nodes: int) -> Cell:
        labels = self.g.cell.labels
        for i, node in enumerate(self.g.nodes):
            inputs = [self.new[j] for j in node.inputs]
            if i in fire:
                kind = self._pick(self.g.kinds[i])
                self.new.append(getattr(self, kind)(i, inputs))
            else:
                self.new.append(self.b.add(node, inputs))
            if i in labels:
                self.b.label(self.new[i], labels[i])
        updates = {s: self.new[i] for s, i in self.g.cell.updates.items()}
        return Cell(self.b.nodes, updates, self.b.labels, max_nodes=max_nodes)

    # ----------------------------------------------------------------- helpers
    def _pick(self, seq: Sequence[T]) -> T:
        return seq[self.rng.integers(len(seq))]

    def _activation(self, act: str | float, operand: int) -> int:
        if isinstance(act, str):
            return self.b.op(act, operand)
        w = self.b.linear(fresh_name("W", self._taken), operand, act)
        return self.b.op(ADD, w, self.b.bias(fresh_name("b", self._taken)))

    def _log(self, kind: str, i: int, detail: str) -> None:
        self.steps.append(Step(kind, i, detail))

    # ----------------------------------------------------- the six transformations
    def change_activation(self, i: int, inputs: list[int]) -> int:
        old = self.g.nodes[i].op
        act = self._pick([a for a in NEW_ACTIVATIONS if a != old])
        self._log(CHANGE_ACTIVATION, i, f"{old} -> {_act_name(act)}")
        return self._activation(act, inputs[0])

    def change_elementwise(self, i: int, inputs: list[int]) -> int:
        old = self.g.nodes[i].op
        op = self._pick([o for o in ELEMENTWISE if o != old])
        self._log(CHANGE_ELEMENTWISE, i, f"{old} -> {op}")
        if op != SUB:
            return self.b.op(op, *inputs)
        k = int(self.rng.integers(len(inputs)))
        rest = inputs[:k] + inputs[k + 1 :]
        first = rest[0] if len(rest) == 1 else self.b.op(old, *rest)
        return self.b.op(SUB, first, inputs[k])

    def insert_activation(self, i: int, inputs: list[int]) -> int:
        k = int(self.rng.integers(len(inputs)))
        act = self._pick(NEW_ACTIVATIONS)
        self._log(INSERT_ACTIVATION, i, f"{_act_name(act)} on input {self.g.nodes[i].inputs[k]}")
        inputs = inputs[:k] + [self._activation(act, inputs[k])] + inputs[k + 1 :]
        return self.b.add(self.g.nodes[i], inputs)

    def remove_node(self, i: int, inputs: list[int]) -> int:
        self._log(REMOVE_NODE, i, self.g.nodes[i].op)
        return inputs[0]

    def replace_with_ancestor(self, i: int, inputs: list[int]) -> int:
        a = self._pick(self.g.ancestors[i])
        self._log(REPLACE_WITH_ANCESTOR, i, f"by node {a}")
        return self.new[a]

    def combine_ancestors(self, i: int, inputs: list[int]) -> int:
        a = self._pick(self.g.ancestors[i])
        other = self._pick(self.g.partners[i])
        b = self._pick([j for j in self.g.ancestors[other] if j < i])
        op = self._pick(ELEMENTWISE)
        self._log(COMBINE_ANCESTORS, i, f"{op} of nodes {a} and {b}")
        return self.b.op(op, self.new[a], self.new[b])


def _act_name(act: str | float) -> str:
    return act if isinstance(act, str) else f"linear({act:g})"
