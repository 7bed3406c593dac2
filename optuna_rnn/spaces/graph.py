"""GraphSpace: the paper's open-ended space of computation graphs, as node slots.

Slots ``n0 .. n{max_nodes-1}`` are numbered from the output: ``n0`` is h', and a slot
reads only leaves and slots with a *larger* number, so every assignment is acyclic. For
each slot in use, a trial suggests (names get the space's prefix):

``n{k}.op``
    ``linear`` (W s, or (W + a I) s), ``add``, ``mul``, ``sub``, ``tanh``, ``sigmoid``,
    ``relu`` or ``bias`` (a learned vector, a leaf; not for ``n0``: h' = b reads nothing).
``n{k}.in0``, ``n{k}.in1``
    the operands (one for linear maps and activations, two for add, mul and sub), each
    from the fixed list: ``x``, the states (``h``, ``c``...), ``1``, then ``n{k+1}`` ..
    ``n{max_nodes-1}``. Absolute slot names keep the choices of each parameter fixed, and
    a slot named by two operands is one shared node.
``n{k}.diag``, ``n{k}.init``
    a linear map's diagonal offset a (the paper's Linear(a, x)), a bias's initial value.
``{state}.update`` (states other than h, suggested when the cell reads that state)
    the node that becomes the state's next value: a leaf or a slot.

Slots are suggested only when an operand or a state update names them, lowest number
first, so unused slots are never suggested. A sum or product of k operands takes k - 1
slots (a chain; the cell language flattens it back), so ``max_nodes`` counts slots: the
cell's nodes (biases included) plus, for each sum or product, its operands minus two.

Every assignment is a valid cell that training can change. Decoding repairs the ways a
graph of slots can fail to be one (an update that reads neither x nor a state, a cell
that never reads x, a cell with no weight and no bias, which
:class:`~optuna_rnn.CellRNN` refuses), with rules that a valid cell's encoding never
meets (:func:`_repair`):

1. a slot other than a bias whose operands are all constants (``1`` or bias slots)
   reads ``x`` in place of its first operand, so the only constant slots are biases;
2. a state update that names a bias slot is ``x`` instead;
3. a cell that still never reads x reads it in the lowest slot that h' reaches and that
   reads a state directly, in place of its first such state;
4. a cell with no weight and no bias turns its lowest live activation slot into a
   linear map of the same operand (``tanh(s)`` becomes ``W s``), or, with no activation
   in use, slot ``n0`` into a linear map of its first operand; rules 1-3 then run again
   (they change operands only, so the weight stays).

So the points of the space are the learnable cells whose computed nodes all read x or
a state (a constant such as ``W b`` or ``tanh(b)`` is only a bias in disguise); encode
refuses the others. Slot ``n0`` is h', so cells whose other nodes read h' (the new h) are
outside encode's reach; a point can still decode to one (when ``n0`` merges with a
slot another state reads), a valid cell all the same.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Sequence
from typing import Any

from optuna_rnn.cell.ir import (
    ACTIVATIONS,
    ADD,
    BIAS,
    LEAF_OPS,
    LINEAR,
    MAX_STATES,
    MUL,
    ONE,
    RESERVED,
    STATE,
    SUB,
    Cell,
    CellError,
    GraphBuilder,
    Node,
    X,
)
from optuna_rnn.spaces.base import CellSpace, Chooser, check_numbers, check_options

__all__ = ["GraphSpace"]

OPS = (LINEAR, ADD, MUL, SUB, *ACTIVATIONS, BIAS)
_BINARY = frozenset({ADD, MUL, SUB})
_SLOT = re.compile(r"^n\d+$")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _slot(ref: str) -> int | None:
    return int(ref[1:]) if _SLOT.match(ref) else None


def _check_h_unread(cell: Cell) -> None:
    """Slot ``n0`` is h', which no slot reads: a cell whose other nodes read a computed h'
    is outside the space."""
    h_new = cell.updates["h"]
    if cell.nodes[h_new].op not in LEAF_OPS and cell.consumers()[h_new]:
        raise CellError("the cell reads h' (the new h); GraphSpace cannot hold that")


_Spec = tuple[str, tuple[str, ...], float]


def _reached(specs: dict[int, _Spec], roots: Sequence[str]) -> set[str]:
    """``roots`` and every ref the slots among them read, directly or not (states are
    leaves here: their updates are not followed)."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        ref = stack.pop()
        if ref not in seen:
            seen.add(ref)
            k = _slot(ref)
            if k is not None:
                stack.extend(specs[k][1])
    return seen


