"""render_svg: well-formed SVG that names every node of the cell."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from optuna_rnn import Cell, mutate, zoo
from optuna_rnn.cell.render import node_label, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def _check(cell: Cell) -> ET.Element:
    root = ET.fromstring(render_svg(cell))
    assert root.tag == f"{SVG}svg"
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    assert len(groups) == len(cell.nodes) + len(cell.states)
    for i in range(len(cell.nodes)):
        assert groups[f"n{i}"].find(f"{SVG}text").text == node_label(cell, i)
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {f"{s}'" for s in cell.states} <= texts
    width, height = float(root.get("width")), float(root.get("height"))
    for rect in root.iter(f"{SVG}rect"):
        x, y = float(rect.get("x")), float(rect.get("y"))
        assert x >= 0 and x + float(rect.get("width")) <= width and 0 <= y <= height
    edges = sum(len(n.inputs) for n in cell.nodes) + len(cell.states)
    assert len(list(root.iter(f"{SVG}polyline"))) == edges
    return root


@pytest.mark.parametrize("name", zoo.names())
def test_every_zoo_cell_renders(name: str) -> None:
    cell = zoo.get(name)
    root = _check(cell)
    texts = " ".join(t.text or "" for t in root.iter(f"{SVG}text"))
    for n in cell.nodes:
        if n.name:
            assert n.name in texts


def test_mutants_render() -> None:
    rng = np.random.default_rng(0)
    for _ in range(40):
        _check(mutate(zoo.get("lstm"), rng))


def test_labels_show_values_and_subtraction_is_dashed() -> None:
    cell = Cell.parse("g = sigm(W[0.9] x + U h + b[1])\nh' = (1 - g) * h")
    labels = {node_label(cell, i) for i in range(len(cell.nodes))}
    assert {"W + 0.9I", "U", "b=1", "1", "g = sigm", "\u2212", "\u00d7"} <= labels
    root = ET.fromstring(render_svg(cell))
    assert sum(1 for p in root.iter(f"{SVG}polyline") if p.get("stroke-dasharray")) == 1
