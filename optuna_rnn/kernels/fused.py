"""The fused backend: a cell's plan run as a custom autograd function.

Forward: the maps of ``x`` for all steps in one product; then per step, per round, one
product per source and one fused pointwise kernel. Backward through time runs the stages
in reverse with their generated backward kernels and pushes gradients through the
products; weight, bias, input and initial-state gradients come out after the loop, each
weight gradient as one product over all steps.
On the CPU, with a compiler at hand, each direction's whole time loop is one call into
the generated C (:mod:`optuna_rnn.kernels.sequence`), its products through
:mod:`optuna_rnn.kernels.gemm`; elsewhere the loop runs in Python, one product and one
kernel launch at a time, and on CUDA the whole forward or backward call, that loop and
everything around it, is captured once per layout as a CUDA graph and replayed
(:mod:`optuna_rnn.kernels.graphs`). On the CPU, buffers that only
the call itself reads come from a pool (:mod:`optuna_rnn.kernels.workspace`) rather than
fresh pages. A call with nothing to differentiate (``torch.no_grad``, frozen weights)
runs the forward alone: no autograd node, and its scratch goes back at once.
"""

from __future__ import annotations

import ctypes
import weakref
from collections.abc import Mapping, Sequence
from functools import partial
from types import ModuleType
from typing import Any

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.cell.ir import BIAS
from optuna_rnn.kernels import executors, gemm
from optuna_rnn.kernels.build import load_library
from optuna_rnn.kernels.codegen_c import RUNNER, c_source, function_name
from optuna_rnn.kernels.codegen_triton import load_triton_module, triton_source
from optuna_rnn.kernels.graphs import CallGraphs
from optuna_rnn.kernels.layout import BIAS_GRADS, bias_blocks, slot
from optuna_rnn.kernels.plan import Plan, make_plan
from optuna_rnn.kernels.program import Program, backward_program, forward_program
from optuna_rnn.kernels.sequence import PACKED, Op, PackJob, Schedule, weight_buffer
from optuna_rnn.kernels.workspace import scratch
from optuna_rnn.nn.backends import LayerParams, LayerRunner
from optuna_rnn.nn.reference import values_of

__all__ = ["FusedCell", "fused_backend"]

_DTYPES = {torch.float32: "f32", torch.float64: "f64"}


POINTWISE = ("auto", "c", "triton", "torch")

Stacks = tuple[torch.Tensor | None, list[torch.Tensor]]  # FusedCell.stacks: (x maps, each product's)


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
        self.kept = frozenset({"S0", *(slot(plan, loc).buffer for loc in backward_reads)})
        self.sources = [slot(plan, ("val", prod.source)) for prod in plan.products]  # of the weight gradients
        # Every linear map's weight, the x maps first, then each product's; their spans.
        self.map_names = (*self.x_names, *(n for names in self.product_names for n in names))
        ends = [len(self.x_names)]
        for names in self.product_names:
            ends.append(ends[-1] + len(names))
        self.map_spans = list(zip([0, *ends[:-1]], ends))
        # What _Fused.backward returns, by name in _gradients' result ("": None).
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
        if self._executor(buffers["S0"].device, buffers["S0"].dtype) == "triton" and self.triton_module() is not None:
            return executors.bind_triton(getattr(self._triton, prog.name), slots, buffers, T, B, H)
        return executors.bind_torch(prog, slots, buffers, H)

    def run_loop(self, backward: bool, buffers: dict[str, torch.Tensor], T: int, B: int, H: int) -> None:
        """Run one direction's whole time loop: one call into C where it runs, else in
        Python."""
        if not self._run_c(backward, buffers, T, B, H, buffers["S0"].dtype):
            _python_loop(self, backward, buffers)

    def call_graphs(self, backward: bool, ref: torch.Tensor) -> CallGraphs | None:
        """What runs one direction's calls on ``ref``'s device and dtype as graphs; ``None``
        where they run eagerly: ``graphs`` says no, or the time loop is one C call anyway."""
        if not (ref.is_cuda if self.graphs is None else self.graphs) or self._c_product(ref) is not None:
            return None
        device = ref.device.type
        found = self._graphs.get((backward, device))
        if found is None:
            run = _backward_call if backward else _forward_call
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
        product = self._c_product(buffers["S0"])
        if product is None:
            return False
        key = _DTYPES[dtype]
        lib = self.library(key)
        # Every buffer's layout follows from these (the raw input's from its width; the
        # weights are contiguous, transposed in the forward).
        layout = (backward, key, B, H, buffers["x"].shape[-1] if "x" in buffers else 0)
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
            outs = _Fused.apply(self, x, len(states), len(pres), *states, *maps, *pres, *biases)
            return outs[0], tuple(outs[1:])
        # Nothing to differentiate (validation, sampling): no autograd node, nothing kept.
        result, _, taken = _forward_outputs(self, x.contiguous(), states, maps, pres, biases, keep=False)
        scratch.give(taken)
        return result["out"], tuple(result[f"final{i}"] for i in range(len(states)))

    def stacks(self, maps: Sequence[torch.Tensor]) -> Stacks:
        """``maps`` (as ``map_names`` orders them) as one contiguous matrix for the x maps
        (``None`` without any) and one per product, each map's rows after the other's."""
        spans = [maps[a:b] for a, b in self.map_spans]
        wx = _stack(spans[0]) if self.x_names else None
        return wx, [_stack(span) for span in spans[1:]]

    def _prologue(self, params: LayerParams, x: torch.Tensor, H: int) -> list[torch.Tensor]:
        """The ``pre`` leaves' values, ``(H,)`` each, through autograd."""
        if not self.plan.pre:
            return []
        values = values_of(self.cell, params, x, self.plan.prologue)
        return [values[self.plan.pre[leaf]].expand(H) for leaf in sorted(self.plan.pre)]


