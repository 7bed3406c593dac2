"""The fused backend at another commit against this tree's: one process, steps alternated.

This machine's speed swings by 1.5-2x within minutes, so a change worth a few percent
shows only when both versions run in one process, step for step. This extracts
``optuna_rnn/`` at ``--base`` (any git revision, or a folder holding an ``optuna_rnn/``,
for a machine without the repository's history) into a temporary directory as the
package ``optuna_rnn_base`` and times one training step of the recurrent core (forward
+ backward, loss: the sum of the outputs, the input needing its gradient) for each
version, alternated ``--reps`` times after two warm-ups. Both start from the same weights.

    python benchmarks/ab_kernels.py --base HEAD~1 [--size a] [--cells gru,mut1,mutant4]
        [--threads 2] [--reps 60] [--device cuda]

Sizes: those of ``kernels.py`` (a, b, c), ``trial`` (a search trial's core: T=10 B=20
I=H=60) and ``tiny`` (T=1 B=2 I=H=8: nothing but the fixed cost of a call).
"""

from __future__ import annotations

import argparse
import importlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import torch
from kernels import SIZES, interleaved, mutants

from optuna_rnn import Cell, CellRNN, zoo

SHAPES = {**SIZES, "trial": (10, 20, 60, 60), "tiny": (1, 2, 8, 8)}


def load_base(revision: str, into: Path) -> ModuleType:
    """``optuna_rnn`` as it is at ``revision`` (or in the folder it names), imported as
    ``optuna_rnn_base``."""
    if Path(revision).is_dir():
        shutil.copytree(Path(revision) / "optuna_rnn", into / "optuna_rnn")
    else:
        repo = Path(__file__).resolve().parent.parent
        archive = subprocess.run(
            ["git", "-C", str(repo), "archive", revision, "optuna_rnn"],
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(into, filter="data")
    package = into / "optuna_rnn_base"
    (into / "optuna_rnn").rename(package)
    for path in package.rglob("*.py"):
        path.write_text(re.sub(r"\boptuna_rnn\b", "optuna_rnn_base", path.read_text()))
    sys.path.insert(0, str(into))
    return importlib.import_module("optuna_rnn_base")


def cells(names: list[str]) -> dict[str, Cell]:
    """Zoo cells by name, and ``mutantK``: ``kernels.py``'s K-th seeded mutant."""
    extra = mutants(10)
    return {n: extra[int(n[6:])] if n.startswith("mutant") else zoo.get(n) for n in names}


def step_fn(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        x.grad = None
        out, _ = module(x)
        out.sum().backward()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare against")
    parser.add_argument("--size", choices=sorted(SHAPES), default="a")
    parser.add_argument("--cells", default="gru,mut1,mutant4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    T, B, I, H = SHAPES[args.size]
    print(
        f"# base {args.base} vs this tree, size {args.size} T={T} B={B} I={I} H={H}, on {device}, "
        f"{torch.get_num_threads()} threads, median of {args.reps} alternated steps"
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = load_base(args.base, Path(tmp))
        parse = importlib.import_module("optuna_rnn_base.cell.parse").parse
        for name, cell in cells(args.cells.split(",")).items():
            new = CellRNN(cell, I, H, backend="fused").to(device)
            old = base.CellRNN(parse(str(cell)), I, H, backend="fused").to(device)
            old.load_state_dict(new.state_dict())
            x = torch.randn(T, B, I, device=device, requires_grad=True)
            medians = interleaved(
                {"base": step_fn(old, x), "new": step_fn(new, x)}, args.reps, device
            )
            b, n = medians["base"], medians["new"]
            print(
                f"{name:>10}  base {b * 1e3:8.3f} ms  new {n * 1e3:8.3f} ms  new/base {n / b:.3f}"
            )


if __name__ == "__main__":
    main()
