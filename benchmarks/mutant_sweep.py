"""Fused against the reference backend over many random cells: how the speedup spreads.

``benchmarks/kernels.py`` measures ten one-mutation mutants of LSTM and GRU. A search
goes further: the evolution sampler mutates mutants. This draws ``--cells`` distinct
cells, each one of the paper's five (LSTM, GRU, MUT1-3) mutated one to three times, and
times a training step of each (forward + backward, as in ``benchmarks/kernels.py``),
fused and reference interleaved, median of ``--reps``. It prints the spread of the
speedups, how many cells the fused backend runs slower than the reference (where
``auto``, which picks fused for every CPU cell but the exact LSTM, would be wrong), and
the slowest cells.

    python benchmarks/mutant_sweep.py [--cells 60] [--reps 20] [--sizes a,b] [--threads N] [--seed 7]
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime

import numpy as np
import torch
from kernels import SIZES, interleaved, step_fn

from optuna_rnn import Cell, CellError, CellRNN, mutate, zoo

PARENTS = ("lstm", "gru", "mut1", "mut2", "mut3")


def random_cells(n: int, seed: int) -> list[Cell]:
    """``n`` distinct cells: each parent in turn, mutated 1-3 times (a cell that cannot be
    mutated further, such as ``h' = x``, stops its chain)."""
    rng = np.random.default_rng(seed)
    out: dict[str, Cell] = {}
    while len(out) < n:
        cell = zoo.get(PARENTS[len(out) % len(PARENTS)])
        for _ in range(int(rng.integers(1, 4))):
            try:
                cell = mutate(cell, rng)
            except CellError:
                break
        out.setdefault(cell.fingerprint, cell)
    return list(out.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cells", type=int, default=60)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--sizes", default="a,b")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    cells = random_cells(args.cells, args.seed)
    print(f"# optuna-rnn mutant sweep, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {len(cells)} cells (seed {args.seed}), "
        f"reference / fused time of a training step, median of {args.reps}"
    )
    for size in args.sizes.split(","):
        T, B, I, H = SIZES[size]
        x = torch.randn(T, B, I, requires_grad=True)
        rows = []
        for cell in cells:
            fused = CellRNN(cell, I, H, backend="fused")
            ref = CellRNN(cell, I, H, backend="reference")
            ref.load_state_dict(fused.state_dict())
            times = interleaved({"f": step_fn(fused, x), "r": step_fn(ref, x)}, args.reps, device)
            rows.append((times["r"] / times["f"], times["f"], cell))
        rows.sort(key=lambda r: r[0])
        speedups = np.array([r[0] for r in rows])
        q = np.percentile(speedups, [0, 10, 50, 90, 100])
        print(f"\n## size ({size}) T={T} B={B} I={I} H={H}")
        print(
            "speedup over the reference: min {:.2f}x, p10 {:.2f}x, median {:.2f}x, p90 {:.2f}x, max {:.2f}x".format(
                *q
            )
        )
        print(f"fused slower than the reference: {int((speedups < 1).sum())} of {len(rows)} cells")
        print("slowest five:")
        for s, f, cell in rows[:5]:
            print(f"  {s:5.2f}x (fused {f * 1e3:6.2f} ms)  " + str(cell).replace("\n", "; "))


if __name__ == "__main__":
    main()