def _repair(
    specs: dict[int, _Spec], updates: dict[str, str], diagonal: float
) -> tuple[dict[int, _Spec], dict[str, str]]:
    """Rewrite the decisions by the module docs' rules 1-4, so they make a valid cell
    with a weight or a bias (a repaired linear map takes offset ``diagonal``).

    A valid cell's encoding never meets these rules (it writes no constant slot but a
    bias, reads x and has a parameter), so every point keeps its one canonical encoding.
    """
    specs, updates = _connect(specs, updates)
    live = [k for k in map(_slot, _live(specs, updates)) if k is not None]
    if any(specs[k][0] in (LINEAR, BIAS) for k in live):
        return specs, updates
    k = min((k for k in live if specs[k][0] in ACTIVATIONS), default=0)
    specs[k] = (LINEAR, specs[k][1][:1], diagonal)
    return _connect(specs, updates)


def _connect(
    specs: dict[int, _Spec], updates: dict[str, str]
) -> tuple[dict[int, _Spec], dict[str, str]]:
    """Rules 1-3 of the module docs: every computed slot and update reads x or a state,
    and the cell reads x."""
    specs = dict(specs)

    def constant(ref: str) -> bool:
        k = _slot(ref)
        return ref == "1" or (k is not None and specs[k][0] == BIAS)

    for k, (op, refs, value) in specs.items():
        if op != BIAS and all(constant(r) for r in refs):
            specs[k] = (op, (X, *refs[1:]), value)
    updates = {s: X if constant(r) else r for s, r in updates.items()}
    if X not in _live(specs, updates):
        from_h = _reached(specs, [updates["h"]])
        k = min(k for k in map(_slot, from_h) if k is not None and _reads_state(specs[k]))
        op, refs, value = specs[k]
        i = next(i for i, r in enumerate(refs) if _is_state(r))
        specs[k] = (op, (*refs[:i], X, *refs[i + 1 :]), value)
    return specs, updates


def _is_state(ref: str) -> bool:
    return ref not in (X, "1") and _slot(ref) is None


def _reads_state(spec: _Spec) -> bool:
    return any(_is_state(r) for r in spec[1])


def _live(specs: dict[int, _Spec], updates: dict[str, str]) -> set[str]:
    """Every ref the cell reaches from h', following the updates of the states it reads."""
    seen = _reached(specs, [updates["h"]])
    done = {"h"}
    while todo := [s for s in updates if s in seen and s not in done]:
        done.update(todo)
        seen |= _reached(specs, [updates[s] for s in todo])
    return seen


