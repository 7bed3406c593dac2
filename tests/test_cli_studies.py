"""The study scripts' tables, run on a tiny task through their own ``run`` functions."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pandas as pd
import pytest

STUDIES = Path(__file__).resolve().parent.parent / "studies"
TINY_TASK = "memorization,length=3,alphabet=8,eval_size=40"
TINY_OBJECTIVE = {"max_steps": 40, "eval_every": 20, "batch_size": 8,
                  "hyperparameters": {"param_budgets": [3000]}}


@pytest.fixture
def studies(monkeypatch: pytest.MonkeyPatch) -> object:
    monkeypatch.syspath_prepend(str(STUDIES))
    yield importlib.import_module("_common")
    for name in ("_common", "table2"):
        sys.modules.pop(name, None)


def test_table2_ratios_to_the_gru(studies: object, tmp_path: Path) -> None:
    table2 = importlib.import_module("table2")
    context = studies.Context("t", f"sqlite:///{tmp_path}/t.db", 1, tmp_path / "out")
    preset = {"tasks": {"a": TINY_TASK, "b": TINY_TASK + ",seed=1"}, "cells": ("lstm", "gru"),
              "draws": 1, "objective": TINY_OBJECTIVE}
    table2.run(preset, context)
    table = pd.read_csv(tmp_path / "out" / "table2.csv").set_index("cell")
    assert sorted(table.index) == ["gru", "lstm"]
    assert table.loc["gru", "a/gru"] == pytest.approx(1.0)
    assert table.loc["lstm", "b/gru"] == pytest.approx(table.loc["lstm", "b"] / table.loc["gru", "b"])
    assert table.loc["lstm", "paper_xml"] == pytest.approx(0.42)
    assert (tmp_path / "out" / "a" / "leaderboard.png").exists()
