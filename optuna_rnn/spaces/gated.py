"""GatedSpace: the gate-wiring space of the LSTM/GRU family.

Decisions, in the order a trial makes them (each parameter named ``prefix + name``; a
parameter exists only when the cell uses it):

``update``
    how the state is updated: ``replace`` (h' = n, the Tanh RNN), ``interpolate_old``
    (h' = z * h + (1 - z) * n: z gates the old state, GRU), ``interpolate_new``
    (h' = z * n + (1 - z) * h: z gates the candidate, MUT1-3 and MGU) or ``memory``
    (an LSTM memory cell c' = f * c + i * j, h' = o * act(c')).
``<part>.reads``, ``<part>.x``, ``<part>.h``, ``<part>.act``
    for the candidate and each gate present: which of x and h it reads, how each enters
    its sum (``linear`` W s, ``diagonal`` b * s, ``identity`` s, ``tanh`` tanh(s),
    ``linear_tanh`` W tanh(s)), and its nonlinearity. Each part has its own bias; the
    candidate always reads x, so every point is a valid cell.
``forget_bias``
    the initial bias of the gate that keeps the old state: f, or z with
    ``interpolate_old``; with ``interpolate_new`` the old state is kept by 1 - z, so z's
    bias starts at minus this value.
``reset``, ``reset_at`` (interpolating updates whose candidate reads h)
    a reset gate r (``gate``), z used as the reset gate too (``update_gate``, MGU) or
    none; applied to h ``before`` the candidate's map of h (W (r * h), GRU) or ``after``
    it (r * (W h + b), PyTorch's GRU).
``forget``, ``input_gate``, ``output_gate``, ``peepholes``, ``output_act`` (``memory``)
    the forget gate is a gate, absent (f = 1) or coupled to the input gate (f = 1 - j,
    CIFG); input and output gates present or not (j = 1, o = 1); peepholes (diagonal
    weights from c to the input and forget gates and from c' to the output gate); the
    activation of c' in h'.

Parts: ``update_gate`` z, ``reset_gate`` r, ``candidate`` (n; i in a memory cell),
``input_gate`` j, ``forget_gate`` f, ``output_gate`` o.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from optuna_rnn.cell.ir import (
    ADD,
    IDENTITY,
    MUL,
    RELU,
    SIGMOID,
    SUB,
    TANH,
    Cell,
    CellError,
    GraphBuilder,
)
from optuna_rnn.spaces.base import CellSpace, Chooser, check_numbers, check_options
from optuna_rnn.spaces.search import search_params

__all__ = ["GatedSpace"]

UPDATES = ("replace", "interpolate_old", "interpolate_new", "memory")
THROUGH = ("linear", "diagonal", "identity", "tanh", "linear_tanh")
ACTIVATIONS = (TANH, SIGMOID, RELU, IDENTITY)
RESETS = ("none", "gate", "update_gate")
RESET_AT = ("before", "after")
FORGET = ("gate", "none", "coupled")
_GATE_READS = ("x", "h", "xh")
_CANDIDATE_READS = ("x", "xh")
_LETTER = {
    "update_gate": "z",
    "reset_gate": "r",
    "input_gate": "j",
    "forget_gate": "f",
    "output_gate": "o",
}


class GatedSpace(CellSpace):
    """The gate-wiring space: which gates, what they read, how the state is updated.

    Points include the zoo's tanh, lstm, lstm_f, lstm_i, lstm_o, lstm_b, gru, gru_torch,
    mut1-3, mgu, ugrnn, indrnn and Greff et al.'s peephole variants (peephole, nig, nfg,
    nog, niaf, noaf, cifg). Every point is a valid cell, so :meth:`suggest` never raises.
    Each option below defaults to every allowed choice; narrow one to shrink the space (an
    option left with one choice is not a parameter).

    Args:
        updates: state updates, from ``UPDATES``.
        through: how a part reads a source, from ``THROUGH``.
        gate_activations: a gate's nonlinearity.
        candidate_activations: the candidate's nonlinearity.
        output_activations: the activation of c' in h' (memory cells).
        forget_biases: initial values of the forget bias (see the module docs).
        prefix: the prefix of every parameter name.
    """

    def __init__(
        self,
        *,
        updates: Sequence[str] = UPDATES,
        through: Sequence[str] = THROUGH,
        gate_activations: Sequence[str] = (SIGMOID, TANH),
        candidate_activations: Sequence[str] = ACTIVATIONS,
        output_activations: Sequence[str] = (TANH, IDENTITY),
        forget_biases: Sequence[float] = (0.0, 1.0),
        prefix: str = "cell.",
    ) -> None:
        super().__init__(prefix=prefix)
        self._updates = check_options("updates", updates, UPDATES)
        self._through = check_options("through", through, THROUGH)
        self._gate_acts = check_options("gate_activations", gate_activations, ACTIVATIONS)
        self._candidate_acts = check_options(
            "candidate_activations", candidate_activations, ACTIVATIONS
        )
        self._output_acts = check_options("output_activations", output_activations, ACTIVATIONS)
        self._forget_biases = check_numbers("forget_biases", forget_biases)

    def _program(self, choose: Chooser) -> Cell:
        return _Wiring(self, choose).cell()

    def encode(self, cell: Cell) -> dict[str, Any]:
        """The params of ``cell``, found by a search over the decisions that prunes every
        part the cell lacks; CellError when the cell is not a point of this space."""
        if not isinstance(cell, Cell):
            raise CellError(f"expected a Cell, got {type(cell).__name__}")
        if not set(cell.states) <= {"h", "c"}:
            raise CellError(f"the cell is not a point of GatedSpace: it has states {cell.states}")
        return search_params(self._program, cell, prefix=self.prefix, space="GatedSpace")


class _Wiring:
    """One run of the GatedSpace program: builds the cell as the decisions come."""

    def __init__(self, space: GatedSpace, choose: Chooser) -> None:
        self.s = space
        self.choose = choose
        self.b = GraphBuilder()
        self._peepholes: bool | None = None

    def cell(self) -> Cell:
        b = self.b
        update = self.choose("update", self.s._updates)
        if update == "memory":
            c_new = self._memory()
            return self._finish({"h": self._output(c_new), "c": c_new})
        if update == "replace":
            return self._finish({"h": self._candidate("n")})
        forget_bias = self.choose("forget_bias", self.s._forget_biases)
        z_bias = forget_bias if update == "interpolate_old" else 0.0 - forget_bias
        z = self._gate("update_gate", bias=z_bias)
        n = self._candidate("n", z)
        h = b.state("h")
        keep, write = (z, b.op(SUB, b.one(), z))
        if update == "interpolate_new":
            keep, write = write, keep
        return self._finish({"h": b.op(ADD, b.op(MUL, keep, h), b.op(MUL, write, n))})

    def _finish(self, updates: dict[str, int]) -> Cell:
        for node in updates.values():
            self.choose.check(self.b, node)
        return Cell(self.b.nodes, updates, self.b.labels)

    # ------------------------------------------------------------------ parts
    def _term(self, part: str, letter: str, source: str, operand: int) -> int:
        """How ``part`` (named ``letter`` in weight names) reads ``operand``: x or h, maybe reset."""
        through = self.choose(f"{part}.{source}", self.s._through)
        b = self.b
        if through == "linear":
            term = b.linear(f"W{source}{letter}", operand)
        elif through == "diagonal":
            term = b.op(MUL, b.bias(f"bd{source}{letter}"), operand)
        elif through == "identity":
            term = operand
        elif through == "tanh":
            term = b.op(TANH, operand)
        else:
            term = b.linear(f"W{source}{letter}", b.op(TANH, operand))
        self.choose.check(b, term)
        return term

    def _activate(
        self, part: str, label: str, total: int, acts: tuple[str, ...], absorbable: bool = False
    ) -> int:
        """act(total); ``absorbable``: an identity act leaves a sum that c' may flatten."""
        self.choose.check(self.b, total, absorbable=absorbable)
        node = self.b.op(self.choose(f"{part}.act", acts), total)
        self.choose.check(self.b, node, absorbable=absorbable)
        self.b.label(node, label)
        return node

    def _gate(self, part: str, *, bias: float = 0.0, peep: int | None = None) -> int:
        """A gate: act(terms of x and h [+ b * peep] + b)."""
        b = self.b
        letter = _LETTER[part]
        reads = self.choose(f"{part}.reads", _GATE_READS)
        terms = [
            self._term(part, letter, src, b.x() if src == "x" else b.state("h")) for src in reads
        ]
        if peep is not None:
            terms.append(b.op(MUL, b.bias(f"bp{letter}"), peep))
        total = b.op(ADD, *terms, b.bias(f"b{letter}", bias))
        return self._activate(part, letter, total, self.s._gate_acts)

    def _candidate(self, label: str, z: int | None = None, absorbable: bool = False) -> int:
        """The candidate: act(term of x [+ term of h, maybe reset by z or r] + b)."""
        b = self.b
        reads = self.choose("candidate.reads", _CANDIDATE_READS)
        reset = reset_at = None
        if "h" in reads and z is not None:
            kind = self.choose("reset", RESETS)
            if kind != "none":
                reset = z if kind == "update_gate" else self._gate("reset_gate")
                reset_at = self.choose("reset_at", RESET_AT)
        terms = [self._term("candidate", label, "x", b.x())]
        if "h" in reads:
            h = b.state("h")
            if reset_at == "before":
                reset_h = b.op(MUL, reset, h)
                self.choose.check(b, reset_h, absorbable=True)  # b * (r * h) is one product
                terms.append(self._term("candidate", label, "h", reset_h))
            elif reset_at == "after":
                term = self._term("candidate", label, "h", h)
                terms.append(b.op(MUL, reset, b.op(ADD, term, b.bias(f"bh{label}"))))
            else:
                terms.append(self._term("candidate", label, "h", h))
        total = b.op(ADD, *terms, b.bias(f"b{label}"))
        return self._activate("candidate", label, total, self.s._candidate_acts, absorbable)

    # ------------------------------------------------------------- memory cell
    def _peep(self, source: int) -> int | None:
        """The peephole operand ``source`` if this cell has peepholes (decided once)."""
        if self._peepholes is None:
            self._peepholes = self.choose("peepholes", (False, True))
        return source if self._peepholes else None

    def _memory(self) -> int:
        """c' = f * c + i * j, with f, j present, absent (1) or coupled (f = 1 - j)."""
        b = self.b
        i = self._candidate("i", absorbable=True)
        c = b.state("c")
        forget = self.choose("forget", FORGET)
        f = j = b.one()
        if forget == "gate":
            bias = self.choose("forget_bias", self.s._forget_biases)
            f = self._gate("forget_gate", bias=bias, peep=self._peep(c))
        if forget == "coupled" or self.choose("input_gate", (True, False)):
            j = self._gate("input_gate", peep=self._peep(c))
        if forget == "coupled":
            f = b.op(SUB, b.one(), j)
        return b.op(ADD, b.op(MUL, f, c), b.op(MUL, i, j))

    def _output(self, c_new: int) -> int:
        """h' = o * act(c'), with the output gate o present or 1."""
        b = self.b
        out = b.op(self.choose("output_act", self.s._output_acts), c_new)
        self.choose.check(b, out)
        if self.choose("output_gate", (True, False)):
            out = b.op(MUL, self._gate("output_gate", peep=self._peep(c_new)), out)
        return out
