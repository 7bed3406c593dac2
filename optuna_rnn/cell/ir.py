"""The cell IR: an immutable, canonical DAG of vector operations.

Every node carries a vector of the hidden width (the input ``x`` carries the input width).
Leaves are the input ``x``, the previous states (``h`` first, ``c``...), the constant
``1`` and learned bias vectors. Inner nodes are linear maps (each its own learned matrix,
with an optional diagonal offset ``a`` for the paper's ``Linear(a, x)``), n-ary ``add``
and ``mul``, binary ``sub``, and the activations ``tanh``, ``sigmoid`` and ``relu``.

A :class:`Cell` is always canonical: identities removed, nested sums and products
flattened, commutative operands sorted, shared sub-expressions merged, dead nodes and
states dropped, nodes in a canonical topological order. Its :attr:`Cell.fingerprint` is a
Weisfeiler-Lehman style hash over inputs *and* consumers (as NAS-Bench-101 hashes its
graphs), so it sees sharing as well as structure and ignores every name.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTIVATIONS",
    "Cell",
    "CellError",
    "GraphBuilder",
    "Node",
    "fresh_name",
    "node_budget",
    "reach",
]

X = "x"
STATE = "state"
ONE = "one"
BIAS = "bias"
LINEAR = "linear"
ADD = "add"
SUB = "sub"
MUL = "mul"
TANH = "tanh"
SIGMOID = "sigmoid"
RELU = "relu"
IDENTITY = "identity"

# The op categories, declared here once (the parser, mutations and spaces read these).
LEAF_OPS = frozenset({X, STATE, ONE, BIAS})
PARAM_OPS = frozenset({LINEAR, BIAS})
ACTIVATIONS = (TANH, SIGMOID, RELU)
ELEMENTWISE = (ADD, MUL, SUB)
COMMUTATIVE = frozenset({ADD, MUL})
OPS = LEAF_OPS | {LINEAR, ADD, SUB, MUL, IDENTITY} | set(ACTIVATIONS)

MAX_STATES = 3
DEFAULT_MAX_NODES = 64
FORMAT_VERSION = 1
# Longest name of a weight, bias, state or intermediate, in equations and in dicts alike.
MAX_NAME = 1000
# Largest magnitude of a bias's initial value or a diagonal offset: parameters are
# float32 by default, and a larger value would overflow when the layer is built.
MAX_VALUE = 3.4028234663852886e38  # the largest finite float32

# Words that cannot name a weight, bias, state or intermediate.
RESERVED = frozenset({"x", "tanh", "sigm", "sigmoid", "relu", "identity", "id", "linear", "init"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CellError(ValueError):
    """A cell description that is not a valid cell; the message names what is wrong."""


@dataclass(frozen=True)
class Node:
    """One node of a cell graph.

    ``name`` is the state name (``state``), the weight name (``linear``), the bias name
    (``bias``) and ``None`` otherwise. ``value`` is a bias's initial value or a linear
    map's diagonal offset ``a``; zero elsewhere.
    """

    op: str
    inputs: tuple[int, ...] = ()
    name: str | None = None
    value: float = 0.0


def _digest(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


def node_budget(max_nodes: int) -> int:
    """How many nodes a description may spell before canonicalisation (leaves, repeats
    and dead nodes included) when the cell may have ``max_nodes``; more is refused
    before any work."""
    return 8 * max_nodes + 16


def _check_name(name: object, what: str) -> str:
    if isinstance(name, str) and len(name) > MAX_NAME:
        raise CellError(
            f"{what} name {name[:20]!r}... is {len(name)} characters, more than {MAX_NAME}"
        )
    if not isinstance(name, str) or not _IDENT.match(name) or name in RESERVED:
        raise CellError(f"{what} name {name!r} is not a usable identifier")
    return name


class GraphBuilder:
    """Builds a graph with the canonical rewrites applied as nodes are added.

    Nodes are hash-consed: adding an existing computation returns the existing node, so
    shared sub-expressions merge. A weight name denotes one linear map of one operand; a
    bias name denotes one bias vector.
    """

    def __init__(self) -> None:
        self.nodes: list[Node] = []
        self.labels: dict[int, str] = {}
        self._index: dict[tuple, int] = {}
        self._kinds: dict[str, str] = {}
        self._values: dict[str, float] = {}

    def _claim(self, name: str, kind: str) -> None:
        """One name, one thing: a weight, a bias and a state never share a name."""
        _check_name(name, kind)
        other = self._kinds.setdefault(name, kind)
        if other != kind:
            raise CellError(f"{name!r} names both a {other} and a {kind}")

    def _intern(self, key: tuple, node: Node) -> int:
        found = self._index.get(key)
        if found is not None:
            return found
        self.nodes.append(node)
        self._index[key] = len(self.nodes) - 1
        return len(self.nodes) - 1

    def x(self) -> int:
        return self._intern((X,), Node(X))

    def one(self) -> int:
        return self._intern((ONE,), Node(ONE))

    def state(self, name: str) -> int:
        self._claim(name, "state")
        return self._intern((STATE, name), Node(STATE, (), name))

    def bias(self, name: str, init: float | None = None) -> int:
        """The bias vector ``name``; ``init`` sets (or must agree with) its initial value."""
        self._claim(name, "bias")
        if not name.startswith("b"):
            raise CellError(f"bias name {name!r} must start with 'b'")
        value = self._value((BIAS, name), init, f"initial value of bias {name!r}")
        return self._intern((BIAS, name), Node(BIAS, (), name, value))

    def linear(self, name: str, operand: int, diag: float | None = None) -> int:
        """The linear map ``name`` of ``operand``: ``(W + diag * I) operand``."""
        self._claim(name, "weight")
        found = self._index.get((LINEAR, name))
        if found is not None and self.nodes[found].inputs != (operand,):
            raise CellError(
                f"weight {name!r} is applied to two different operands; weights are "
                "not shared, so give each linear map its own name"
            )
        value = self._value((LINEAR, name), diag, f"diagonal offset of weight {name!r}")
        return self._intern((LINEAR, name), Node(LINEAR, (operand,), name, value))

    def _value(self, key: tuple[str, str], given: float | None, what: str) -> float:
        """The value of a bias or weight: set once, by any of its uses (``b`` and ``b[1]``
        in either order are one bias with initial value 1)."""
        name = key[1]
        if given is None:
            return self._values.get(name, 0.0)
        value = _finite(given, what)
        old = self._values.setdefault(name, value)
        if old != value:
            raise CellError(f"{what} is given twice, {old:g} and {value:g}")
        if key in self._index:  # an earlier use left the default: give it the value
            n = self.nodes[self._index[key]]
            self.nodes[self._index[key]] = Node(n.op, n.inputs, n.name, value)
        return value

    def op(self, op: str, *inputs: int) -> int:
        """An elementwise operation or activation of existing nodes."""
        if op == IDENTITY:
            if len(inputs) != 1:
                raise CellError("identity takes one operand")
            return inputs[0]
        if op in ACTIVATIONS:
            if len(inputs) != 1:
                raise CellError(f"{op} takes one operand")
            return self._intern((op, inputs), Node(op, tuple(inputs)))
        if op == SUB:
            if len(inputs) != 2:
                raise CellError("subtract takes two operands")
            return self._intern((op, inputs), Node(op, tuple(inputs)))
        if op in COMMUTATIVE:
            flat: list[int] = []
            for i in inputs:
                flat.extend(self.nodes[i].inputs if self.nodes[i].op == op else (i,))
            if op == MUL and len(flat) >= 1:
                # x * 1 = x: drop the constant from products (LSTM-f writes f = 1).
                kept = [i for i in flat if self.nodes[i].op != ONE]
                if len(kept) <= 1:
                    return kept[0] if kept else flat[0]
                flat = kept
            if len(flat) < 2:
                raise CellError(f"{op} takes at least two operands")
            ordered = tuple(sorted(flat))
            return self._intern((op, ordered), Node(op, ordered))
        raise CellError(f"unknown operation {op!r}")

    def add(self, node: Node, inputs: tuple[int, ...] | list[int]) -> int:
        """Add a copy of ``node`` (from another graph) that reads ``inputs`` of this one."""
        if node.op == X:
            return self.x()
        if node.op == ONE:
            return self.one()
        if node.op == STATE:
            return self.state(node.name)
        if node.op == BIAS:
            return self.bias(node.name, node.value)
        if node.op == LINEAR:
            return self.linear(node.name, inputs[0], node.value)
        return self.op(node.op, *inputs)

    def label(self, node: int, name: str) -> None:
        """Give an intermediate node a printable name (the first name given wins)."""
        if self.nodes[node].op not in LEAF_OPS and node not in self.labels:
            self.labels[node] = name


def fresh_name(prefix: str, taken: set[str]) -> str:
    """``prefix1``, ``prefix2``...: the first not in ``taken``, which it joins."""
    k = 1
    while f"{prefix}{k}" in taken:
        k += 1
    taken.add(f"{prefix}{k}")
    return f"{prefix}{k}"


def _finite(value: float, what: str) -> float:
    """``value`` as a float within :data:`MAX_VALUE`, ``-0.0`` as ``0.0`` (one cell, one
    spelling: ``W[-0]`` is ``W``)."""
    try:
        value = float(value)
    except (TypeError, ValueError, OverflowError):
        shown = (
            repr(value)
            if not isinstance(value, int)
            else f"an integer of {value.bit_length()} bits"
        )
        raise CellError(
            f"{what} must be a number of at most {MAX_VALUE:.6g} in magnitude, got {shown}"
        ) from None
    if not math.isfinite(value):
        raise CellError(f"{what} must be finite, got {value!r}")
    if abs(value) > MAX_VALUE:
        raise CellError(
            f"{what} is {value:g}, beyond {MAX_VALUE:.6g}, the largest float32: parameters could not hold it"
        )
    return value + 0.0


class Cell:
    """An immutable recurrent cell: a canonical DAG plus the node each state becomes.

    Build one with :meth:`Cell.parse` (equations), :meth:`Cell.from_dict` (storage form),
    :func:`optuna_rnn.zoo.get` or :func:`optuna_rnn.mutate`. Two cells are equal when
    their fingerprints are.
    """

    __slots__ = ("_fingerprint", "_hashes", "_labels", "_nodes", "_updates")

    def __init__(
        self,
        nodes: Iterable[Node],
        updates: Mapping[str, int],
        labels: Mapping[int, str] | None = None,
        *,
        max_nodes: int = DEFAULT_MAX_NODES,
    ) -> None:
        nodes = list(nodes)
        labels = dict(labels or {})
        _check_structure(nodes, updates)
        nodes, updates, labels = _prune(nodes, dict(updates), labels)
        hashes = _wl_hashes(nodes, updates)
        nodes, updates, labels, hashes = _canonical_order(nodes, updates, labels, hashes)
        inner = sum(1 for n in nodes if n.op not in (X, STATE, ONE))
        if inner > max_nodes:
            raise CellError(f"the cell has {inner} nodes, more than the limit of {max_nodes}")
        self._nodes = tuple(nodes)
        self._updates = updates
        self._labels = _clean_labels(nodes, labels, updates)
        self._hashes = tuple(hashes)
        self._fingerprint = _digest(sorted(hashes), [(s, hashes[i]) for s, i in updates.items()])

    # ----------------------------------------------------------------- construction
    @classmethod
    def parse(cls, text: str, *, max_nodes: int = DEFAULT_MAX_NODES) -> Cell:
        """Parse equations (see README, "The cell language") into a cell."""
        from optuna_rnn.cell.parse import parse

        return parse(text, max_nodes=max_nodes)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, max_nodes: int = DEFAULT_MAX_NODES) -> Cell:
        """Rebuild a cell from :meth:`to_dict`'s JSON-safe form, validating everything."""
        if not isinstance(data, Mapping):
            raise CellError(f"a cell dict must be a mapping, got {type(data).__name__}")
        if data.get("version") != FORMAT_VERSION:
            raise CellError(f"unsupported cell format version {data.get('version')!r}")
        raw_nodes, raw_states = data.get("nodes"), data.get("states")
        if not isinstance(raw_nodes, list) or not isinstance(raw_states, Mapping):
            raise CellError("a cell dict needs a 'nodes' list and a 'states' mapping")
        budget = node_budget(max_nodes)
        if len(raw_nodes) > budget:
            raise CellError(
                f"a cell dict of at most {max_nodes} nodes lists at most {budget}, got {len(raw_nodes)}"
            )
        if len(raw_states) > MAX_STATES:
            raise CellError(f"a cell has at most {MAX_STATES} states, got {len(raw_states)}")
        builder = GraphBuilder()
        ids: list[int] = []
        for k, raw in enumerate(raw_nodes):
            if not isinstance(raw, Mapping):
                raise CellError(f"node {k} is not a mapping")
            op, name, value = raw.get("op"), raw.get("name"), raw.get("value", 0.0)
            inputs = raw.get("inputs", [])
            if (
                not isinstance(inputs, list)
                or len(inputs) > budget
                or not all(
                    isinstance(i, int) and not isinstance(i, bool) and 0 <= i < k for i in inputs
                )
            ):
                raise CellError(f"node {k} must read only nodes listed before it, got {inputs!r}")
            args = [ids[i] for i in inputs]
            if not isinstance(op, str) or op not in OPS:
                raise CellError(f"node {k}: unknown operation {op!r}")
            if op in LEAF_OPS and args:
                raise CellError(f"node {k}: a {op} node has no inputs")
            if op == LINEAR and len(args) != 1:
                raise CellError(f"node {k}: a linear map reads exactly one node")
            ids.append(builder.add(Node(op, (), name, value), args))
            label = raw.get("label")
            if label is not None:
                builder.label(ids[-1], _check_name(label, "intermediate"))
        updates = {}
        for state, idx in raw_states.items():
            if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < len(ids):
                raise CellError(f"state {state!r} names no node: {idx!r}")
            updates[_check_name(state, "state")] = ids[idx]
        return cls(builder.nodes, updates, builder.labels, max_nodes=max_nodes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe form that :meth:`from_dict` reads back to an equal cell."""
        out = []
        for i, n in enumerate(self._nodes):
            d: dict[str, Any] = {"op": n.op}
            if n.inputs:
                d["inputs"] = list(n.inputs)
            if n.name is not None:
                d["name"] = n.name
            if n.value:
                d["value"] = n.value
            if i in self._labels:
                d["label"] = self._labels[i]
            out.append(d)
        return {"version": FORMAT_VERSION, "nodes": out, "states": dict(self._updates)}

    def builder(self) -> GraphBuilder:
        """A builder pre-filled with this cell's nodes (indices kept), for rewriting it."""
        b = GraphBuilder()
        for i, n in enumerate(self._nodes):
            b.add(n, n.inputs)
            assert len(b.nodes) == i + 1, "a canonical cell has no duplicate nodes"
        b.labels.update(self._labels)
        return b

    # ------------------------------------------------------------------- inspection
    @property
    def nodes(self) -> tuple[Node, ...]:
        """Nodes in canonical topological order; inputs always precede their readers."""
        return self._nodes

    @property
    def states(self) -> tuple[str, ...]:
        """State names, ``h`` first and the rest sorted: ``("h",)``, ``("h", "c")``."""
        return tuple(self._updates)

    @property
    def updates(self) -> dict[str, int]:
        """For each state (in :attr:`states` order) the node that becomes its next value."""
        return dict(self._updates)

    @property
    def labels(self) -> dict[int, str]:
        """Printable names of intermediate nodes, by node index."""
        return dict(self._labels)

    @property
    def fingerprint(self) -> str:
        """A canonical hash: equal for every spelling of one computation."""
        return self._fingerprint

    @property
    def node_hashes(self) -> tuple[str, ...]:
        """Per-node structural hashes (position-independent), used for canonical order."""
        return self._hashes

    def index(self, op: str, name: str | None = None) -> int | None:
        """Index of the first node with this op (and name), or ``None``."""
        for i, n in enumerate(self._nodes):
            if n.op == op and (name is None or n.name == name):
                return i
        return None

    @property
    def reads_raw_x(self) -> bool:
        """Whether ``x`` feeds anything but a linear map (then widths must agree)."""
        xi = self.index(X)
        return any(xi in n.inputs for n in self._nodes if n.op != LINEAR)

    @property
    def learnable(self) -> bool:
        """Whether the cell has a weight or a bias. One without (``h' = tanh(x) * h``, which
        mutations can make) is a valid cell with a fingerprint and mutants, but nothing can
        train it: :class:`~optuna_rnn.CellRNN` refuses it."""
        return any(n.op in PARAM_OPS for n in self._nodes)

    @property
    def num_inner_nodes(self) -> int:
        """Nodes other than ``x``, the states and the constant 1 (the size limit counts these)."""
        return sum(1 for n in self._nodes if n.op not in (X, STATE, ONE))

    def consumers(self) -> list[list[int]]:
        """For each node, the nodes that read it."""
        out: list[list[int]] = [[] for _ in self._nodes]
        for i, n in enumerate(self._nodes):
            for j in n.inputs:
                out[j].append(i)
        return out

    # ----------------------------------------------------------------- dunder
    def __str__(self) -> str:
        from optuna_rnn.cell.printer import to_equations

        return to_equations(self)

    def __repr__(self) -> str:
        fp = self._fingerprint[:12]
        return f"Cell(states={self.states}, nodes={len(self._nodes)}, fingerprint={fp})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cell) and other._fingerprint == self._fingerprint

    def __hash__(self) -> int:
        return hash(self._fingerprint)


# ---------------------------------------------------------------------- canonical form
def _check_structure(nodes: list[Node], updates: Mapping[str, int]) -> None:
    for i, n in enumerate(nodes):
        if any(not 0 <= j < i for j in n.inputs):
            raise CellError(f"node {i} ({n.op}) reads a node not before it")
    if "h" not in updates:
        raise CellError("the cell has no update for h: write h' = ...")
    if len(updates) > MAX_STATES:
        raise CellError(f"a cell has at most {MAX_STATES} states, got {sorted(updates)}")
    for s, i in updates.items():
        if not 0 <= i < len(nodes):
            raise CellError(f"the update of {s!r} names no node")


def reach(nodes: Sequence[Node], roots: Iterable[int]) -> set[int]:
    """``roots`` and every node they read, directly or not."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        i = stack.pop()
        if i not in seen:
            seen.add(i)
            stack.extend(nodes[i].inputs)
    return seen


def _prune(
    nodes: list[Node], updates: dict[str, int], labels: dict[int, str]
) -> tuple[list[Node], dict[str, int], dict[int, str]]:
    """Drop states that never reach h and nodes that reach no live update; validate."""
    live_states = {"h"}
    frontier = ["h"]
    while frontier:
        s = frontier.pop()
        for i in reach(nodes, [updates[s]]):
            n = nodes[i]
            if n.op == STATE and n.name not in live_states:
                if n.name not in updates:
                    raise CellError(
                        f"state {n.name!r} is read but has no update: write {n.name}' = ..."
                    )
                live_states.add(n.name)
                frontier.append(n.name)
    updates = {s: updates[s] for s in ["h"] + sorted(live_states - {"h"})}
    for s, i in updates.items():
        reached = reach(nodes, [i])
        if not any(nodes[j].op in (X, STATE) for j in reached):
            raise CellError(f"the update of {s}' ignores x and every state")
    keep = sorted(reach(nodes, updates.values()))
    if not any(nodes[i].op == X for i in keep):
        raise CellError("the cell never reads its input x")
    remap = {old: new for new, old in enumerate(keep)}
    new_nodes = [
        Node(nodes[i].op, tuple(remap[j] for j in nodes[i].inputs), nodes[i].name, nodes[i].value)
        for i in keep
    ]
    return (
        new_nodes,
        {s: remap[i] for s, i in updates.items()},
        {remap[i]: lab for i, lab in labels.items() if i in remap},
    )


def _wl_hashes(nodes: list[Node], updates: Mapping[str, int]) -> list[str]:
    """Weisfeiler-Lehman refinement over inputs (ordered where order matters) and consumers."""
    consumers: list[list[tuple[int, object]]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for pos, j in enumerate(n.inputs):
            consumers[j].append((i, "*" if n.op in COMMUTATIVE else pos))
    outputs: list[list[str]] = [[] for _ in nodes]
    for s, i in updates.items():
        outputs[i].append(s)

    def label(n: Node) -> str:
        if n.op == STATE:
            return f"state:{n.name}"
        if n.op in PARAM_OPS:
            return f"{n.op}:{n.value!r}"
        return n.op

    # Bottom-up (Merkle) hashes first: exact for trees and cheap.
    h: list[str] = []
    for n in nodes:
        ins = [h[j] for j in n.inputs]
        if n.op in COMMUTATIVE:
            ins.sort()
        h.append(_digest(label(n), ins))
    classes = len(set(h))
    for _ in range(len(nodes)):
        new = []
        for i, n in enumerate(nodes):
            ins = [h[j] for j in n.inputs]
            if n.op in COMMUTATIVE:
                ins.sort()
            outs = sorted(f"{h[c]}:{pos}" for c, pos in consumers[i])
            new.append(_digest(h[i], ins, outs, sorted(outputs[i])))
        h = new
        if len(set(h)) == classes:
            break
        classes = len(set(h))
    return h


def _canonical_order(
    nodes: list[Node], updates: dict[str, int], labels: dict[int, str], hashes: list[str]
) -> tuple[list[Node], dict[str, int], dict[int, str], list[str]]:
    depth: list[int] = []
    for n in nodes:
        depth.append(1 + max((depth[j] for j in n.inputs), default=-1))
    leaf_rank = {X: 0, STATE: 1, ONE: 2, BIAS: 3}
    state_rank = {s: k for k, s in enumerate(updates)}

    def key(i: int) -> tuple:
        n = nodes[i]
        return (depth[i], leaf_rank.get(n.op, 4), state_rank.get(n.name, 0), hashes[i], i)

    order = sorted(range(len(nodes)), key=key)
    remap = {old: new for new, old in enumerate(order)}
    new_nodes = []
    for old in order:
        n = nodes[old]
        ins = tuple(remap[j] for j in n.inputs)
        if n.op in COMMUTATIVE:
            ins = tuple(sorted(ins))
        new_nodes.append(Node(n.op, ins, n.name, n.value))
    return (
        new_nodes,
        {s: remap[i] for s, i in updates.items()},
        {remap[i]: lab for i, lab in labels.items()},
        [hashes[i] for i in order],
    )


def _clean_labels(
    nodes: tuple[Node, ...] | list[Node], labels: dict[int, str], states: Iterable[str]
) -> dict[int, str]:
    """Keep labels that are unique and collide with no weight, bias or state name."""
    taken = {n.name for n in nodes if n.name is not None} | set(states)
    out: dict[int, str] = {}
    for i in sorted(labels):
        lab = labels[i]
        if nodes[i].op in LEAF_OPS or lab in taken or not _IDENT.match(lab) or lab in RESERVED:
            continue
        taken.add(lab)
        out[i] = lab
    return out
