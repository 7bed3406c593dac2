"""A cell compiled for the fused backend: its plan, generated kernels and time loops.

Forward: the maps of ``x`` for all steps in one product; then per step, per round, one
product per source and one fused pointwise kernel. Backward through time runs the stages
in reverse with their generated backward kernels and pushes gradients through the
products (:mod:`optuna_rnn.kernels.passes`; as PyTorch operators:
:mod:`optuna_rnn.kernels.ops`; as a layer: :mod:`optuna_rnn.kernels.layer`).
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
import itertools
import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import ModuleType
from typing import Any

import torch

from optuna_rnn.cell import Cell
from optuna_rnn.cell.ir import BIAS
from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels import executors, gemm
from optuna_rnn.kernels.buffers import PACKED, X_MAPS, X_MAPS_GRAD, X, grad
from optuna_rnn.kernels.build import load_library
from optuna_rnn.kernels.codegen_c import RUNNER, c_source, function_name
from optuna_rnn.kernels.codegen_triton import load_triton_module, triton_source
from optuna_rnn.kernels.gemm import C_DTYPES
from optuna_rnn.kernels.graphs import CallGraphs
from optuna_rnn.kernels.layout import bias_blocks, slot
from optuna_rnn.kernels.passes import Stacks, backward_call, forward_call, stack
from optuna_rnn.kernels.plan import Plan, make_plan
from optuna_rnn.kernels.program import Program, backward_program, forward_program
from optuna_rnn.kernels.pyloop import python_loop
from optuna_rnn.kernels.sequence import Op, PackJob, Schedule
from optuna_rnn.kernels.workspace import scratch

__all__ = ["FusedCell"]

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

    :attr:`key` names the instance to the operators of :mod:`optuna_rnn.kernels.ops`:
    it holds the cell and the options as JSON, so :meth:`of` rebuilds an equal one in a
    process that has not seen it (loading an exported program).
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
        self.forward_programs = [
            forward_program(plan, k) if s else None for k, s in enumerate(plan.stages)
        ]
        self.backward_programs = [
            backward_program(plan, k) if s else None for k, s in enumerate(plan.stages)
        ]
        programs = [p for p in self.forward_programs + self.backward_programs if p is not None]
        self.slots = {p.name: [slot(plan, loc) for loc in p.args] for p in programs}
        self._widths = [
            (p, [None if s.vec else s.width for s in self.slots[p.name]]) for p in programs
        ]
        self._libraries: dict[str, ctypes.CDLL | None] = {}
        read = {loc[1] for p in programs for loc in p.args if loc[0] == "val"}
        self.biases = tuple(n.name for i, n in enumerate(plan.nodes) if n.op == BIAS and i in read)
        # The bias-gradient buffer's column blocks, and the block of each of ``biases``.
        blocks = bias_blocks(plan)
        self.bias_blocks = (len(blocks), [blocks.index(name) for name in self.biases])
        # Forward buffers the backward reads: its programs' values and the weight
        # gradients' sources. The others are freed when the forward ends.
        backward_reads = [
            loc
            for p in self.backward_programs
            if p is not None
            for loc in p.args
            if loc[0] == "val"
        ]
        backward_reads += [("val", prod.source) for prod in plan.products]
        self.kept = frozenset({names.state(0), *(slot(plan, loc).buffer for loc in backward_reads)})
        self.sources = [
            slot(plan, ("val", prod.source)) for prod in plan.products
        ]  # of the weight gradients
        # Every linear map's weight, the x maps first, then each product's; their spans.
        self.map_names = (*self.x_names, *(n for maps in self.product_names for n in maps))
        ends = [len(self.x_names)]
        for maps in self.product_names:
            ends.append(ends[-1] + len(maps))
        self.map_spans = list(zip([0, *ends[:-1]], ends))
        # The spans of the stacks (see ``list_stacks``), those of more than one map, and
        # per stack its gradient's buffer and the slot of its operand (None: x).
        self.stack_spans = [(a, b) for a, b in self.map_spans if b > a]
        self.stacked = frozenset(j for j, (a, b) in enumerate(self.stack_spans) if b - a > 1)
        self.stack_sources = [(X_MAPS_GRAD, None)] * bool(self.x_names)
        self.stack_sources += [(grad(names.product(p)), s) for p, s in enumerate(self.sources)]
        self.uses_x = plan.reads_x or bool(self.x_names)
        # The pointwise nodes the forward stores in buffers of their own (not a state's).
        self.stored = tuple(n for n in plan.exports if n not in plan.updates.values())
        # The buffers the forward makes and the backward reads, state 0's first: the
        # forward operator's outputs (a folded product is a view of the x maps').
        given = {X, *(names.pre(leaf) for leaf in plan.pre), *(names.bias(b) for b in self.biases)}
        folded = {names.product(p) for p, block in enumerate(plan.xw_blocks) if block is not None}
        made = {X_MAPS if name in folded else name for name in self.kept - given}
        self.saved = (names.state(0), *sorted(made - {names.state(0)}))
        # Each saved buffer's shape: (rows beyond T, column blocks of H).
        rows = {names.state(i): (1, 1) for i in range(len(plan.states))} | {
            X_MAPS: (0, len(self.x_names))
        }
        rows |= {names.product(p): (0, len(prod.linears)) for p, prod in enumerate(plan.products)}
        self._rows = {name: rows.get(name, (0, 1)) for name in self.saved}
        spec = json.dumps(
            {"cell": cell.to_dict(), "pointwise": pointwise, "graphs": graphs}, sort_keys=True
        )
        self.key = f"{spec}#{next(_serial)}"
        _instances[self.key] = self
        self._runners: dict[str, Any] = {}
        self._triton: ModuleType | bool | None = None
        self._schedules: dict[tuple, Schedule] = {}
        self._c_products: dict[tuple[str, torch.dtype], int | None] = {}
        self._gradient_outputs: dict[tuple[bool, ...], list[str]] = {}

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
            return "c" if dtype in C_DTYPES else "torch"
        return "triton" if device.type == "cuda" else "torch"

    def step_fn(
        self, prog: Program, buffers: Mapping[str, torch.Tensor], T: int, B: int, H: int
    ) -> executors.StepFn:
        """Step function of ``prog`` for the Python time loop: Triton kernels where they
        run, torch ops elsewhere (C runs only inside :meth:`run_loop`)."""
        slots = self.slots[prog.name]
        if (
            self._executor(buffers[names.state(0)].device, buffers[names.state(0)].dtype)
            == "triton"
            and self.triton_module() is not None
        ):
            return executors.bind_triton(getattr(self._triton, prog.name), slots, buffers, T, B, H)
        return executors.bind_torch(prog, slots, buffers, H)

    def run_loop(
        self, backward: bool, buffers: dict[str, torch.Tensor], T: int, B: int, H: int
    ) -> None:
        """Run one direction's whole time loop: one call into C where it runs, else in
        Python."""
        if not self._run_c(backward, buffers, T, B, H, buffers[names.state(0)].dtype):
            python_loop(self, backward, buffers)

    def call_graphs(self, backward: bool, ref: torch.Tensor) -> CallGraphs | None:
        """What runs one direction's calls on ``ref``'s device and dtype as graphs; ``None``
        where they run eagerly: ``graphs`` says no, or the time loop is one C call anyway."""
        if (
            not (ref.is_cuda if self.graphs is None else self.graphs)
            or self._c_product(ref) is not None
        ):
            return None
        device = ref.device.type
        found = self._graphs.get((backward, device))
        if found is None:
            run = backward_call if backward else forward_call
            found = self._graphs.setdefault(
                (backward, device), CallGraphs(partial(run, self), capture=device == "cuda")
            )
        return found

    def _c_product(self, ref: torch.Tensor) -> int | None:
        """The C product's address where the time loop runs in C for ``ref``'s device and
        dtype (building the kernels on first use); ``None`` where it does not. Looked up
        once per device type and dtype: a fused call asks twice."""
        where = (ref.device.type, ref.dtype)
        if where not in self._c_products:
            key = C_DTYPES.get(ref.dtype)
            runs_c = (
                key is not None
                and self._executor(ref.device, ref.dtype) == "c"
                and self.library(key) is not None
            )
            self._c_products[where] = gemm.address(key) if runs_c else None
        return self._c_products[where]

    def _run_c(
        self,
        backward: bool,
        buffers: dict[str, torch.Tensor],
        T: int,
        B: int,
        H: int,
        dtype: torch.dtype,
    ) -> bool:
        """Run one direction's whole time loop in C; ``False`` (nothing run) where that is
        not possible here: not C on the CPU, or no working compiler."""
        found = self._schedule_for(backward, buffers, T, B, H)
        if found is None:
            return False
        packed = buffers[PACKED] = scratch.take((max(found.packed_size, 1),), dtype)
        try:
            found.run(buffers, T, B)
        finally:
            del buffers[PACKED]
            scratch.give([packed])
        return True

    def bind_loop(
        self, backward: bool, buffers: dict[str, torch.Tensor], T: int, B: int, H: int
    ) -> Callable[[], None]:
        """One direction's whole time loop on ``buffers`` as they are now, to run again
        and again on the same tensors (written in place between runs): a call into C with
        its arguments made once, where it runs (``buffers`` gains the packed weights'
        scratch), else the Python loop."""
        found = self._schedule_for(backward, buffers, T, B, H)
        if found is None:
            return partial(python_loop, self, backward, buffers)
        ref = buffers[names.state(0)]
        buffers[PACKED] = ref.new_empty(max(found.packed_size, 1))
        bases = found.bases(buffers)
        return lambda: found.launch(bases, T, B)

    def _schedule_for(
        self, backward: bool, buffers: dict[str, torch.Tensor], T: int, B: int, H: int
    ) -> Schedule | None:
        """The :class:`Schedule` of one direction for ``buffers``' layout (made on first
        use); ``None`` where the loop does not run in C here: not C on the CPU, or no
        working compiler."""
        ref = buffers[names.state(0)]
        product = self._c_product(ref)
        if product is None:
            return None
        # Every buffer's layout follows from these (the raw input's from its width; the
        # weights are contiguous, transposed in the forward).
        layout = (backward, ref.dtype, B, H, buffers[X].shape[-1] if X in buffers else 0)
        found = self._schedules.get(layout)
        if found is None or found.T < T:
            found = self._schedule(backward, buffers, T, B, H, ref.dtype, product)
            if len(self._schedules) >= 64:
                self._schedules.clear()
            self._schedules[layout] = found
        return found

    def _schedule(
        self,
        backward: bool,
        buffers: dict[str, torch.Tensor],
        T: int,
        B: int,
        H: int,
        dtype: torch.dtype,
        product: int,
    ) -> Schedule:
        """A new :class:`Schedule` of one direction for ``buffers``' layout, bound to the
        compiled kernels and runner for ``dtype``."""
        key = C_DTYPES[dtype]
        lib = self.library(key)
        assert lib is not None
        programs = self.backward_programs if backward else self.forward_programs
        kernels = [
            (
                ctypes.cast(getattr(lib, function_name(p, key)), ctypes.c_void_p).value,
                self.slots[p.name],
            )
            if p
            else None
            for p in programs
        ]
        runner = self._runners.get(key)
        if runner is None:
            runner = self._runners[key] = getattr(lib, f"{RUNNER}_{key}")
            runner.argtypes = [ctypes.c_long] * 5 + [
                ctypes.POINTER(Op),
                ctypes.POINTER(ctypes.c_void_p),
                ctypes.c_void_p,
                ctypes.c_long,
                ctypes.c_long,
                ctypes.POINTER(PackJob),
                ctypes.c_long,
                ctypes.c_void_p,
            ]
            runner.restype = None
        return Schedule(
            self.plan,
            kernels,
            backward=backward,
            buffers=buffers,
            T=T,
            B=B,
            H=H,
            runner=runner,
            gemm=product,
            pack=gemm.address(key, "pack"),
        )

    @staticmethod
    def of(key: str) -> FusedCell:
        """The instance named ``key``: built from it where this process has none."""
        found = _instances.get(key)
        if found is None:
            spec = json.loads(key.rpartition("#")[0])
            found = FusedCell(
                Cell.from_dict(spec["cell"]), pointwise=spec["pointwise"], graphs=spec["graphs"]
            )
            found.key, _instances[key] = key, found
        return found

    def forward_outputs(self, keep: bool) -> list[str]:
        """The names of the forward operator's outputs: :attr:`saved` (with ``keep``; else
        state 0's buffer alone), each state after the last step, and with ``keep`` the
        stacks of more than one map."""
        n = len(self.plan.states)
        if not keep:
            return [names.state(0), *(f"final{i}" for i in range(n))]
        return [
            *self.saved,
            *(f"final{i}" for i in range(n)),
            *(f"stack{j}" for j in sorted(self.stacked)),
        ]

    def output_shape(
        self, name: str, x: torch.Tensor, h: torch.Tensor, maps: Sequence[torch.Tensor]
    ) -> tuple:
        """The shape of forward output ``name`` for input ``x``, a state ``h`` and ``maps``."""
        T, (B, H) = x.shape[0], h.shape
        if name in self._rows:
            extra, blocks = self._rows[name]
            return (T + extra, B, blocks * H)
        if name.startswith("stack"):
            return self.stack_shape(int(name.removeprefix("stack")), maps)
        return (B, H)  # a final state

    def stack_shape(self, j: int, maps: Sequence[torch.Tensor]) -> tuple:
        """The shape of stack ``j`` of ``maps``."""
        a, b = self.stack_spans[j]
        return (sum(m.shape[0] for m in maps[a:b]), maps[a].shape[1])

    def gradient_outputs(self, needs: Sequence[bool]) -> list[str]:
        """The names of the backward operator's outputs, given which of the layer's inputs
        need a gradient (``x``, the states, the maps, the ``pre`` leaves, the biases, in
        that order): ``dx``, ``dh{i}`` (initial state ``i``), ``dstack{j}`` (stack ``j``:
        its maps' gradients, one after the other), ``dP{j}`` (``pre`` leaf ``j``) and
        ``dbias`` (every bias, a block each: see ``bias_blocks``)."""
        found = self._gradient_outputs.get(tuple(needs))
        if found is not None:
            return found
        n_states, n_maps = len(self.plan.states), len(self.map_names)
        pre_at = 1 + n_states + n_maps
        out = ["dx"] if needs[0] and self.uses_x else []
        out += [f"dh{i}" for i in range(n_states) if needs[1 + i]]
        out += [
            f"dstack{j}"
            for j, (a, b) in enumerate(self.stack_spans)
            if any(needs[1 + n_states + a : 1 + n_states + b])
        ]
        out += [f"dP{j}" for j in range(len(self.plan.pre)) if needs[pre_at + j]]
        out += ["dbias"] * any(needs[pre_at + len(self.plan.pre) :])
        self._gradient_outputs[tuple(needs)] = out
        return out

    def list_stacks(self, stacks: Stacks) -> list[torch.Tensor]:
        """``stacks`` as a list: the x maps' (where there are any), then each product's."""
        wx, weights = stacks
        return [*([wx] if wx is not None else []), *weights]

    def unlist_stacks(self, stacks: Sequence[torch.Tensor]) -> Stacks:
        """The inverse of :meth:`list_stacks`."""
        return (stacks[0], list(stacks[1:])) if self.x_names else (None, list(stacks))

    def stacks(self, maps: Sequence[torch.Tensor]) -> Stacks:
        """``maps`` (as ``map_names`` orders them) as one contiguous matrix for the x maps
        (``None`` without any) and one per product, each map's rows after the other's."""
        spans = [maps[a:b] for a, b in self.map_spans]
        wx = stack(spans[0]) if self.x_names else None
        return wx, [stack(span) for span in spans[1:]]


# Every instance by its key, "{spec}#{serial}".
_instances: dict[str, FusedCell] = {}
_serial = itertools.count()
