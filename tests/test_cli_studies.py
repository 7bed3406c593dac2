"""The study scripts' tables, run on a tiny task through their own ``run`` functions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from _helpers import TINY_OBJECTIVE, TINY_TASK


def test_table2_ratios_to_the_gru(study_scripts: object, tmp_path: Path) -> None:
    table2 = study_scripts("table2")
    context = study_scripts("_common").Context(
        "t", f"sqlite:///{tmp_path}/t.db", 1, tmp_path / "out"
    )
    preset = {
        "tasks": {"a": TINY_TASK, "b": TINY_TASK + ",seed=1"},
        "cells": ("lstm", "gru"),
        "draws": 1,
        "objective": TINY_OBJECTIVE,
    }
    table2.run(preset, context)
    table = pd.read_csv(tmp_path / "out" / "table2.csv").set_index("cell")
    assert sorted(table.index) == ["gru", "lstm"]
    assert table.loc["gru", "a/gru"] == pytest.approx(1.0)
    assert table.loc["lstm", "b/gru"] == pytest.approx(
        table.loc["lstm", "b"] / table.loc["gru", "b"]
    )
    assert table.loc["lstm", "paper_xml"] == pytest.approx(0.42)
    assert (tmp_path / "out" / "a" / "leaderboard.png").exists()