class GraphSpace(CellSpace):
    """Cells as graphs of up to ``max_nodes`` slots (see the module docs for the params).

    Every cell that fits is a point (but for the gaps in the module docs): the zoo's cells
    with at most ``len(states)`` states (the LSTM takes 29 slots, the GRU 23, the peephole
    LSTM 38). Every assignment of the params decodes to a valid cell (the module docs'
    repair rules), so :meth:`suggest` never raises for any sampler's draw.

    Args:
        max_nodes: the number of slots.
        states: the state names a cell may have, ``h`` first.
        ops: the operations a slot may take, from ``OPS``.
        bias_inits: initial values a bias may take.
        diagonals: diagonal offsets a linear map may take.
        prefix: the prefix of every parameter name.
    """

    def __init__(
        self,
        *,
        max_nodes: int = 40,
        states: Sequence[str] = ("h", "c"),
        ops: Sequence[str] = OPS,
        bias_inits: Sequence[float] = (-1.0, 0.0, 1.0),
        diagonals: Sequence[float] = (0.0, 0.9, 1.0, 1.1),
        prefix: str = "cell.",
    ) -> None:
        super().__init__(prefix=prefix)
        if isinstance(max_nodes, bool) or not isinstance(max_nodes, int) or max_nodes < 1:
            raise ValueError(f"max_nodes must be a positive int, got {max_nodes!r}")
        states = tuple(states)
        if not states or states[0] != "h" or len(states) > MAX_STATES:
            raise ValueError(
                f"states must start with 'h' and name at most {MAX_STATES}, got {states}"
            )
        for s in states:
            if not isinstance(s, str) or not _NAME.match(s) or s in RESERVED or _SLOT.match(s):
                raise ValueError(f"state name {s!r} is not an identifier free for a state")
        check_options("states", states, states)
        self._max_nodes = max_nodes
        self._states = states
        self._ops = check_options("ops", ops, OPS)
        self._h_ops = tuple(op for op in self._ops if op != BIAS)  # h' = b reads nothing
        if not self._h_ops:
            raise ValueError(f"ops must hold an operation other than {BIAS!r}")
        self._bias_inits = check_numbers("bias_inits", bias_inits)
        self._diagonals = check_numbers("diagonals", diagonals)
        self._leaves = (X, *states, "1")
        self._operands = [self._leaves + self._slots(k + 1) for k in range(max_nodes)]
        self._updates = (X, *states) + self._slots(0)

    @property
    def max_nodes(self) -> int:
        """The number of slots."""
        return self._max_nodes

    def _slots(self, start: int) -> tuple[str, ...]:
        return tuple(f"n{j}" for j in range(start, self._max_nodes))

    # ---------------------------------------------------------------- program
    def _program(self, choose: Chooser) -> Cell:
        """Suggest the slots h' reaches (lowest first), then each read state's update and
        the slots it reaches; build the cell from the slots' specs, highest first."""
        specs: dict[int, tuple[str, tuple[str, ...], float]] = {}
        updates = {"h": "n0"}
        pending = [0]
        read: set[str] = set()
        while True:
            while pending:
                k = heapq.heappop(pending)
                if k in specs:
                    continue
                specs[k] = self._suggest_slot(choose, k)
                self._visit(specs[k][1], pending, read)
            todo = [s for s in self._states if s in read and s not in updates]
            if not todo:
                break
            updates[todo[0]] = choose(f"{todo[0]}.update", self._updates)
            self._visit((updates[todo[0]],), pending, read)
        return self._build(specs, updates)

    def _visit(self, refs: Sequence[str], pending: list[int], read: set[str]) -> None:
        """Queue the slots among ``refs``; note the leaves (states) they read."""
        for ref in refs:
            k = _slot(ref)
            if k is None:
                read.add(ref)
            else:
                heapq.heappush(pending, k)

    def _op_choices(self, k: int) -> tuple[str, ...]:
        return self._h_ops if k == 0 else self._ops

    def _suggest_slot(self, choose: Chooser, k: int) -> tuple[str, tuple[str, ...], float]:
        op = choose(f"n{k}.op", self._op_choices(k))
        if op == BIAS:
            return op, (), choose(f"n{k}.init", self._bias_inits)
        arity = 2 if op in _BINARY else 1
        refs = tuple(choose(f"n{k}.in{i}", self._operands[k]) for i in range(arity))
        value = choose(f"n{k}.diag", self._diagonals) if op == LINEAR else 0.0
        return op, refs, value

    def _build(self, specs: dict, updates: dict[str, str]) -> Cell:
        specs, updates = _repair(specs, updates, self._diagonals[0])
        b = GraphBuilder()
        built: dict[int, int] = {}

        def node(ref: str) -> int:
            k = _slot(ref)
            if k is not None:
                return built[k]
            return b.x() if ref == X else b.one() if ref == "1" else b.state(ref)

        for k in sorted(specs, reverse=True):
            op, refs, value = specs[k]
            name = f"b{k}" if op == BIAS else f"W{k}" if op == LINEAR else None
            built[k] = b.add(Node(op, (), name, value), [node(r) for r in refs])
        return Cell(b.nodes, {s: node(r) for s, r in updates.items()}, max_nodes=self._max_nodes)

    # ----------------------------------------------------------------- encode
    def encode(self, cell: Cell) -> dict[str, Any]:
        """The slot params of ``cell``: slots numbered from h', readers before operands."""
        if not isinstance(cell, Cell):
            raise CellError(f"expected a Cell, got {type(cell).__name__}")
        if not cell.learnable:
            raise CellError(f"the cell has no weight and no bias, so it is not a point:\n{cell}")
        extra = sorted(set(cell.states) - set(self._states))
        if extra:
            raise CellError(f"the cell's states {extra} are not among this space's {self._states}")
        nodes, first = cell.nodes, self._number(cell)
        params: dict[str, Any] = {}

        def ref(i: int) -> str:
            n = nodes[i]
            return (
                X
                if n.op == X
                else "1"
                if n.op == ONE
                else n.name
                if n.op == STATE
                else f"n{first[i]}"
            )

        def put(name: str, choices: tuple, value: Any) -> None:
            if value not in choices:
                raise CellError(f"{name} would be {value!r}, not one of {list(choices)}")
            if len(choices) > 1:
                params[self.prefix + name] = value

        h_new = cell.updates["h"]
        if (
            h_new not in first
        ):  # a leaf h' (h' = x): slot n0 is x * 1, which the builder reduces to x
            for name, value in (("op", MUL), ("in0", ref(h_new)), ("in1", "1")):
                put(f"n0.{name}", self._operands[0] if name != "op" else self._h_ops, value)
        constant: list[bool] = []  # reads neither x nor a state
        for n in nodes:
            computed = bool(n.inputs) and all(constant[j] for j in n.inputs)
            constant.append(n.op in (ONE, BIAS) or computed)
        for i, k in first.items():
            n = nodes[i]
            # A sum or product of m operands: the chain n_k = a_1 op n_{k+1}, ..., a_{m-1} op a_m,
            # constants first, so that no link but a whole constant sum reads only constants.
            chained = n.op in (ADD, MUL)
            inputs = sorted(n.inputs, key=lambda j: not constant[j]) if chained else n.inputs
            chain = len(inputs) - 1 if chained else 1
            for t in range(chain):
                put(f"n{k + t}.op", self._op_choices(k + t), n.op)
                last = t == chain - 1
                refs = [ref(j) for j in (inputs[t:] if last else inputs[t : t + 1])]
                refs += [] if last else [f"n{k + t + 1}"]
                for pos, r in enumerate(refs):
                    put(f"n{k + t}.in{pos}", self._operands[k + t], r)
            if n.op == LINEAR:
                put(f"n{k}.diag", self._diagonals, n.value)
            elif n.op == BIAS:
                put(f"n{k}.init", self._bias_inits, n.value)
        for s in cell.states[1:]:
            put(f"{s}.update", self._updates, ref(cell.updates[s]))
        decoded, chooser = self._replay(params)
        if decoded.fingerprint != cell.fingerprint:
            raise CellError(
                f"the cell is not in canonical form, so not a point of GraphSpace:\n{cell}"
            )
        return dict(chooser.params)

    def _number(self, cell: Cell) -> dict[int, int]:
        """The first slot of each computed node: h' in n0, then readers before operands."""
        nodes, h_new = cell.nodes, cell.updates["h"]
        leaf_h = nodes[h_new].op in LEAF_OPS
        _check_h_unread(cell)
        # Canonical order lists operands before readers, so reversed it lists readers first.
        inner = [i for i in reversed(range(len(nodes))) if nodes[i].op not in (X, STATE, ONE)]
        order = ([] if leaf_h else [h_new]) + [i for i in inner if i != h_new]
        first: dict[int, int] = {}
        used = int(leaf_h)
        for i in order:
            first[i] = used
            used += len(nodes[i].inputs) - 1 if nodes[i].op in (ADD, MUL) else 1
        if used > self._max_nodes:
            raise CellError(f"the cell needs {used} slots, more than max_nodes={self._max_nodes}")
        return first
