"""Equations -> Cell: a small hand-written tokenizer and recursive-descent parser.

Grammar (one equation per line or ``;``; ``#`` starts a comment)::

    equation := NAME ["'"] "=" sum
    sum      := product (("+" | "-") product)*
    product  := factor ("*" factor)*
    factor   := WEIGHT factor                 # juxtaposition: a linear map, W x, W (r * h)
              | FUNC "(" sum ")"              # tanh, sigm, sigmoid, relu, identity, id
              | "linear" "(" NUMBER "," sum ")"  # the paper's Linear(a, x) = (W + aI) x + b
              | "(" sum ")" | NAME ["'"] | BIAS | "1"
    WEIGHT   := NAME ["[" NUMBER "]"]          # W[a]: diagonal offset a
    BIAS     := NAME ["[" NUMBER "]"]          # b[v]: bias with initial value v

A name written right against ``(`` (``sin(x)``) is a function call, so an unknown
function is an error rather than a linear map; a linear map of a parenthesised operand
takes a space, ``W (r * h)``, as the paper writes it (Jozefowicz, Zaremba and
Sutskever, ICML 2015).

A name is, in this order: ``x``; a state (it has an equation ``name' = ...``; ``name'``
on a right-hand side is its new value); an intermediate (it has an equation); a bias
(any other name starting with ``b``). Nothing is evaluated: the text only ever becomes IR.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from optuna_rnn.cell.ir import (
    ACTIVATIONS,
    ADD,
    DEFAULT_MAX_NODES,
    IDENTITY,
    MUL,
    RESERVED,
    SUB,
    Cell,
    CellError,
    GraphBuilder,
    fresh_name,
    node_budget,
)

__all__ = ["FUNCTIONS", "parse"]

MAX_TEXT = 100_000
MAX_DEPTH = 100

FUNCTIONS = {
    "tanh": "tanh",
    "sigm": "sigmoid",
    "sigmoid": "sigmoid",
    "relu": "relu",
    "identity": IDENTITY,
    "id": IDENTITY,
}
assert set(FUNCTIONS.values()) == set(ACTIVATIONS) | {IDENTITY}

_TOKEN = re.compile(
    r"""
    (?P<ws>[ \t\r\f\v]+)
  | (?P<comment>\#[^\n]*)
  | (?P<nl>[\n;])
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[-+*()=,'\[\]])
""",
    re.VERBOSE,
)


@dataclass
class _Tok:
    kind: str
    text: str
    line: int
    spaced: bool = False  # whitespace or a comment comes right before it


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    pos, line, spaced = 0, 1, False
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise CellError(f"line {line}: unexpected character {text[pos]!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind == "nl":
            toks.append(_Tok("nl", m.group(), line))
            line += m.group() == "\n"
        elif kind not in ("ws", "comment"):
            toks.append(_Tok(kind, m.group(), line, spaced))
        spaced = kind in ("ws", "comment")
        pos = m.end()
    toks.append(_Tok("end", "", line))
    return toks


# AST: tuples tagged by their first element.
#   ("ref", name, primed, annot, line)  ("one", line)  ("call", fn, arg, line)
#   ("apply", weight, annot, operand, line)  ("linear", a, operand, line)
#   ("op", op, [operands], line): n-ary add and mul, binary sub


@dataclass
class _Equation:
    target: str
    primed: bool
    expr: tuple
    line: int


@dataclass
class _Parser:
    toks: list[_Tok]
    pos: int = 0
    depth: int = 0
    names: set[str] = field(default_factory=set)

    def peek(self, k: int = 0) -> _Tok:
        return self.toks[min(self.pos + k, len(self.toks) - 1)]

    def next(self) -> _Tok:
        tok = self.peek()
        self.pos += 1
        return tok

    def expect(self, text: str) -> _Tok:
        tok = self.next()
        if tok.text != text:
            found = repr(tok.text) if tok.kind != "end" else "end of input"
            if tok.kind == "nl":
                found = "end of line"
            raise CellError(f"line {tok.line}: expected {text!r}, found {found}")
        return tok

    def equations(self) -> list[_Equation]:
        eqs = []
        while self.peek().kind != "end":
            if self.peek().kind == "nl":
                self.next()
                continue
            tok = self.next()
            if tok.kind != "name":
                raise CellError(
                    f"line {tok.line}: an equation starts with a name, found {tok.text!r}"
                )
            primed = self.peek().text == "'"
            if primed:
                self.next()
            self.expect("=")
            expr = self.sum()
            end = self.peek()
            if end.kind not in ("nl", "end"):
                raise CellError(f"line {end.line}: unexpected {end.text!r} after the expression")
            eqs.append(_Equation(tok.text, primed, expr, tok.line))
        return eqs

    def sum(self) -> tuple:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CellError(f"line {self.peek().line}: expression nested too deeply")
        line = self.peek().line
        terms = [self.product()]
        while self.peek().text in ("+", "-"):
            if self.next().text == "+":
                terms.append(self.product())
            else:
                terms = [("op", SUB, [_nary(ADD, terms, line), self.product()], line)]
        self.depth -= 1
        return _nary(ADD, terms, line)

    def product(self) -> tuple:
        line = self.peek().line
        factors = [self.factor()]
        while self.peek().text == "*":
            self.next()
            factors.append(self.factor())
        return _nary(MUL, factors, line)

    def _annotation(self) -> float | None:
        if self.peek().text != "[":
            return None
        self.next()
        sign = 1.0
        if self.peek().text in ("-", "+"):
            sign = -1.0 if self.next().text == "-" else 1.0
        tok = self.next()
        if tok.kind != "number":
            raise CellError(f"line {tok.line}: expected a number inside [...], found {tok.text!r}")
        self.expect("]")
        return sign * float(tok.text)

    def factor(self) -> tuple:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise CellError(f"line {self.peek().line}: expression nested too deeply")
        tok = self.next()
        if tok.kind == "number":
            if float(tok.text) != 1.0:
                raise CellError(f"line {tok.line}: only the constant 1 may appear, got {tok.text}")
            result: tuple = ("one", tok.line)
        elif tok.text == "(":
            result = self.sum()
            self.expect(")")
        elif tok.kind == "name" and tok.text == "linear":
            self.expect("(")
            sign = -1.0 if self.peek().text == "-" and self.next() else 1.0
            num = self.next()
            if num.kind != "number":
                raise CellError(
                    f"line {num.line}: linear(a, ...) needs a number a, found {num.text!r}"
                )
            self.expect(",")
            operand = self.sum()
            self.expect(")")
            result = ("linear", sign * float(num.text), operand, tok.line)
        elif tok.kind == "name" and tok.text in FUNCTIONS:
            self.expect("(")
            arg = self.sum()
            self.expect(")")
            result = ("call", FUNCTIONS[tok.text], arg, tok.line)
        elif tok.kind == "name" and self.peek().text == "(" and not self.peek().spaced:
            raise CellError(
                f"line {tok.line}: unknown function {tok.text!r} (functions: "
                f"{', '.join(FUNCTIONS)}, linear); for a linear map write {tok.text} (...)"
            )
        elif tok.kind == "name":
            self.names.add(tok.text)
            annot = self._annotation()
            nxt = self.peek()
            if nxt.text == "'":
                self.next()
                if annot is not None:
                    raise CellError(f"line {tok.line}: a state {tok.text}' takes no [...] value")
                result = ("ref", tok.text, True, None, tok.line)
            elif nxt.kind in ("name", "number") or nxt.text == "(":
                result = ("apply", tok.text, annot, self.factor(), tok.line)
            else:
                result = ("ref", tok.text, False, annot, tok.line)
        else:
            found = "end of line" if tok.kind in ("nl", "end") else repr(tok.text)
            raise CellError(f"line {tok.line}: expected an operand, found {found}")
        self.depth -= 1
        return result


def _nary(op: str, operands: list[tuple], line: int) -> tuple:
    """One n-ary node for ``a + b + c`` (flat, so long sums do not nest deeply)."""
    return operands[0] if len(operands) == 1 else ("op", op, operands, line)


class _Resolver:
    """Turns equations into IR nodes, resolving names and detecting cycles."""

    def __init__(self, eqs: list[_Equation], names: set[str]) -> None:
        self.b = GraphBuilder()
        self.states: dict[str, _Equation] = {}
        self.defs: dict[str, _Equation] = {}
        for eq in eqs:
            table = self.states if eq.primed else self.defs
            if eq.target in RESERVED:
                raise CellError(f"line {eq.line}: {eq.target!r} is reserved and cannot be defined")
            if eq.target in table:
                prime = "'" if eq.primed else ""
                raise CellError(
                    f"line {eq.line}: {eq.target}{prime} is defined twice "
                    f"(also on line {table[eq.target].line})"
                )
            table[eq.target] = eq
        for name, eq in self.defs.items():
            if name in self.states:
                raise CellError(
                    f"line {eq.line}: {name!r} is a state (it has {name}' = ...) and cannot "
                    "also be an intermediate"
                )
        self.used = names | set(self.defs) | set(self.states)
        self.done: dict[tuple[str, bool], int] = {}
        self.active: list[tuple[str, bool]] = []

    def define(self, name: str, primed: bool) -> int:
        key = (name, primed)
        if key in self.done:
            return self.done[key]
        eq = (self.states if primed else self.defs)[name]
        if key in self.active:
            loop = self.active[self.active.index(key) :] + [key]
            cycle = " -> ".join(n + ("'" if p else "") for n, p in loop)
            raise CellError(f"line {eq.line}: cycle in the equations: {cycle}")
        self.active.append(key)
        node = self.expr(eq.expr)
        self.active.pop()
        if not primed:
            self.b.label(node, name)
        self.done[key] = node
        return node

    def ref(self, name: str, primed: bool, annot: float | None, line: int) -> int:
        if primed:
            if name not in self.states:
                raise CellError(f"line {line}: {name}' is used but never defined")
            return self.define(name, True)
        if annot is None:
            if name == "x":
                return self.b.x()
            if name in self.states:
                return self.b.state(name)
            if name in self.defs:
                return self.define(name, False)
        elif name in self.states or name in self.defs or name == "x":
            raise CellError(
                f"line {line}: [...] gives a bias its initial value; {name!r} is not a bias"
            )
        if name.startswith("b"):
            return self.b.bias(name, annot)
        hint = f" (a state needs an equation {name}' = ...)" if len(name) == 1 else ""
        raise CellError(f"line {line}: undefined name {name!r}{hint}")

    def expr(self, e: tuple) -> int:
        tag = e[0]
        try:
            if tag == "ref":
                return self.ref(e[1], e[2], e[3], e[4])
            if tag == "one":
                return self.b.one()
            if tag == "call":
                return self.b.op(e[1], self.expr(e[2]))
            if tag == "op":
                return self.b.op(e[1], *[self.expr(t) for t in e[2]])
            if tag == "linear":
                operand = self.expr(e[2])
                w = self.b.linear(fresh_name("W", self.used), operand, e[1])
                return self.b.op(ADD, w, self.b.bias(fresh_name("b", self.used)))
            if tag == "apply":
                weight, annot, operand, line = e[1], e[2], e[3], e[4]
                if weight == "x" or weight in self.states or weight in self.defs:
                    raise CellError(
                        f"line {line}: {weight!r} is a value, not a weight; "
                        f"write {weight} * ... for a product"
                    )
                return self.b.linear(weight, self.expr(operand), annot)
        except CellError as err:
            msg = str(err)
            if not msg.startswith("line "):
                line = e[-1] if isinstance(e[-1], int) else "?"
                raise CellError(f"line {line}: {msg}") from None
            raise
        raise AssertionError(f"unknown AST node {tag}")


def parse(text: str, *, max_nodes: int = DEFAULT_MAX_NODES) -> Cell:
    """Parse equations into a :class:`Cell`; any bad input raises :class:`CellError`."""
    if not isinstance(text, str):
        raise CellError(f"cell equations must be a string, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise CellError(f"cell text is {len(text)} characters, more than {MAX_TEXT}")
    parser = _Parser(_tokenize(text))
    eqs = parser.equations()
    if not eqs:
        raise CellError("no equations: a cell needs at least h' = ...")
    res = _Resolver(eqs, parser.names)
    if "h" not in res.states:
        raise CellError("the cell has no update for h: write h' = ...")
    try:
        updates = {s: res.define(s, True) for s in res.states}
        for name in res.defs:
            res.define(name, False)
        if len(res.b.nodes) > node_budget(max_nodes):
            raise CellError(f"the cell has more than {max_nodes} nodes")
    except RecursionError:
        raise CellError("the equations are nested too deeply") from None
    return Cell(res.b.nodes, updates, res.b.labels, max_nodes=max_nodes)
