"""Fused kernels vs PyTorch's RNNs and the reference backend: one training step each.

One step = forward + backward of the recurrent core (loss: sum of the outputs; the
input needs its gradient, as an embedding's output would). All
contenders run interleaved, round-robin, so background load hits them alike; each
reports the median of ``--reps`` steps. Each turn runs a contender's step twice in a
row, and both are reported: the first comes right after another model's steps, whose
data has pushed its own out of the caches; the second runs as a training loop runs its
steps, one after the other. Also: cold build and warm (cached) load time of
new cells' kernels, the GFLOP/s of the fused steps against a large matrix product
timed among them, and, for scale, how much faster than the reference LSTM PyTorch's own
LSTM runs.

    python benchmarks/kernels.py [--reps 20] [--sizes a,b] [--threads N] [--device cpu] [--tf32]
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import torch

from optuna_rnn import Cell, CellRNN, mutate, zoo
from optuna_rnn.kernels import build
from optuna_rnn.kernels.fused import FusedCell
from optuna_rnn.kernels.layer import FusedLayer
from optuna_rnn.nn.backends import register_backend

EAGER = "fused-no-graphs"  # CUDA: the fused backend without CUDA graphs
SIZES = {"a": (35, 20, 200, 200), "b": (40, 32, 64, 128), "c": (100, 64, 512, 512)}


def mutants(n: int, seed: int = 0) -> list[Cell]:
    """``n`` seeded mutants of LSTM and GRU (one mutation each), all distinct."""
    rng = np.random.default_rng(seed)
    out: dict[str, Cell] = {}
    while len(out) < n:
        cell = mutate(zoo.get(("lstm", "gru")[len(out) % 2]), rng)
        out.setdefault(cell.fingerprint, cell)
    return list(out.values())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_fn(module: torch.nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        out, _ = module(x)
        out.sum().backward()

    return step


def interleaved(
    contenders: dict[str, Callable[[], None]], reps: int, device: torch.device
) -> dict[str, float]:
    """Median seconds per call, contenders called round-robin (after two warm-ups each:
    on CUDA the fused backend captures a layout's graphs on its second call)."""
    return in_a_row(contenders, reps, device, 1)[0]


def in_a_row(
    contenders: dict[str, Callable[[], None]], reps: int, device: torch.device, calls: int
) -> list[dict[str, float]]:
    """As :func:`interleaved`, but each turn calls a contender ``calls`` times in a row:
    the median seconds of the first calls, of the second calls, and so on."""
    for _ in range(2):
        for fn in contenders.values():
            fn()
    times: list[dict[str, list[float]]] = [{k: [] for k in contenders} for _ in range(calls)]
    for _ in range(reps):
        for name, fn in contenders.items():
            for k in range(calls):
                sync(device)
                t0 = time.perf_counter()
                fn()
                sync(device)
                times[k][name].append(time.perf_counter() - t0)
    return [{k: statistics.median(v) for k, v in position.items()} for position in times]


def step_flops(module: CellRNN, T: int, B: int) -> float:
    """Matrix-product FLOPs of forward + backward (backward = 2x forward)."""
    fwd = sum(2.0 * T * B * w.shape[0] * w.shape[1] for w in module.parameters() if w.dim() == 2)
    return 3 * fwd


def build_times(cells: list[Cell]) -> tuple[list[float], list[float]]:
    """Cold build and warm load seconds of each cell's float32 kernels, in a fresh cache."""
    cold, warm = [], []
    with tempfile.TemporaryDirectory() as tmp:
        old = os.environ.get(build.CACHE_ENV)
        os.environ[build.CACHE_ENV] = tmp
        try:
            for cell in cells:
                t0 = time.perf_counter()
                FusedCell(cell).library("f32")
                cold.append(time.perf_counter() - t0)
                build._loaded.clear()  # as a new process would: from the disk cache
                t0 = time.perf_counter()
                FusedCell(cell).library("f32")
                warm.append(time.perf_counter() - t0)
        finally:
            if old is None:
                del os.environ[build.CACHE_ENV]
            else:
                os.environ[build.CACHE_ENV] = old
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--sizes", default="a,b")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mutants", type=int, default=10)
    parser.add_argument("--tf32", action="store_true", help="CUDA: let products and cuDNN use TF32")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda":  # every contender in real float32 (cuDNN's RNNs default to TF32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = args.tf32
        register_backend(EAGER, lambda cell: FusedLayer(FusedCell(cell, graphs=False)))
    print(f"# optuna-rnn kernel benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}"
        + (
            f" ({torch.cuda.get_device_name(device)}, TF32 {'on' if args.tf32 else 'off'})"
            if device.type == "cuda"
            else ""
        )
        + "; two steps in a row per turn"
    )
    extra = mutants(args.mutants)
    cold, warm = build_times(mutants(5, seed=12345))
    print(
        f"build of a new cell (float32): cold median {statistics.median(cold) * 1e3:.0f} ms "
        f"(max {max(cold) * 1e3:.0f}), cached load median {statistics.median(warm) * 1e3:.1f} ms "
        f"(max {max(warm) * 1e3:.1f})"
    )
    for size in args.sizes.split(","):
        T, B, I, H = SIZES[size]
        print(
            f"\n## size ({size}) T={T} B={B} I={I} H={H}, ms per training step (median of {args.reps})"
        )
        torch.manual_seed(0)
        x = torch.randn(T, B, I, device=device, requires_grad=True)  # as from an embedding
        modules: dict[str, torch.nn.Module] = {
            "nn.LSTM": torch.nn.LSTM(I, H),
            "fused lstm": CellRNN(zoo.get("lstm"), I, H, backend="fused"),
            "ref lstm": CellRNN(zoo.get("lstm"), I, H, backend="reference"),
            "nn.GRU": torch.nn.GRU(I, H),
            "fused gru_torch": CellRNN(zoo.get("gru_torch"), I, H, backend="fused"),
        }
        modules["ref lstm"].load_state_dict(modules["fused lstm"].state_dict())
        pairs = [
            ("fused lstm", "nn.LSTM", "bar <= 1.10"),
            ("fused gru_torch", "nn.GRU", "bar <= 0.75"),
        ]
        if device.type == "cuda":
            pairs = [
                ("fused lstm", "nn.LSTM", "bar <= 1.50"),
                ("fused gru_torch", "nn.GRU", "bar <= 1.50"),
            ]
            # What the CUDA graphs buy (the same calls launched one by one), and the native
            # backend (cuDNN, for exact LSTM and GRU cells) against the fused one.
            for name in ("lstm", "gru_torch"):
                for label, backend in (("no graphs", EAGER), ("native", "native")):
                    modules[f"{name} {label}"] = CellRNN(zoo.get(name), I, H, backend=backend)
                    modules[f"{name} {label}"].load_state_dict(
                        modules[f"fused {name}"].state_dict()
                    )
                    pairs.append((f"{name} {label}", f"fused {name}", label))
        cells = [(n, zoo.get(n)) for n in ("mut1", "mut2", "mut3")]
        cells += [(f"mutant{k}", c) for k, c in enumerate(extra)]
        for name, cell in cells:
            modules[f"fused {name}"] = CellRNN(cell, I, H, backend="fused")
            modules[f"ref {name}"] = CellRNN(cell, I, H, backend="reference")
            modules[f"ref {name}"].load_state_dict(modules[f"fused {name}"].state_dict())
        for m in modules.values():
            m.to(device)
        big = torch.randn(1024, 1024, device=device)
        contenders = {k: step_fn(m, x) for k, m in modules.items()}
        contenders["matmul"] = functools.partial(torch.mm, big, big)  # same conditions
        labels = [
            "the first step of a turn, right after another model's",
            "the second step in a row",
        ]
        for times, label in zip(in_a_row(contenders, args.reps, device, 2), labels):
            print(f"### {label}")
            report(times, modules, pairs, cells, T, B)


