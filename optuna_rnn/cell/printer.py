"""Cell -> equations that :func:`optuna_rnn.cell.parse.parse` reads back to the same cell."""

from __future__ import annotations

from optuna_rnn.cell.ir import (
    ADD,
    BIAS,
    LINEAR,
    MUL,
    ONE,
    STATE,
    SUB,
    Cell,
    X,
    fresh_name,
)

__all__ = ["to_equations"]

_FUNC = {"tanh": "tanh", "sigmoid": "sigm", "relu": "relu"}
_PREC = {ADD: 1, SUB: 1, MUL: 2}


def _num(v: float) -> str:
    return f"{v:g}" if float(f"{v:g}") == v else repr(v)


def to_equations(cell: Cell) -> str:
    """One equation per line: named or shared intermediates first (by depth, then name),
    then the states."""
    nodes = cell.nodes
    consumers = cell.consumers()
    state_of: dict[int, str] = {}
    for s, i in cell.updates.items():
        state_of.setdefault(i, s)
    used = {n.name for n in nodes if n.name} | set(cell.labels.values()) | set(cell.states)
    names: dict[int, str] = {}
    for i, n in enumerate(nodes):
        if n.op in (X, STATE, ONE, BIAS, LINEAR):
            continue
        if i in state_of:
            names[i] = state_of[i] + "'"
        elif i in cell.labels:
            names[i] = cell.labels[i]
        elif len(consumers[i]) > 1:
            names[i] = fresh_name("t", used)

    def _sum_order(i: int) -> tuple[int, int]:
        """Readable sums: W x terms, then other linear maps, other terms, biases last."""
        n = nodes[i]
        if n.op == LINEAR:
            return (0 if nodes[n.inputs[0]].op == X else 1, i)
        return (3 if n.op == BIAS else 2, i)

    def atom(i: int) -> bool:
        n = nodes[i]
        return i in names or n.op in (X, STATE, ONE, BIAS, "tanh", "sigmoid", "relu")

    def expr(i: int, prec: int = 0, top: bool = False) -> str:
        n = nodes[i]
        if not top and i in names:
            return names[i]
        if n.op == X:
            return "x"
        if n.op == STATE:
            return n.name
        if n.op == ONE:
            return "1"
        if n.op == BIAS:
            return n.name + (f"[{_num(n.value)}]" if n.value else "")
        if n.op == LINEAR:
            w = n.name + (f"[{_num(n.value)}]" if n.value else "")
            src = n.inputs[0]
            return f"{w} {expr(src)}" if atom(src) else f"{w} ({expr(src)})"
        if n.op in _FUNC:
            return f"{_FUNC[n.op]}({expr(n.inputs[0])})"
        mine = _PREC[n.op]
        if n.op == SUB:
            text = f"{expr(n.inputs[0], 1)} - {expr(n.inputs[1], 2)}"
        elif n.op == ADD:
            inputs = sorted(n.inputs, key=_sum_order)
            parts = [expr(j, 1) for j in inputs]
            # a - b as a later operand would re-associate: a + (b - c), not a + b - c
            parts = [parts[0]] + [
                f"({p})" if nodes[j].op == SUB and j not in names else p
                for j, p in zip(inputs[1:], parts[1:], strict=True)
            ]
            text = " + ".join(parts)
        else:
            text = " * ".join(expr(j, 2) for j in n.inputs)
        return f"({text})" if mine < prec else text

    depth: list[int] = []
    for n in nodes:
        depth.append(1 + max((depth[j] for j in n.inputs), default=-1))
    named = sorted((i for i in names if i not in state_of), key=lambda i: (depth[i], names[i]))
    lines = [f"{names[i]} = {expr(i, top=True)}" for i in named]
    for s, i in cell.updates.items():
        if state_of[i] == s:
            lines.append(f"{s}' = {expr(i, top=True)}")
        else:
            lines.append(f"{s}' = {state_of[i]}'")
    return "\n".join(lines)
