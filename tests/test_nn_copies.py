"""A module copies and pickles after its kernels have run: the copy computes the same."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch

from optuna_rnn import CellRNN, zoo
from optuna_rnn.tasks.memorization import Memorization
from optuna_rnn.train import TrainConfig, build_model, train


@pytest.mark.parametrize("backend", ["fused", "reference", "auto"])
@pytest.mark.parametrize("cell", ["gru", "lstm", "mut1"])
def test_a_module_whose_kernels_ran_deep_copies_and_pickles(
    cell: str, backend: str, tmp_path
) -> None:
    torch.manual_seed(0)
    module = CellRNN(zoo.get(cell), 6, 8, backend=backend, num_layers=2)
    x = torch.randn(5, 3, 6)
    out, _ = module(x)
    out.sum().backward()
    copied = copy.deepcopy(module)
    torch.save(module, tmp_path / "module.pt")
    loaded = torch.load(tmp_path / "module.pt", weights_only=False)
    for other in (copied, loaded):
        assert torch.equal(other(x)[0], out)
        assert other.layers[0].weight is not module.layers[0].weight


def test_a_trained_model_pickled_here_runs_in_a_fresh_process(tmp_path) -> None:
    """Unpickled where its cell's kernels were never built: they are built there."""
    task = Memorization(length=3, alphabet=6, eval_size=20)
    torch.manual_seed(0)
    model = build_model(zoo.get("mut2"), task, hidden_size=12, backend="fused")
    train(model, task, TrainConfig(learning_rate=0.5, max_grad_norm=5.0, max_steps=5, eval_every=5))
    batch = next(task.eval_batches("valid", 4))
    model.eval()
    with torch.no_grad():
        expected, _ = model(batch, None)
    torch.save({"model": model, "batch": batch, "expected": expected}, tmp_path / "m.pt")
    script = (
        "import sys, torch\n"
        f"saved = torch.load({str(tmp_path / 'm.pt')!r}, weights_only=False)\n"
        "with torch.no_grad():\n"
        "    got, _ = saved['model'](saved['batch'], None)\n"
        "sys.exit(0 if torch.equal(got, saved['expected']) else 1)\n"
    )
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == 0
