"""Does PTB learn at a preset? Train GRU and LSTM at fixed settings, print the unigram beside.

Each cell trains once per learning rate through the library's own objective (the same
code path as a study's trial), single-threaded. The table gives its wall and CPU seconds
(on a shared machine the CPU seconds are what the trial takes alone) and its validation
perplexity beside the unigram model's on the same validation split (about 687); the bar
is half of that.

Run: nice -n 10 python studies/ptb_check.py --seconds 120 --learning-rates 0.003
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import optuna
import torch

from optuna_rnn import GatedSpace, make_objective, zoo
from optuna_rnn.hyperparameters import Hyperparameters
from optuna_rnn.tasks import PennTreebank


def unigram_perplexity(task: PennTreebank, split: str = "valid") -> float:
    """The perplexity on ``split`` of word frequencies counted on the training split."""
    counts = torch.bincount(task.streams["train"], minlength=task.output_size).double()
    log_p = torch.log(counts / counts.sum())
    return math.exp(-log_p[task.streams[split]].mean().item())


def train_once(
    task: PennTreebank, cell: str, hyperparameters: Hyperparameters, **objective: object
) -> optuna.trial.FrozenTrial:
    """One trial of ``cell`` at the single setting ``hyperparameters`` holds."""
    space = GatedSpace()
    study = optuna.create_study(direction="minimize")
    study.enqueue_trial(space.encode(zoo.get(cell)))
    study.optimize(
        make_objective(
            task,
            space=space,
            hyperparameters=hyperparameters,
            optimizer="adam",
            notes=False,
            **objective,
        ),
        n_trials=1,
    )
    return study.trials[0]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cells", default="gru,lstm")
    parser.add_argument("--learning-rates", default="0.003", help="comma-separated")
    parser.add_argument("--param-budget", type=int, default=1_000_000)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--init-scale", type=float, default=1.0)
    parser.add_argument("--max-grad-norm", type=float, default=5.0)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--seconds", type=float, default=120.0, help="wall-time cap per trial")
    parser.add_argument("--steps", type=int, default=10**9, help="step budget per trial")
    parser.add_argument("--eval-every", type=int, default=500)
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = PennTreebank(bptt=args.bptt)
    unigram = unigram_perplexity(task)
    print(f"unigram validation perplexity {unigram:.1f}; bar (half) {unigram / 2:.1f}")
    print("cell    lr      params  width  steps  tok/s  wall_s  cpu_s  valid_ppl  /unigram  ended")
    for lr in (float(v) for v in args.learning_rates.split(",")):
        for cell in args.cells.split(","):
            hp = Hyperparameters(
                init_scales=(args.init_scale,),
                learning_rates=(lr,),
                max_grad_norms=(args.max_grad_norm,),
                layer_counts=(args.layers,),
                param_budgets=(args.param_budget,),
            )
            start, cpu = time.perf_counter(), time.process_time()
            trial = train_once(
                task,
                cell,
                hp,
                batch_size=args.batch_size,
                max_steps=args.steps,
                max_seconds=args.seconds,
                eval_every=args.eval_every,
            )
            seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
            a = trial.user_attrs
            ppl = trial.value if trial.value is not None else math.nan
            print(
                f"{cell:7} {lr:<7g} {a.get('param_count', 0):>7} {a.get('width', 0):>5} "
                f"{a.get('steps', 0):>6} {a.get('tokens_per_second', math.nan):>6.0f} "
                f"{seconds:>6.0f} {cpu:>6.0f}  {ppl:>9.1f}  {ppl / unigram:>8.3f}  "
                f"{a.get('ended_because', trial.state.name)}",
                flush=True,
            )


if __name__ == "__main__":
    main()
