"""A cell's execution plan: which matrix products run when, and which pointwise nodes
fuse into one kernel between them.

Rounds: a linear map of ``x`` is round 0 (all time steps in one product before the
loop); a linear map of any other node ``n`` is round ``r(n) + 1``; a pointwise node's
round is the largest of its inputs'. Per step, product round ``k`` runs one product per
source node (the maps of one operand, concatenated), then pointwise stage ``k`` runs as
one fused kernel. Pointwise nodes are placed as late as their readers allow, so most
cells need one or two stages per step. The forward stores every nonlinearity's output, as
cuDNN stores its gates, so a stage's backward computes no transcendental and reads only
what it needs; the sums and products between are recomputed.

The plan works on a copy of the cell's nodes with a few ``copy`` nodes added, so that
every state update is a pointwise node the kernels write.

Maps of constants (``V b``, ``W tanh(b)``), and what reads them up to the first node
that reads ``x`` or a state, have one value for every step and row: the prologue
computes each once per call, outside the loop, and the loop reads it as it reads a bias
(a ``pre`` leaf), instead of multiplying a copied bias by a matrix at every step. (Maps
of other nodes that read no state, ``W (U x + b)``, stay in the loop: its products run
about as fast per FLOP as one large product would.)
"""

from __future__ import annotations

from dataclasses import dataclass

from optuna_rnn.cell import Cell
from optuna_rnn.cell.ir import (
    ADD,
    BIAS,
    LINEAR,
    ONE,
    RELU,
    SIGMOID,
    STATE,
    TANH,
    X,
    reach,
)

__all__ = ["COPY", "POINTWISE_LEAVES", "PRE", "Plan", "PlanNode", "make_plan", "products_by_round"]

COPY = "copy"
PRE = "pre"  # a vector the prologue computed (see the module docstring)
POINTWISE_LEAVES = frozenset({X, STATE, ONE, BIAS, PRE})


@dataclass(frozen=True)
class PlanNode:
    """A node of the plan graph: the cell's op, or ``copy`` (the identity)."""

    op: str
    inputs: tuple[int, ...]
    name: str | None = None


@dataclass(frozen=True)
class Product:
    """One matrix product per step: ``source`` times the stacked maps ``linears``."""

    round: int
    source: int
    linears: tuple[int, ...]


@dataclass(frozen=True)
class Plan:
    """Everything the fused backend needs to know about a cell, by plan-node index."""

    nodes: tuple[PlanNode, ...]
    states: tuple[str, ...]
    updates: dict[str, int]
    x_linears: tuple[int, ...]  # round-0 maps, in XW's column-block order
    products: tuple[Product, ...]  # per-step products, by round then source
    stages: tuple[tuple[int, ...], ...]  # pointwise nodes of each stage, topological
    exports: tuple[int, ...]  # pointwise nodes stored: updates, grad_exports, nonlinearities
    grad_exports: tuple[int, ...]  # ... read in-step outside their stage
    reads_x: bool  # a pointwise node reads raw x
    x_index: int  # the node x
    prologue: tuple[int, ...]  # cell nodes computed before the loop, in order
    pre: dict[int, int]  # pre leaf -> the cell node whose values it holds

    stored_grads: frozenset[int]  # gradients one stage writes whole (no zeroing)
    # Per product, the XW block it is folded into, or None. When each of its maps is
    # summed with a map of x and nothing else reads either (LSTM: all four gates), the
    # product accumulates into XW's blocks in the forward (one buffer, one read per gate
    # instead of two), and both maps have the sum's gradient, so its gradient is a view of
    # XW's in the backward.
    xw_blocks: tuple[int | None, ...]

    def folded(self, node: int) -> bool:
        """Whether ``node`` is a map of a product folded into XW: its value is in its XW
        partner's memory (sums skip it) and so is its gradient (no kernel stores it)."""
        return any(
            a is not None and node in p.linears for p, a in zip(self.products, self.xw_blocks)
        )

    def stage_inputs(self, k: int) -> tuple[int, ...]:
        """Nodes outside stage ``k`` that its nodes read, in node order."""
        return _inputs(self.nodes, self.stages[k])


def products_by_round(plan: Plan) -> list[list[int]]:
    """The indices of the per-step products of each round (each stage's, in order)."""
    out: list[list[int]] = [[] for _ in plan.stages]
    for p, prod in enumerate(plan.products):
        out[prod.round].append(p)
    return out


def _inputs(
    nodes: list[PlanNode] | tuple[PlanNode, ...], stage: tuple[int, ...]
) -> tuple[int, ...]:
    inside = set(stage)
    return tuple(sorted({i for n in stage for i in nodes[n].inputs} - inside))


