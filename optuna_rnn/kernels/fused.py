"""The fused backend: a cell compiled to a plan, generated kernels, and their layer.

Forward: the maps of ``x`` for all steps in one product; then per step, per round, one
product per source and one fused pointwise kernel. Backward through time runs the stages
in reverse with their generated backward kernels and pushes gradients through the
products (:mod:`optuna_rnn.kernels.passes`, one autograd node:
:mod:`optuna_rnn.kernels.function`).
On the CPU, with a compiler at hand, each direction's whole time loop is one call into
the generated C (:mod:`optuna_rnn.kernels.sequence`), its products through
:mod:`optuna_rnn.kernels.gemm`; elsewhere the loop runs in Python, one product and one
kernel launch at a time (:mod:`optuna_rnn.kernels.pyloop`), and on CUDA the whole forward or backward call, that loop and
everything around it, is captured once per layout as a CUDA graph and replayed
(:mod:`optuna_rnn.kernels.graphs`). On the CPU, buffers that only
the call itself reads come from a pool (:mod:`optuna_rnn.kernels.workspace`) rather than
fresh pages. A call with nothing to differentiate (``torch.no_grad``, frozen weights)
runs the forward alone: no autograd node, and its scratch goes back at once.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence
from functools import partial
from types import ModuleType
from typing import Any

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.cell.ir import BIAS
from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels import executors, gemm
from optuna_rnn.kernels.buffers import PACKED, X
from optuna_rnn.kernels.build import load_library
from optuna_rnn.kernels.codegen_c import RUNNER, c_source, function_name
from optuna_rnn.kernels.codegen_triton import load_triton_module, triton_source
from optuna_rnn.kernels.function import FusedFunction
from optuna_rnn.kernels.graphs import CallGraphs
from optuna_rnn.kernels.layout import bias_blocks, slot
from optuna_rnn.kernels.passes import (
    Stacks,
    backward_call,
    forward_call,
    forward_outputs,
    stack,
)
from optuna_rnn.kernels.plan import Plan, make_plan
from optuna_rnn.kernels.program import Program, backward_program, forward_program
from optuna_rnn.kernels.pyloop import python_loop
from optuna_rnn.kernels.sequence import Op, PackJob, Schedule
from optuna_rnn.kernels.workspace import scratch
from optuna_rnn.nn.backends import LayerParams, LayerRunner
from optuna_rnn.nn.reference import values_of

__all__ = ["FusedCell", "fused_backend"]

_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


POINTWISE = ("auto", "c", "triton", "torch")

class FusedCell:
    """A cell compiled for the fused backend: plan, programs and their kernels.

    ``pointwise`` picks what runs the pointwise programs: "c" (built by the system
    compiler, CPU), "triton" (CUDA, or Triton's interpreter with ``TRITON_INTERPRET=1``),
    "torch" (plain ops, anywhere) or "auto": C on the CPU and Triton on CUDA, falling back
    to torch where those are missing. ``graphs`` says whether a time loop that runs in
    Python runs its forward and backward calls through
    :class:`~optuna_rnn.kernels.graphs.CallGraphs`: ``None`` (the default) on CUDA only;
    ``True`` elsewhere runs them eagerly on the graphs' own buffers.
    """

    def __init__(self, cell: Cell, *, pointwise: str = "auto", graphs: bool | None = None) -> None:
        if pointwise not in POINTWISE:
            raise ValueError(f"pointwise must be one of {POINTWISE}, got {pointwise!r}")
        self.pointwise = pointwise
        self.graphs = graphs
        self._graphs: dict[tuple[bool, str], CallGraphs] = {}
        self.cell = cell
        self.plan: Plan = make_plan(cell)
        plan = self.plan
        # Names of the x maps (XW's blocks, in order) and of each product's maps.
        self.x_names = tuple(plan.nodes[i].name for i in plan.x_linears)
        self.product_names = [tuple(plan.nodes[i].name for i in p.linears) for p in plan.products]
        self.forward_programs = [forward_program(plan, k) if s else None for k, s in enumerate(plan.stages)]
        self.backward_programs = [backward_program(plan, k) if s else None for k, s in enumerate(plan.stages)]
        programs = [p for p in self.forward_programs + self.backward_programs if p is not None]
        self.slots = {p.name: [slot(plan, loc) for loc in p.args] for p in programs}
        self._widths = [(p, [None if s.vec else s.width for s in self.slots[p.name]]) for p in programs]
        self._libraries: dict[str, ctypes.CDLL | None] = {}
        read = {loc[1] for p in programs for loc in p.args if loc[0] == "val"}
        self.biases = tuple(n.name for i, n in enumerate(plan.nodes) if n.op == BIAS and i in read)
        # The bias-gradient buffer's column blocks, and the block of each of ``biases``.
        blocks = bias_blocks(plan)
        self.bias_blocks = (len(blocks), [blocks.index(name) for name in self.biases])
        # Forward buffers the backward reads: its programs' values and the weight
        # gradients' sources. The others are freed when the forward ends.
        backward_reads = [loc for p in self.backward_programs if p is not None for loc in p.args if loc[0] == "val"]
        backward_reads += [("val", prod.source) for prod in plan.products]
        self.kept = frozenset({names.state(0), *(slot(plan, loc).buffer for loc in backward_reads)})
        self.sources = [slot(plan, ("val", prod.source)) for prod in plan.products]  # of the weight gradients
        # Every linear map's weight, the x maps first, then each product's; their spans.
        self.map_names = (*self.x_names, *(n for maps in self.product_names for n in maps))
        ends = [len(self.x_names)]
        for maps in self.product_names:
            ends.append(ends[-1] + len(maps))
        self.map_spans = list(zip([0, *ends[:-1]], ends))
        # What FusedFunction.backward returns, by name in gradients' result ("": None).
        self.grad_names = (
            "", "dx", "", "",
            *(f"dh{i}" for i in range(len(plan.states))),
            *(f"dm{k}" for k in range(len(self.map_names))),
            *(f"dP{j}" for j in range(len(plan.pre))),
            *(f"db{j}" for j in range(len(self.biases))),
        )
        self._runners: dict[str, Any] = {}
        self._triton: ModuleType | bool | None = None
        self._schedules: dict[tuple, Schedule] = {}

    def source(self, dtype: str) -> str:
        """The generated C for ``dtype`` ("f32" or "f64")."""
        return c_source(self._widths, dtype)

    def library(self, dtype: str) -> ctypes.CDLL | None:
        """The compiled kernels for ``dtype``: built (or loaded from the cache) on first use;
        ``None`` without a working compiler."""
        if dtype not in self._libraries:
            self._libraries[dtype] = load_library(self.source(dtype))
        return self._libraries[dtype]

    def triton_module(self) -> ModuleType | None:
        """The Triton kernels (imported on first use); ``None`` without Triton."""
        if self._triton is None:
            try:
                self._triton = load_triton_module(triton_source(self._widths))
            except ImportError:
                self._triton = False
        return self._triton or None

    def _executor(self, device: torch.device, dtype: torch.dtype) -> str:
        if self.pointwise != "auto":
            return self.pointwise
        if device.type == "cpu":
            return "c" if dtype in _DTYPES else "torch"
        return "triton" if device.type == "cuda" else "torch"

    def step_fn(
        self, prog: Program, buffers: Mapping[str, torch.Tensor], T: int, B: int, H: int
    ) -> executors.StepFn:
        """Step function of ``prog`` for the Python time loop: Triton kernels where they
        run, torch ops elsewhere (C runs only inside :meth:`run_loop`)."""
        slots = self.slots[prog.name]
        if self._executor(buffers[names.state(0)].device, buffers[names.state(0)].dtype) == "triton" and self.triton_module() is not None:
            return executors.bind_triton(getattr(self._triton, prog.name), slots, buffers, T, B, H)
        return executors.bind_torch(prog, slots, buffers, H)

    def run_loop(self, backward: bool, buffers: dict[str, torch.Tensor], T: int, B: int, H: int) -> None:
        """Run one direction's whole time loop: one call into C where it runs, else in
        Python."""
        if not self._run_c(backward, buffers, T, B, H, buffers[names.state(0)].dtype):
            python_loop(self, backward, buffers)

    def call_graphs(self, backward: bool, ref: torch.Tensor) -> CallGraphs | None:
        """What runs one direction's calls on ``ref``'s device and dtype as graphs; ``None``
        where they run eagerly: ``graphs`` says no, or the time loop is one C call anyway."""
        if not (ref.is_cuda if self.graphs is None else self.graphs) or self._c_product(ref) is not None:
            return None
        device = ref.device.type
        found = self._graphs.get((backward, device))
        if found is None:
            run = backward_call if backward else forward_call
            found = self._graphs.setdefault((backward, device), CallGraphs(partial(run, self), capture=device == "cuda"))
        return found

    def _c_product(self, ref: torch.Tensor) -> int | None:
        """The C product's address where the time loop runs in C for ``ref``'s device and
        dtype (building the kernels on first use); ``None`` where it does not."""
        key = _DTYPES.get(ref.dtype)
        if key is None or self._executor(ref.device, ref.dtype) != "c" or self.library(key) is None:
            return None
        return gemm.address(key)

    def _run_c(
        self, backward: bool, buffers: dict[str, torch.Tensor], T: int, B: int, H: int, dtype: torch.dtype
    ) -> bool:
        """Run one direction's whole time loop in C; ``False`` (nothing run) where that is
        not possible here: not C on the CPU, or no working compiler."""
        product = self._c_product(buffers[names.state(0)])
        if product is None:
            return False
        key = _DTYPES[dtype]
        lib = self.library(key)
        # Every buffer's layout follows from these (the raw input's from its width; the
        # weights are contiguous, transposed in the forward).
        layout = (backward, key, B, H, buffers[X].shape[-1] if X in buffers else 0)
        found = self._schedules.get(layout)
        if found is None or found.T < T:
            programs = self.backward_programs if backward else self.forward_programs
            kernels = [
                (ctypes.cast(getattr(lib, function_name(p, key)), ctypes.c_void_p).value, self.slots[p.name])
                if p else None
                for p in programs
            ]
            found = Schedule(self.plan, kernels, backward=backward, buffers=buffers, T=T, B=B, H=H)
            if len(self._schedules) >= 64:
                self._schedules.clear()
            self._schedules[layout] = found
        runner = self._runners.get(key)
        if runner is None:
            runner = self._runners[key] = getattr(lib, f"{RUNNER}_{key}")
            runner.argtypes = [ctypes.c_long] * 5 + [ctypes.POINTER(Op), ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                               ctypes.c_long, ctypes.c_long, ctypes.POINTER(PackJob), ctypes.c_long, ctypes.c_void_p]
            runner.restype = None
        packed = scratch.take((max(found.packed_size, 1),), dtype)
        try:
            found.run(runner, product, gemm.address(key, "pack"), {**buffers, PACKED: packed}, T, B, H)
        finally:
            scratch.give([packed])
        return True

    def __call__(
        self, params: LayerParams, x: torch.Tensor, states: tuple[torch.Tensor, ...]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        maps = [params.weights[n] for n in self.map_names]
        biases = [params.biases[n] for n in self.biases]
        pres = self._prologue(params, x, states[0].shape[-1])
        if torch.is_grad_enabled() and any(t.requires_grad for t in (x, *states, *maps, *pres, *biases)):
            outs = FusedFunction.apply(self, x, len(states), len(pres), *states, *maps, *pres, *biases)
            return outs[0], tuple(outs[1:])
        # Nothing to differentiate (validation, sampling): no autograd node, nothing kept.
        result, _, taken = forward_outputs(self, x.contiguous(), states, maps, pres, biases, keep=False)
        scratch.give(taken)
        return result["out"], tuple(result[f"final{i}"] for i in range(len(states)))

    def stacks(self, maps: Sequence[torch.Tensor]) -> Stacks:
        """``maps`` (as ``map_names`` orders them) as one contiguous matrix for the x maps
        (``None`` without any) and one per product, each map's rows after the other's."""
        spans = [maps[a:b] for a, b in self.map_spans]
        wx = stack(spans[0]) if self.x_names else None
        return wx, [stack(span) for span in spans[1:]]

    def _prologue(self, params: LayerParams, x: torch.Tensor, H: int) -> list[torch.Tensor]:
        """The ``pre`` leaves' values, ``(H,)`` each, through autograd."""
        if not self.plan.pre:
            return []
        values = values_of(self.cell, params, x, self.plan.prologue)
        return [values[self.plan.pre[leaf]].expand(H) for leaf in sorted(self.plan.pre)]


_compiled: dict[tuple, FusedCell] = {}


def fused_backend(cell: Cell) -> LayerRunner:
    """Bind ``cell`` to the fused backend (compiled once per structure and process)."""
    key = (cell.nodes, tuple(cell.updates.items()))
    if key not in _compiled:
        _compiled[key] = FusedCell(cell)
    return _compiled[key]