def report(
    times: dict[str, float],
    modules: dict[str, torch.nn.Module],
    pairs: list[tuple[str, str, str]],
    cells: list[tuple[str, Cell]],
    T: int,
    B: int,
) -> None:
    """Print one size's table: the large product's rate, each pair's ratio, each cell's
    speedup over the reference and their median, the reference LSTM for scale."""
    peak = 2 * 1024**3 / times["matmul"] / 1e9
    print(f"large matmul (1024^3, float32, interleaved): {peak:.1f} GFLOP/s")
    for a, b, bar in pairs:
        gf = step_flops(modules[a], T, B) / times[a] / 1e9
        print(
            f"{a:>19s} {times[a] * 1e3:8.2f}  {b:>15s} {times[b] * 1e3:8.2f}  ratio {times[a] / times[b]:.2f} "
            f"({bar})  {gf:.1f} GFLOP/s = {gf / peak:.0%} of matmul"
        )
    speedups = []
    for name, _ in cells:
        f, r = times[f"fused {name}"], times[f"ref {name}"]
        speedups.append(r / f)
        gf = step_flops(modules[f"fused {name}"], T, B) / f / 1e9
        print(
            f"{name:>16s} fused {f * 1e3:8.2f}  reference {r * 1e3:8.2f}  speedup {r / f:5.2f}x  "
            f"fused {gf:.1f} GFLOP/s"
        )
    print(
        f"median speedup over the reference (mut1-3 and {len(cells) - 3} mutants): "
        f"{statistics.median(speedups):.2f}x (bar >= 4)"
    )
    # For scale: what PyTorch's own LSTM kernel gains over the same eager reference.
    r = times["ref lstm"]
    print(
        f"the reference lstm {r * 1e3:.2f} ms: nn.LSTM is {r / times['nn.LSTM']:.2f}x faster, "
        f"fused lstm {r / times['fused lstm']:.2f}x"
    )


if __name__ == "__main__":
    main()
