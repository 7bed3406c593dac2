"""A cell as an SVG diagram: a layered (Sugiyama-style) drawing of its DAG, pure Python.

Data flows top to bottom: ``x`` and the previous states on the first row, every other
node just above its first reader, the new states (``h'``...) on the last row. Edges that
skip rows bend through invisible waypoints, and rows are ordered by the barycentre of
their neighbours to keep crossings few. The subtracted operand of ``a - b`` enters
through a dashed edge. Used by the dashboard (an artifact per trial) and the CLI.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

from optuna_rnn.cell.ir import (
    ADD,
    BIAS,
    LINEAR,
    MUL,
    ONE,
    RELU,
    SIGMOID,
    STATE,
    SUB,
    TANH,
    Cell,
    X,
)

__all__ = ["node_label", "render_svg"]

_SYMBOL = {ADD: "+", MUL: "\u00d7", SUB: "\u2212", TANH: "tanh", SIGMOID: "sigm", RELU: "relu"}
_FILL = {X: "#dbe9f6", STATE: "#dbe9f6", ONE: "#eeeeee", BIAS: "#f6ecd2", LINEAR: "#f6ecd2"}
_FILL_OP, _FILL_OUT = "#ffffff", "#d9f0d9"
#: Sizes in px for a 16 px monospace font (a character is about 0.6 em wide), so that the
#: diagram reads at its natural size in a dashboard note or a browser.
_FONT = 16
_ROW, _GAP, _HEIGHT, _CHAR, _PAD, _MARGIN = 80, 22, 34, 0.6 * _FONT, 22, 24
_SWEEPS = 6


def node_label(cell: Cell, i: int) -> str:
    """The text drawn for node ``i``: its name, value or operation (with its label)."""
    n = cell.nodes[i]
    if n.op == X:
        return "x"
    if n.op == STATE:
        return n.name or ""
    if n.op == ONE:
        return "1"
    if n.op == BIAS:
        return f"{n.name}={n.value:g}" if n.value else n.name or ""
    if n.op == LINEAR:
        return f"{n.name} + {n.value:g}I" if n.value else n.name or ""
    label = cell.labels.get(i)
    return f"{label} = {_SYMBOL[n.op]}" if label else _SYMBOL[n.op]


@dataclass
class _Box:
    text: str
    fill: str
    title: str
    layer: int = 0
    width: float = 0.0
    x: float = 0.0
    inputs: list[int] = field(default_factory=list)
    dashed: set[int] = field(default_factory=set)  # inputs reached through a dashed edge
    dummy: bool = False


def _boxes(cell: Cell) -> list[_Box]:
    """One box per node, one per new state, and waypoints for edges that skip rows."""
    nodes = cell.nodes
    boxes = []
    for i, n in enumerate(nodes):
        fill = _FILL.get(n.op, _FILL_OP)
        box = _Box(node_label(cell, i), fill, f"node {i}: {n.op}", inputs=list(n.inputs))
        if n.op == SUB:
            box.dashed.add(n.inputs[1])
        boxes.append(box)
    for s, i in cell.updates.items():
        boxes.append(_Box(f"{s}'", _FILL_OUT, f"new state {s}", inputs=[i]))
    for box in boxes:
        box.layer = 1 + max((boxes[j].layer for j in box.inputs), default=-1)
    last = max(b.layer for b in boxes[: len(nodes)]) + 1
    for box in boxes[len(nodes) :]:
        box.layer = last
    readers = _readers(boxes)
    for k in reversed(range(len(nodes))):  # all but x and the states sink to their readers
        if nodes[k].op not in (X, STATE):
            boxes[k].layer = min(boxes[r].layer for r in readers[k]) - 1
    for k in range(len(boxes)):
        box = boxes[k]
        for pos, j in enumerate(box.inputs):
            src = j
            for layer in range(boxes[j].layer + 1, box.layer):
                boxes.append(_Box("", "", "", layer=layer, inputs=[src], dummy=True))
                src = len(boxes) - 1
            if src != j:
                if j in box.dashed:
                    box.dashed.add(src)
                box.inputs[pos] = src
    for box in boxes:
        box.width = 0.0 if box.dummy else max(_HEIGHT, _CHAR * len(box.text) + _PAD)
    return boxes


def _readers(boxes: list[_Box]) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in boxes]
    for k, box in enumerate(boxes):
        for j in box.inputs:
            out[j].append(k)
    return out


def _order(boxes: list[_Box]) -> list[list[int]]:
    """Rows of box indices, reordered by barycentre sweeps down and up."""
    rows: list[list[int]] = [[] for _ in range(max(b.layer for b in boxes) + 1)]
    for k, box in enumerate(boxes):
        rows[box.layer].append(k)
    readers = _readers(boxes)
    pos = {k: p for row in rows for p, k in enumerate(row)}
    for sweep in range(_SWEEPS):
        down = sweep % 2 == 0
        near = [box.inputs for box in boxes] if down else readers
        for row in rows[1:] if down else rows[-2::-1]:
            row.sort(key=lambda k: (_mean([pos[j] for j in near[k]], pos[k]), pos[k]))
            pos.update({k: p for p, k in enumerate(row)})
    return rows


def _mean(values: list[float], default: float) -> float:
    return sum(values) / len(values) if values else default


def _place(boxes: list[_Box], rows: list[list[int]]) -> float:
    """Set each box's centre x; return the drawing's width.

    Rows start centred; then sweeps move every box towards the mean x of its neighbours
    in the row above (or below), keeping the row's order and spacing, which straightens
    chains and long edges.
    """
    widths = [sum(boxes[k].width for k in row) + _GAP * (len(row) - 1) for row in rows]
    for row, width in zip(rows, widths, strict=True):
        left = (max(widths) - width) / 2
        for k in row:
            boxes[k].x = left + boxes[k].width / 2
            left += boxes[k].width + _GAP
    readers = _readers(boxes)
    for sweep in range(_SWEEPS):
        near = [box.inputs for box in boxes] if sweep % 2 == 0 else readers
        for row in rows[1:] if sweep % 2 == 0 else rows[-2::-1]:
            want = [_mean([boxes[j].x for j in near[k]], boxes[k].x) for k in row]
            placed, right = [], -float("inf")
            for k, x in zip(row, want, strict=True):
                placed.append(max(x, right + boxes[k].width / 2 + _GAP))
                right = placed[-1] + boxes[k].width / 2
            shift = _mean([w - x for w, x in zip(want, placed, strict=True)], 0.0)
            for k, x in zip(row, placed, strict=True):
                boxes[k].x = x + shift
    left = min(box.x - box.width / 2 for box in boxes)
    for box in boxes:
        box.x += _MARGIN - left
    return max(box.x + box.width / 2 for box in boxes) + _MARGIN


def render_svg(cell: Cell) -> str:
    """An SVG document (a string) drawing ``cell`` as a layered graph; every node is named."""
    boxes = _boxes(cell)
    rows = _order(boxes)
    width = _place(boxes, rows)
    height = 2 * _MARGIN + (len(rows) - 1) * _ROW + _HEIGHT

    def top(k: int) -> float:
        return _MARGIN + boxes[k].layer * _ROW

    edges, shapes = [], []
    for k, box in enumerate(boxes):
        if box.dummy:
            continue
        for j in box.inputs:
            points = [(box.x, top(k))]
            src = j
            while boxes[src].dummy:
                points.append((boxes[src].x, top(src) + _HEIGHT / 2))
                src = boxes[src].inputs[0]
            points.append((boxes[src].x, top(src) + _HEIGHT))
            dash = ' stroke-dasharray="5,3"' if j in box.dashed else ""
            coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in reversed(points))
            edges.append(
                f'<polyline points="{coords}" fill="none" stroke="#555" stroke-width="1.5"{dash} '
                'marker-end="url(#arrow)"/>'
            )
        left = box.x - box.width / 2
        rx = _HEIGHT / 2 if box.fill == _FILL_OP else 4
        shapes.append(
            f'<g class="node" id="n{k}"><title>{escape(box.title)}</title>'
            f'<rect x="{left:.1f}" y="{top(k):.1f}" width="{box.width:.1f}" height="{_HEIGHT}" '
            f'rx="{rx}" fill="{box.fill}" stroke="#333"/>'
            f'<text x="{box.x:.1f}" y="{top(k) + _HEIGHT / 2:.1f}" text-anchor="middle" '
            'dominant-baseline="central">'
            f"{escape(box.text)}</text></g>"
        )
    return "\n".join(
        [
            (
                f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
                f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="monospace" '
                f'font-size="{_FONT}">'
            ),
            f'<rect x="0" y="0" width="{width:.0f}" height="{height:.0f}" fill="#ffffff"/>',
            f"<title>cell {cell.fingerprint}</title>",
            (
                '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
                'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
                'fill="#555"/></marker></defs>'
            ),
            *edges,
            *shapes,
            "</svg>",
        ]
    )
