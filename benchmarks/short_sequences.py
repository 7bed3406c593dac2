"""Fused against the reference backend on short sequences: where the fused call pays off.

A fused call has a fixed cost the reference does not (packing the weights, the x maps'
product, the C call); over a sequence it is paid back many times, over one step it is
not. This prints, for T = 1, 2, 4 and 8, the fused / reference time of a training step
(forward + backward, as in ``benchmarks/kernels.py``) and of a forward under
``torch.no_grad`` (sampling), contenders interleaved, medians of ``--reps``. The ``auto``
backend runs one-step CPU calls on the reference because of it.

    python benchmarks/short_sequences.py [--reps 100] [--threads N] [--cells gru_torch,mut1,mut3]
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from datetime import UTC, datetime

import torch
from kernels import interleaved, step_fn

from optuna_rnn import CellRNN, zoo

SHAPES = {"b": (32, 64, 128), "a": (20, 200, 200)}  # B, I, H of kernels.py's sizes


def forward_fn(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def forward() -> None:
        with torch.no_grad():
            module(x)

    return forward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--cells", default="gru_torch,mut1,mut3")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"# optuna-rnn short sequences, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; fused / reference time, median of {args.reps}"
    )
    for size, (B, I, H) in SHAPES.items():
        print(f"\n## B={B} I={I} H={H} (size ({size})'s)")
        for name in args.cells.split(","):
            cell = zoo.get(name)
            fused = CellRNN(cell, I, H, backend="fused")
            ref = CellRNN(cell, I, H, backend="reference")
            ref.load_state_dict(fused.state_dict())
            cells = []
            for T in (1, 2, 4, 8):
                x = torch.randn(T, B, I, requires_grad=True)
                times = interleaved(
                    {
                        "train f": step_fn(fused, x),
                        "train r": step_fn(ref, x),
                        "infer f": forward_fn(fused, x),
                        "infer r": forward_fn(ref, x),
                    },
                    args.reps,
                    device,
                )
                cells.append(
                    f"T={T}: train {times['train f'] / times['train r']:.2f} "
                    f"infer {times['infer f'] / times['infer r']:.2f}"
                )
            print(f"{name:>10s}  " + "   ".join(cells))


if __name__ == "__main__":
    main()