def _stack(mats: list[torch.Tensor]) -> torch.Tensor:
    """The maps of one product (or of x) as one contiguous matrix, as the C loop expects."""
    return mats[0].contiguous() if len(mats) == 1 else torch.cat(mats)


def _scratch(ref: torch.Tensor, shape: tuple[int, ...], taken: list[torch.Tensor] | None) -> torch.Tensor:
    """An uninitialised buffer that only this call reads: from the workspace on the CPU
    where ``taken`` records it to go back, a plain allocation elsewhere."""
    if taken is None or not ref.is_cpu:
        return ref.new_empty(shape)
    buf = scratch.take(shape, ref.dtype)
    taken.append(buf)
    return buf


def _given(
    core: FusedCell, weights: Sequence[torch.Tensor], pres: Sequence[torch.Tensor], biases: Sequence[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """The forward loop's buffers that are the call's inputs: the ``pre`` leaves'
    values, the biases, each product's weight transposed."""
    given = {f"P{leaf}": pre.contiguous() for leaf, pre in zip(sorted(core.plan.pre), pres)}
    for name, b in zip(core.biases, biases):
        given[f"b:{name}"] = b.contiguous()
    for p, w in enumerate(weights):
        given[weight_buffer(p)] = w.t()
    return given


def _forward_outputs(
    core: FusedCell, x: torch.Tensor, states: Sequence[torch.Tensor], maps: Sequence[torch.Tensor],
    pres: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], *, keep: bool,
) -> tuple[dict[str, torch.Tensor], Stacks | None, list[torch.Tensor]]:
    """:func:`_run_forward` for ``x`` (contiguous), through graphs where they run. Also
    returns the stacked weights (``None`` through graphs: the backward's graph stacks them
    again) and the scratch taken from the CPU workspace (none through graphs)."""
    graphs = core.call_graphs(False, x)
    if graphs is None:
        taken: list[torch.Tensor] = []
        stacks = core.stacks(maps)
        return _run_forward(core, x, states, stacks, pres, biases, keep, taken), stacks, taken
    inputs = {"x": x}
    for prefix, tensors in (("h", [s.contiguous() for s in states]), ("m", maps), ("pre", pres), ("bias", biases)):
        for k, t in enumerate(tensors):
            inputs[f"{prefix}{k}"] = t
    return graphs(inputs, keep), None, []


def _forward_call(core: FusedCell, inputs: Mapping[str, torch.Tensor], keep: bool) -> dict[str, torch.Tensor]:
    """:func:`_run_forward` for a graph's ``inputs``, named as :func:`_forward_outputs`
    names them."""
    def group(prefix: str, n: int) -> list[torch.Tensor]:
        return [inputs[f"{prefix}{k}"] for k in range(n)]

    plan = core.plan
    stacks = core.stacks(group("m", len(core.map_names)))
    pres, biases = group("pre", len(plan.pre)), group("bias", len(core.biases))
    return _run_forward(core, inputs["x"], group("h", len(plan.states)), stacks, pres, biases, keep, None)


def _run_forward(
    core: FusedCell, x: torch.Tensor, states: Sequence[torch.Tensor], stacks: Stacks,
    pres: Sequence[torch.Tensor], biases: Sequence[torch.Tensor], keep: bool, taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The forward's outputs: ``out``, each state after the last step as ``final{i}``
    (copies), and with ``keep`` the buffers the backward reads (``core.kept`` but ``x``)."""
    wx, weights = stacks
    buffers = _forward(core, x, wx, states, _given(core, weights, pres, biases), taken)
    S0 = buffers["S0"]
    T = S0.shape[0] - 1
    result = {"out": S0[1:]}
    for i in range(len(states)):
        result[f"final{i}"] = buffers[f"S{i}"][T].clone()
    if keep:
        for name, b in buffers.items():
            if name in core.kept and name != "x":
                result[name] = b
    return result


def _forward(
    core: FusedCell, x: torch.Tensor, wx: torch.Tensor | None, states: Sequence[torch.Tensor],
    given: dict[str, torch.Tensor], taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The forward pass: the x maps for all steps as one product, then the time loop.
    Returns the buffers (``S{i}`` row ``t + 1`` holds state ``i`` after step ``t``)."""
    plan = core.plan
    ref = states[0]
    T, B, H = x.shape[0], *ref.shape
    buffers = dict(given)
    if wx is not None:
        xw = _scratch(ref, (T, B, wx.shape[0]), taken)
        torch.mm(x.view(T * B, -1), wx.t(), out=xw.view(T * B, -1))
        buffers["xw"] = xw
    if plan.reads_x:
        buffers["x"] = x
    for i, s in enumerate(states):  # S0[1:] is the output; the others are this call's
        buffers[f"S{i}"] = ref.new_empty(T + 1, B, H) if i == 0 else _scratch(ref, (T + 1, B, H), taken)
        buffers[f"S{i}"][0].copy_(s)
    for p, (prod, block) in enumerate(zip(plan.products, plan.xw_blocks)):
        width = len(prod.linears) * H
        # A folded product accumulates into its XW blocks.
        buffers[f"Y{p}"] = _scratch(ref, (T, B, width), taken) if block is None else buffers["xw"].narrow(2, block * H, width)
    for n in plan.exports:
        if n not in plan.updates.values():
            buffers[f"E{n}"] = _scratch(ref, (T, B, H), taken)
    core.run_loop(False, buffers, T, B, H)
    return buffers


class _Fused(torch.autograd.Function):
    """The layer: x maps for all steps as one product, both time loops, and every gradient.

    The x maps' product runs in here, not as autograd's own ``mm``, so that it and its
    gradient are this call's scratch (see :mod:`optuna_rnn.kernels.workspace`). It takes
    each map's weight as it is and stacks them itself (on CUDA inside the call's graph),
    returning each map's gradient as a view of its stack's.
    """

    @staticmethod
    def forward(ctx: Any, core: FusedCell, x: torch.Tensor, n_states: int, n_pres: int,
                *rest: torch.Tensor) -> tuple[torch.Tensor, ...]:
        n_maps = len(core.map_names)
        states, maps = rest[:n_states], rest[n_states : n_states + n_maps]
        pres, biases = rest[n_states + n_maps : n_states + n_maps + n_pres], rest[n_states + n_maps + n_pres :]
        x = x.contiguous()
        result, stacks, taken = _forward_outputs(core, x, states, maps, pres, biases, keep=True)
        ctx.core, ctx.maps, ctx.stacks = core, maps, stacks
        ctx.set_materialize_grads(False)  # an unused output's gradient comes as None, not zeros
        ctx.buffers = {name: b for name, b in result.items() if name in core.kept}
        if "x" in core.kept:
            ctx.buffers["x"] = x
        ctx.save_for_backward(x)
        saved = {b.untyped_storage().data_ptr() for b in ctx.buffers.values()}  # views too
        scratch.give(b for b in taken if b.untyped_storage().data_ptr() not in saved)
        later = [b for b in taken if b.untyped_storage().data_ptr() in saved]
        if later:  # once autograd lets go of the graph, never while a backward may still run
            weakref.finalize(ctx, scratch.give, later)
        return (result["out"], *(result[f"final{i}"] for i in range(n_states)))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, dout: torch.Tensor | None, *dfinals: torch.Tensor | None) -> tuple:
        core = ctx.core
        (x,) = ctx.saved_tensors
        graphs = core.call_graphs(True, x)
        if graphs is None:
            taken: list[torch.Tensor] = []
            grads = _gradients(core, dict(ctx.buffers), x, ctx.stacks, dout, dfinals, ctx.needs_input_grad, taken)
            scratch.give(taken)
        else:
            inputs = {**ctx.buffers, "x": x}
            for k, m in enumerate(ctx.maps):
                inputs[f"m{k}"] = m
            # Gradients as from out.sum() (expanded) come in as whole tensors.
            for name, d in (("dout", dout), *((f"dfinal{i}", d) for i, d in enumerate(dfinals))):
                if d is not None:
                    inputs[name] = d.contiguous()
            grads = graphs(inputs, ctx.needs_input_grad)
        return tuple(map(grads.get, core.grad_names))


def _backward_call(core: FusedCell, inputs: Mapping[str, torch.Tensor], needs: tuple[bool, ...]) -> dict[str, torch.Tensor]:
    """:func:`_gradients` for a graph's ``inputs``: what the forward kept, ``x``, each
    map's weight ``m{k}`` (stacked here again), and where given ``dout`` and ``dfinal{i}``."""
    kept = {name: b for name, b in inputs.items() if name in core.kept}
    stacks = core.stacks([inputs[f"m{k}"] for k in range(len(core.map_names))])
    dfinals = [inputs.get(f"dfinal{i}") for i in range(len(core.plan.states))]
    return _gradients(core, kept, inputs["x"], stacks, inputs.get("dout"), dfinals, needs, None)


def _gradients(
    core: FusedCell, buffers: dict[str, torch.Tensor], x: torch.Tensor, stacks: Stacks,
    dout: torch.Tensor | None, dfinals: Sequence[torch.Tensor | None], needs: tuple[bool, ...],
    taken: list[torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    """The backward, given ``buffers`` (what the forward kept; the backward's own are added
    to it), the stacked weights, the outputs' gradients (``None``: zero) and which of
    ``_Fused.forward``'s inputs ``needs`` a gradient: ``dx``, ``dh{i}`` (initial states),
    ``dm{k}`` (each map's weight, views of its stack's gradient), ``dP{j}`` (``pre``
    leaves), ``db{j}`` (biases)."""
    plan = core.plan
    wx, weights = stacks
    for p, w in enumerate(weights):
        buffers[weight_buffer(p)] = w
    ref = buffers["S0"]
    T, B, H = x.shape[0], *ref.shape[1:]
    if dout is None:
        buffers["dout"] = ref.new_zeros(T, B, H)
    else:  # as from out.sum(), an expanded gradient
        buffers["dout"] = dout if dout.is_contiguous() else _scratch(ref, (T, B, H), taken).copy_(dout)
    # Gradient buffers that some kernel accumulates into start at zero; the others are
    # stored whole by one kernel per step. dx is returned, the others only read here.
    def grads_of(nodes: tuple[int, ...], shape: tuple[int, ...], returned: bool = False) -> torch.Tensor:
        g = ref.new_empty(shape) if returned else _scratch(ref, shape, taken)
        return g if all(n in plan.stored_grads for n in nodes) else g.zero_()

    if wx is not None:
        buffers["dxw"] = grads_of(plan.x_linears, (T, B, wx.shape[0]))
    if plan.reads_x:
        buffers["dx"] = grads_of((plan.x_index,), x.shape, returned=True)
    for leaf in plan.pre:
        buffers[f"dP{leaf}"] = ref.new_zeros(1, B, H)
    for p, (prod, block) in enumerate(zip(plan.products, plan.xw_blocks)):
        width = len(prod.linears) * H
        folded = block is not None
        buffers[f"dY{p}"] = buffers["dxw"].narrow(2, block * H, width) if folded else grads_of(prod.linears, (T, B, width))
    for n in plan.grad_exports:
        buffers[f"gE{n}"] = ref.new_zeros(1, B, H)
    n_states = len(plan.states)
    for i in range(n_states):
        buffers[f"gS{i}"] = ref.new_zeros(2, B, H)
        if dfinals[i] is not None:
            buffers[f"gS{i}"][T % 2].copy_(dfinals[i])
    n_blocks, blocks = core.bias_blocks
    if blocks:
        buffers[BIAS_GRADS] = ref.new_zeros(1, B, n_blocks * H)
    core.run_loop(True, buffers, T, B, H)
    grads: dict[str, torch.Tensor] = {}
    dx = buffers.get("dx")
    first = 4 + n_states  # forward's maps follow core, x, two counts and the states
    stacked = []  # each stack's gradient, None where none of its maps needs one
    if wx is not None:
        dxw = buffers["dxw"].view(T * B, -1)
        stacked.append(dxw.T @ x.view(T * B, -1) if any(needs[first : first + len(core.x_names)]) else None)
        if needs[1]:
            dx = (dxw @ wx).view(x.shape) if dx is None else dx.view(T * B, -1).addmm_(dxw, wx).view(x.shape)
    if dx is not None:
        grads["dx"] = dx
    for p, source in enumerate(core.sources):
        stacked.append(buffers[f"dY{p}"].view(T * B, -1).T @ source.rows(buffers, T, H).reshape(T * B, H))
    for (start, end), g in zip(core.map_spans[0 if wx is not None else 1 :], stacked):
        if g is not None:
            for k, part in enumerate(g.split(H) if end - start > 1 else (g,), start):
                grads[f"dm{k}"] = part
    if blocks:
        summed = buffers[BIAS_GRADS][0].sum(0).view(n_blocks, H).unbind(0)
        for j, k in enumerate(blocks):
            grads[f"db{j}"] = summed[k]
    for i in range(n_states):
        if needs[4 + i]:  # forward's states follow core, x and two counts
            grads[f"dh{i}"] = buffers[f"gS{i}"][0]  # gS: this call's own
    for j, leaf in enumerate(sorted(plan.pre)):
        grads[f"dP{j}"] = buffers[f"dP{leaf}"][0].sum(0)
    return grads


def _products_by_round(plan: Plan) -> list[list[int]]:
    out: list[list[int]] = [[] for _ in plan.stages]
    for p, prod in enumerate(plan.products):
        out[prod.round].append(p)
    return out


def _python_loop(core: FusedCell, backward: bool, buffers: Mapping[str, torch.Tensor]) -> None:
    """One direction's time loop in Python: a product or a kernel launch at a time."""
    plan = core.plan
    T, B, H = buffers["S0"].shape
    T -= 1  # S0 holds the initial state and one row per step
    programs = core.backward_programs if backward else core.forward_programs
    kernels = [core.step_fn(p, buffers, T, B, H) if p else None for p in programs]
    by_round = _products_by_round(plan)
    weights = [buffers[weight_buffer(p)].contiguous() for p in range(len(plan.products))]  # faster on the CPU
    if not backward:
        sources = [slot(plan, ("val", prod.source)).views(buffers, T, H) for prod in plan.products]
        targets = [buffers[f"Y{p}"].unbind(0) for p in range(len(plan.products))]
        for t in range(T):
            for k, kernel in enumerate(kernels):
                for p in by_round[k]:
                    if plan.xw_blocks[p] is None:
                        torch.mm(sources[p][t], weights[p], out=targets[p][t])
                    else:
                        targets[p][t].addmm_(sources[p][t], weights[p])
                if kernel is not None:
                    kernel(t)
        return
    grads = [slot(plan, ("grad", prod.source)).views(buffers, T, H) for prod in plan.products]
    douts = [buffers[f"dY{p}"].unbind(0) for p in range(len(plan.products))]
    for t in reversed(range(T)):
        for k in reversed(range(len(kernels))):
            if kernels[k] is not None:
                kernels[k](t)
            for p in by_round[k]:
                grads[p][t].addmm_(douts[p][t], weights[p])


_compiled: dict[tuple, FusedCell] = {}


def fused_backend(cell: Cell) -> LayerRunner:
    """Bind ``cell`` to the fused backend (compiled once per structure and process)."""
    key = (cell.nodes, tuple(cell.updates.items()))
    if key not in _compiled:
        _compiled[key] = FusedCell(cell)
    return _compiled[key]
