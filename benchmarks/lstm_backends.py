"""Fused against native (oneDNN) for the exact LSTM on the CPU, by sequence length: whether
the fused time loop, cheaper per step, pays for the fused call's larger fixed cost.

Both backends run an LSTM layer's training step (forward and backward, as in
``benchmarks/kernels.py``) at the widths of the search's CPU tasks (``trial_step.py``:
H=52 memorisation, arithmetic and XML, H=24 PTB) and one wider, for a range of sequence
lengths. Contenders interleaved, medians of ``--reps``. The ``auto`` backend keeps native
for exact LSTM cells on the CPU while no width and length of these tasks gains clearly.

    python benchmarks/lstm_backends.py [--reps 200] [--threads 1] [--steps 4,8,12,16,24,32]
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime

import torch
from kernels import interleaved, step_fn

from optuna_rnn import CellRNN, zoo

SHAPES = ((20, 52), (20, 24), (20, 128))  # B, H (the input is as wide, as after an embedding)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a worker's 1)")
    parser.add_argument("--steps", default="4,8,12,16,24,32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    print(f"# optuna-rnn LSTM backends, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; training step, fused / native time, median of "
        f"{args.reps}"
    )
    cell = zoo.get("lstm")
    for B, H in SHAPES:
        torch.manual_seed(0)
        fused = CellRNN(cell, H, H, backend="fused")
        native = CellRNN(cell, H, H, backend="native")
        native.load_state_dict(fused.state_dict())
        cells = []
        for T in (int(t) for t in args.steps.split(",")):
            x = torch.randn(T, B, H, requires_grad=True)
            times = interleaved(
                {"fused": step_fn(fused, x), "native": step_fn(native, x)}, args.reps, device
            )
            cells.append(
                f"T={T}: {times['fused'] * 1e3:.2f}/{times['native'] * 1e3:.2f} ms "
                f"{times['fused'] / times['native']:.2f}"
            )
        print(f"B={B} H={H:>3}  " + "   ".join(cells))


if __name__ == "__main__":
    main()
