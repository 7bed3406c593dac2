"""Where a search trial's training step goes: data, and the model's step, per backend.

``benchmarks/kernels.py`` times the recurrent core alone at the issue's sizes. A trial of
the search trains a whole model (embedding, ``CellRNN`` layers, decoder, loss, clipping,
SGD) at the width its parameter budget allows, on one thread. This times
``optuna_rnn.train.train`` for ``--steps`` steps per call, the backends' calls alternated
for ``--rounds`` rounds (each backend's model starts from the same weights), and reports
the median ms per step; and, apart, the ms per batch of drawing the task's training
batches, which every step includes.

    python benchmarks/trial_step.py [--task memorization] [--budget 25000] [--layers 1]
        [--cells gru,mut1,lstm] [--backends fused,reference] [--steps 100] [--rounds 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from datetime import UTC, datetime

import torch

from optuna_rnn import tasks, zoo
from optuna_rnn.train import TrainConfig, build_model, hidden_size_for_budget, train

TASKS = {"memorization": lambda: tasks.Memorization(eval_size=20), "arithmetic": lambda: tasks.Arithmetic(eval_size=20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), default="memorization")
    parser.add_argument("--budget", type=int, default=25_000)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--cells", default="gru,mut1,lstm")
    parser.add_argument("--backends", default="fused,reference")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the objective's torch_threads=1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    task = TASKS[args.task]()
    backends = args.backends.split(",")
    print(f"# optuna-rnn trial step, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; task {task.name}, budget {args.budget}, {args.layers} layer(s), "
          f"{args.steps} steps a call, median of {args.rounds} rounds")
    batches = task.train_batches(20, seed=0)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        next(batches)
    print(f"drawing a training batch: {(time.perf_counter() - t0) / args.steps * 1e3:.2f} ms")
    config = TrainConfig(learning_rate=0.1, max_grad_norm=5.0, max_steps=args.steps, eval_every=args.steps)
    for name in args.cells.split(","):
        cell = zoo.get(name)
        H = hidden_size_for_budget(cell, args.budget, input_size=task.input_size, output_size=task.output_size,
                                   num_layers=args.layers, input_kind=task.input_kind)
        models = {b: build_model(cell, task, hidden_size=H, num_layers=args.layers, backend=b) for b in backends}
        for m in models.values():
            m.load_state_dict(models[backends[0]].state_dict())
        times: dict[str, list[float]] = {b: [] for b in backends}
        for r in range(args.rounds + 1):  # round 0 warms up (builds the kernels)
            for b, m in models.items():
                t0 = time.perf_counter()
                train(m, task, config)
                if r:
                    times[b].append((time.perf_counter() - t0) / args.steps)
        med = {b: statistics.median(v) * 1e3 for b, v in times.items()}
        print(f"{name:>10s} H={H:<4d}" + "".join(f"  {b} {v:6.2f} ms" for b, v in med.items())
              + "".join(f"  {b}/{backends[0]} {med[b] / med[backends[0]]:.2f}" for b in backends[1:]))


if __name__ == "__main__":
    main()
