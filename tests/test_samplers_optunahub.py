"""The OptunaHub package folder: front matter, files, and optunahub.load_local_module."""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import optunahub
import yaml

from optuna_rnn.cell import zoo
from optuna_rnn.samplers import CellEvolutionSampler

ROOT = Path(__file__).resolve().parents[1] / "package"
PACKAGE = ROOT / "samplers" / "cell_evolution"


def test_the_folder_has_what_the_registry_requires() -> None:
    assert {"__init__.py", "README.md", "LICENSE", "example.py"} <= {
        p.name for p in PACKAGE.iterdir()
    }
    text = (PACKAGE / "README.md").read_text()
    _, front, body = text.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert set(meta) == {"author", "title", "description", "tags", "optuna_versions", "license"}
    assert "sampler" in meta["tags"]  # required for package/samplers/
    assert all(isinstance(v, str) for k, v in meta.items() if k not in ("tags", "optuna_versions"))
    for section in ("## Abstract", "## Class or Function Names", "## Example"):
        assert section in body
    ast.parse((PACKAGE / "example.py").read_text())


def test_load_local_module_gives_a_working_sampler() -> None:
    module = optunahub.load_local_module("samplers/cell_evolution", registry_root=str(ROOT))
    assert module.CellEvolutionSampler is CellEvolutionSampler
    space = module.GraphSpace(max_nodes=12)
    study = optuna.create_study(
        sampler=module.CellEvolutionSampler(space=space, seed=0), direction="maximize"
    )
    study.enqueue_trial(space.encode(zoo.get("tanh")))
    study.optimize(lambda t: float(space.suggest(t).num_inner_nodes), n_trials=8)
    assert len({str(space.decode(t.params)) for t in study.trials}) == 8
