"""Pointwise programs: the straight-line code of one stage, forward and backward.

A :class:`Program` is SSA over one element ``(b, j)`` of the batch-by-hidden grid: it
loads values from its arguments (memory locations named by :data:`Loc` keys), computes,
and stores or accumulates. The backward program runs reverse-mode differentiation
symbolically over the stage's nodes, loading the values the forward stored (every
nonlinearity's output) and recomputing, on demand, only the sums and products its
derivatives read. Emitters turn a program into C, Triton or plain torch; none of them
sees anything but this IR.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from optuna_rnn.cell.ir import ADD, MUL, ONE, RELU, SIGMOID, SUB, TANH
from optuna_rnn.kernels.plan import COPY, Plan

__all__ = ["Instr", "Loc", "Program", "backward_program", "forward_program"]

# A memory location, resolved per time step by the layout:
#   ("val", node)   the node's forward value      ("grad", node)  its gradient accumulator
#   ("carry", s)    gradient of state s from the next step       ("dout",)  d loss / d h_t
#   ("state_out", s) where state s's next value is stored (for a second state sharing one node)
Loc = tuple

UNARY = (TANH, SIGMOID, RELU, "neg", "dtanh", "dsigmoid", "drelu")
BINARY = (ADD, SUB, MUL)


@dataclass(frozen=True)
class Instr:
    """``out = op(args)``; for load/store/accum/zero the first arg is an argument index."""

    op: str
    out: int | None
    args: tuple = ()


@dataclass
class Program:
    """Straight-line code over one element, with its memory arguments in order."""

    name: str
    args: list[Loc] = field(default_factory=list)
    body: list[Instr] = field(default_factory=list)
    _vars: int = 0

    def arg(self, loc: Loc) -> int:
        if loc not in self.args:
            self.args.append(loc)
        return self.args.index(loc)

    def emit(self, op: str, *args: object) -> int:
        self._vars += 1
        self.body.append(Instr(op, self._vars, tuple(args)))
        return self._vars

    def load(self, loc: Loc) -> int:
        return self.emit("load", self.arg(loc))

    def store(self, loc: Loc, v: int, *, accumulate: bool = False) -> None:
        self.body.append(Instr("accum" if accumulate else "store", None, (self.arg(loc), v)))

    def zero(self, loc: Loc) -> None:
        self.body.append(Instr("zero", None, (self.arg(loc),)))


def _compute(prog: Program, plan: Plan, n: int, value: Callable[[int], int]) -> int:
    """Emit node ``n`` of a stage from its inputs' values (``value(i)`` gives them); a
    sum skips maps folded into their XW partner, whose memory already holds them."""
    node = plan.nodes[n]
    ins = [value(i) for i in node.inputs if not (node.op == ADD and plan.folded(i))]
    if node.op == COPY:
        return ins[0]
    if node.op in (ADD, MUL):
        acc = ins[0]
        for other in ins[1:]:
            acc = prog.emit(node.op, acc, other)
        return acc
    if node.op == SUB:
        return prog.emit(SUB, ins[0], ins[1])
    return prog.emit(node.op, ins[0])


def _load_input(prog: Program, plan: Plan, e: int) -> int:
    return prog.emit("const", 1.0) if plan.nodes[e].op == ONE else prog.load(("val", e))


def _recompute(prog: Program, plan: Plan, k: int) -> dict[int, int]:
    """Load stage ``k``'s inputs and compute its nodes; node -> SSA var."""
    val: dict[int, int] = {}
    for e in plan.stage_inputs(k):
        if not plan.folded(e):
            val[e] = _load_input(prog, plan, e)
    for n in plan.stages[k]:
        val[n] = _compute(prog, plan, n, val.__getitem__)
    return val


def forward_program(plan: Plan, k: int) -> Program:
    """Stage ``k`` forward: compute its nodes, store the ones read elsewhere."""
    prog = Program(f"fwd{k}")
    val = _recompute(prog, plan, k)
    for n in plan.stages[k]:
        if n in plan.exports:
            prog.store(("val", n), val[n])
        sharing = [s for s in plan.states if plan.updates[s] == n]
        for s in sharing[1:]:
            prog.store(("state_out", s), val[n])
    return prog


def backward_program(plan: Plan, k: int) -> Program:
    """Stage ``k`` backward: push gradients from its outputs to its inputs, reading stored
    values and recomputing the rest on first use."""
    prog = Program(f"bwd{k}")
    inside = set(plan.stages[k])
    val: dict[int, int] = {}

    def value(n: int) -> int:
        if n not in val:
            stored = n not in inside or n in plan.exports
            val[n] = _load_input(prog, plan, n) if stored else _compute(prog, plan, n, value)
        return val[n]

    grad: dict[int, int] = {}

    def add_grad(node: int, g: int) -> None:
        grad[node] = g if node not in grad else prog.emit(ADD, grad[node], g)

    for n in plan.stages[k]:
        if n in plan.grad_exports:
            add_grad(n, prog.load(("grad", n)))
            prog.zero(("grad", n))
        for s in plan.states:
            if plan.updates[s] == n:
                add_grad(n, prog.load(("carry", s)))
                prog.zero(("carry", s))
                if s == "h":
                    add_grad(n, prog.load(("dout",)))
    for n in reversed(plan.stages[k]):
        if n not in grad:
            continue
        node, g = plan.nodes[n], grad[n]
        ins = node.inputs
        if node.op in (COPY, ADD):
            for i in ins:
                add_grad(i, g)
        elif node.op == SUB:
            add_grad(ins[0], g)
            add_grad(ins[1], prog.emit("neg", g))
        elif node.op == MUL:
            for p, i in enumerate(ins):
                term = g
                for q, other in enumerate(ins):
                    if q != p:
                        term = prog.emit(MUL, term, value(other))
                add_grad(i, term)
        else:
            local = prog.emit("d" + node.op, value(n))
            add_grad(ins[0], prog.emit(MUL, g, local))
    for e in plan.stage_inputs(k):
        if plan.nodes[e].op == ONE or plan.folded(e):
            continue
        if e in plan.stored_grads:
            prog.store(("grad", e), grad[e] if e in grad else prog.emit("const", 0.0))
        elif e in grad:
            prog.store(("grad", e), grad[e], accumulate=True)
    return prog