def _hoisted(cell: Cell) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The prologue (cell nodes computed before the loop, in order) and, of them, the ones
    the loop reads: maps of nodes that read neither a state nor ``x`` (``W b``), and what
    reads them up to the first node that does. Their values are one vector per call."""
    const: list[bool] = []
    heavy: list[bool] = []
    for n in cell.nodes:
        const.append(n.op not in (STATE, X) and all(const[i] for i in n.inputs))
        heavy.append(const[-1] and (n.op == LINEAR or any(heavy[i] for i in n.inputs)))
    frontier = tuple(
        i
        for i, n in enumerate(cell.nodes)
        if heavy[i]
        and (
            i in cell.updates.values()
            or any(i in m.inputs and not heavy[j] for j, m in enumerate(cell.nodes))
        )
    )
    return tuple(sorted(reach(cell.nodes, frontier))), frontier


def _graph(
    cell: Cell, frontier: tuple[int, ...]
) -> tuple[list[PlanNode], dict[str, int], dict[int, int]]:
    """The cell's nodes, ``frontier`` nodes as ``pre`` leaves, plus copies for updates that
    no kernel writes; the pre leaves' cell nodes. (Maps of a bias or of one, which no
    kernel writes either, are all in the prologue.)"""
    nodes = [
        PlanNode(PRE, ()) if i in frontier else PlanNode(n.op, n.inputs, n.name)
        for i, n in enumerate(cell.nodes)
    ]
    updates = cell.updates
    copies: dict[int, int] = {}
    for s, u in updates.items():
        if nodes[u].op in POINTWISE_LEAVES or nodes[u].op == LINEAR:
            if u not in copies:
                nodes.append(PlanNode(COPY, (u,)))
                copies[u] = len(nodes) - 1
            updates[s] = copies[u]
    # Copies are appended after everything they read; reorder topologically anyway.
    out, updates, remap = _toposort(nodes, updates)
    return out, updates, {remap[i]: i for i in frontier}


def _toposort(
    nodes: list[PlanNode], updates: dict[str, int]
) -> tuple[list[PlanNode], dict[str, int], dict[int, int]]:
    """Nodes in topological order, keeping the leaves and what the updates read (the
    prologue's nodes drop out); the map from old indices to new."""
    order: list[int] = []
    seen: set[int] = set()

    def visit(i: int) -> None:
        if i not in seen:
            seen.add(i)
            for j in nodes[i].inputs:
                visit(j)
            order.append(i)

    for i, n in enumerate(nodes):
        if n.op in POINTWISE_LEAVES:
            visit(i)
    for u in updates.values():
        visit(u)
    remap = {old: new for new, old in enumerate(order)}
    out = [
        PlanNode(nodes[i].op, tuple(remap[j] for j in nodes[i].inputs), nodes[i].name)
        for i in order
    ]
    return out, {s: remap[u] for s, u in updates.items()}, remap


def make_plan(cell: Cell) -> Plan:
    """Rounds, products, stages and exports for ``cell``."""
    prologue, frontier = _hoisted(cell)
    nodes, updates, pre = _graph(cell, frontier)
    xi = next(i for i, n in enumerate(nodes) if n.op == X)
    rounds: list[int] = []
    for n in nodes:
        if n.op in POINTWISE_LEAVES:
            rounds.append(0)
        elif n.op == LINEAR:
            rounds.append(0 if n.inputs[0] == xi else rounds[n.inputs[0]] + 1)
        else:
            rounds.append(max(rounds[i] for i in n.inputs))
    pointwise = [i for i, n in enumerate(nodes) if n.op not in POINTWISE_LEAVES and n.op != LINEAR]
    last = max(rounds[i] for i in pointwise)
    readers: list[list[int]] = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for j in n.inputs:
            readers[j].append(i)
    stage: dict[int, int] = {}
    for i in reversed(pointwise):
        stage[i] = min([last] + [stage[r] if r in stage else rounds[r] - 1 for r in readers[i]])
    grad_exports = tuple(
        i
        for i in pointwise
        if any(nodes[r].op == LINEAR or stage[r] != stage[i] for r in readers[i])
    )
    products: dict[tuple[int, int], list[int]] = {}
    for i, n in enumerate(nodes):
        if n.op == LINEAR and n.inputs[0] != xi:
            products.setdefault((rounds[i], n.inputs[0]), []).append(i)
    stages = tuple(tuple(i for i in pointwise if stage[i] == k) for k in range(last + 1))
    # x and linear maps read by one stage and no product: that stage's backward stores
    # their whole gradient, so their buffers need no zeroing.
    readers_of = [n for k in stages for n in _inputs(nodes, k)]
    stored = frozenset(
        n
        for n in set(readers_of)
        if nodes[n].op in (X, LINEAR)
        and readers_of.count(n) == 1
        and all(s != n for _, s in products)
    )
    x_linears, xw_blocks = _x_blocks(
        nodes, readers, xi, [ls for _, ls in sorted(products.items())], stored
    )
    return Plan(
        nodes=tuple(nodes),
        states=cell.states,
        updates=updates,
        x_linears=x_linears,
        products=tuple(Product(r, s, tuple(ls)) for (r, s), ls in sorted(products.items())),
        stages=stages,
        exports=tuple(
            i
            for i in pointwise
            if i in grad_exports or i in updates.values() or nodes[i].op in (TANH, SIGMOID, RELU)
        ),
        grad_exports=grad_exports,
        reads_x=any(xi in nodes[i].inputs for i in pointwise),
        x_index=xi,
        prologue=prologue,
        pre=pre,
        stored_grads=stored,
        xw_blocks=xw_blocks,
    )


def _x_blocks(
    nodes: list[PlanNode],
    readers: list[list[int]],
    xi: int,
    products: list[list[int]],
    stored: frozenset[int],
) -> tuple[tuple[int, ...], tuple[int | None, ...]]:
    """XW's block order, and the block each product folds into (see ``Plan.xw_blocks``)."""
    x_maps = [i for i, n in enumerate(nodes) if n.op == LINEAR and n.inputs[0] == xi]

    def partner(linear: int) -> int | None:
        if linear not in stored or len(readers[linear]) != 1 or nodes[readers[linear][0]].op != ADD:
            return None
        ins = nodes[readers[linear][0]].inputs
        return next((i for i in ins if i in x_maps and i in stored and len(readers[i]) == 1), None)

    order: list[int] = []
    blocks: list[int | None] = []
    for linears in products:
        partners = [partner(i) for i in linears]
        fresh = (
            None not in partners
            and len(set(partners)) == len(partners)
            and not set(partners) & set(order)
        )
        blocks.append(len(order) if fresh else None)
        order += partners if fresh else []
    return tuple(order + [i for i in x_maps if i not in order]), tuple(blocks)
