"""Where one fused training step's time goes: torch.profiler's table of ops (host time)
and, on CUDA, of device kernels, for one cell at one of ``kernels.py``'s sizes. On the
CPU it first times the two C time loops apart (their time is inside the ``_Fused`` and
``_FusedBackward`` rows' self time, with the autograd function's Python).

    python benchmarks/profile_step.py [--cell lstm] [--size a] [--device cpu] [--steps 20]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch
from kernels import SIZES, step_fn, sync
from torch.profiler import ProfilerActivity, profile

from optuna_rnn import CellRNN, zoo
from optuna_rnn.kernels.sequence import Schedule


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cell", default="lstm", help="a zoo name")
    parser.add_argument("--size", default="a", choices=sorted(SIZES))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="fused")
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    device = torch.device(args.device)
    T, B, I, H = SIZES[args.size]
    torch.manual_seed(0)
    module = CellRNN(zoo.get(args.cell), I, H, backend=args.backend).to(device)
    step = step_fn(module, torch.randn(T, B, I, device=device, requires_grad=True))
    for _ in range(3):  # on CUDA the second call captures the graphs
        step()
    sync(device)
    loops = {False: 0.0, True: 0.0}  # seconds in the C time loops, forward and backward
    run = Schedule.run

    def timed(self: Schedule, *args: Any) -> None:
        t0 = time.perf_counter()
        run(self, *args)
        loops[self.backward] += time.perf_counter() - t0

    Schedule.run = timed
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync(device)
    Schedule.run = run
    ms = {k: v / args.steps * 1e3 for k, v in loops.items()}
    print(
        f"{args.cell} {args.backend} at ({args.size}) T={T} B={B} I={I} H={H} on {device}: "
        f"{(time.perf_counter() - t0) / args.steps * 1e3:.2f} ms a step (mean of {args.steps}, unprofiled)"
        + (
            f"; C time loops {ms[False]:.2f} ms forward, {ms[True]:.2f} ms backward"
            if any(loops.values())
            else ""
        )
    )
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(args.steps):
            step()
        sync(device)
    table = prof.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=20))
    if device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=12))


if __name__ == "__main__":
    main()
