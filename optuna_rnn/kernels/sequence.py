"""A cell's time loop as one C call: the schedule the generated runner executes.

Per time step the forward runs, stage by stage, that round's matrix products (one per
source, through :mod:`optuna_rnn.kernels.gemm`) and then the stage's pointwise function;
the backward runs the stages in reverse, each pointwise backward followed by its
products' input-gradient products. A :class:`Schedule` lists those steps with every
argument as a buffer index and a table of per-step element offsets, so a call needs only
the buffers' base pointers. Offsets do not depend on the sequence length, so one
schedule serves every ``T`` up to the longest seen. It also lists the weights' column
panels: the runner packs them into one scratch buffer
(:data:`~optuna_rnn.kernels.buffers.PACKED`) at the start of
the call, the threads sharing the panels, before any step runs.
"""

from __future__ import annotations

import ctypes
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from optuna_rnn.kernels import buffers as names
from optuna_rnn.kernels.buffers import PACKED, grad
from optuna_rnn.kernels.executors import offsets
from optuna_rnn.kernels.gemm import panel_width
from optuna_rnn.kernels.layout import Slot, slot
from optuna_rnn.kernels.plan import Plan, products_by_round

__all__ = ["PARALLEL_ELEMENTS", "Op", "PackJob", "Schedule"]

# Rows times hidden units per step below which a whole time loop runs on one thread: less
# work than that does not pay for waking the others.
PARALLEL_ELEMENTS = 2048


class Op(ctypes.Structure):
    """Mirror of the runner's ``ornn_op`` (see :mod:`optuna_rnn.kernels.codegen_c`)."""

    _fields_ = [
        ("kind", ctypes.c_long),
        ("nargs", ctypes.c_long),
        ("bufs", ctypes.c_void_p),
        ("offs", ctypes.c_void_p),
        ("rows", ctypes.c_void_p),
        ("fn", ctypes.c_void_p),
        ("n", ctypes.c_long),
        ("k", ctypes.c_long),
        ("lda", ctypes.c_long),
        ("ldc", ctypes.c_long),
        ("beta", ctypes.c_long),
    ]


class PackJob(ctypes.Structure):
    """Mirror of the runner's ``ornn_pack_job``: one column panel of one weight."""

    _fields_ = [
        (name, ctypes.c_long) for name in ("src", "src_off", "dst_off", "k", "n", "rs", "cs")
    ]


class Schedule:
    """The steps of one direction of ``plan``'s loop, bound to buffer names and shapes
    and to the compiled code that runs them.

    ``kernels[k]`` is stage ``k``'s ``(function address, slots)`` or ``None``; ``runner``
    the generated ``ornn_run`` (its argument types set), ``gemm`` and ``pack`` the
    addresses of :mod:`optuna_rnn.kernels.gemm`'s product and packing functions.
    """

    def __init__(
        self,
        plan: Plan,
        kernels: Sequence[tuple[int, Sequence[Slot]] | None],
        *,
        backward: bool,
        buffers: Mapping[str, torch.Tensor],
        T: int,
        B: int,
        H: int,
        runner: ctypes._CFuncPtr,
        gemm: int,
        pack: int,
    ) -> None:
        self.backward = backward
        self.T = T
        self._width = H
        self._runner, self._gemm, self._pack = runner, gemm, pack
        every = sorted({*buffers, PACKED})
        index = {name: i for i, name in enumerate(every)}
        self._keep: list[np.ndarray] = []
        arguments: list[np.ndarray] = []  # each step's buffer indices
        ops: list[Op] = []
        jobs: list[PackJob] = []
        at: list[int] = []  # where each weight's panels start in PACKED
        size = 0
        for p in range(len(plan.products)):  # panels of NR columns, each contiguous along k
            w = buffers[names.weight(p)]
            (k, n), nr = w.shape, panel_width(w.dtype)
            at.append(size)
            for j in range(0, n, nr):
                jobs.append(
                    PackJob(
                        src=index[names.weight(p)],
                        src_off=j * w.stride(1),
                        dst_off=size,
                        k=k,
                        n=min(nr, n - j),
                        rs=w.stride(0),
                        cs=w.stride(1),
                    )
                )
                size += k * nr
        self.packed_size = size
        self.jobs = (PackJob * len(jobs))(*jobs)
        self._packed = index[PACKED]

        def add(
            kind: int, slots: Sequence[Slot], fn: int | None = None, weight_at: int = 0, **dims: int
        ) -> None:
            table = np.ascontiguousarray(offsets(slots, buffers, T, H)[:, : len(slots)])
            if kind == 0:  # the weight's panels start at its offset in PACKED
                table[:, 2] = weight_at
            bufs = np.array([index[s.buffer] for s in slots], dtype=np.int64)
            rows = np.array(
                [0 if s.vec else buffers[s.buffer].stride(1) for s in slots], dtype=np.int64
            )
            self._keep += [table, bufs, rows]
            arguments.append(bufs)
            ops.append(
                Op(
                    kind=kind,
                    nargs=len(slots),
                    bufs=bufs.ctypes.data,
                    offs=table.ctypes.data,
                    rows=rows.ctypes.data,
                    fn=fn,
                    **dims,
                )
            )

        def product(p: int) -> None:
            prod = plan.products[p]
            wide, narrow = names.product(p), slot(plan, ("val", prod.source))
            n = len(prod.linears) * H
            weight = Slot(PACKED, vec=True)
            if backward:  # d source += dY W
                a, c = Slot(grad(wide)), slot(plan, ("grad", prod.source))
                dims = {"n": H, "k": n, "beta": 1}
            else:  # Y = source W^T (+ Y where Y is XW's blocks: a folded product)
                a, c = narrow, Slot(wide)
                dims = {"n": n, "k": H, "beta": int(plan.xw_blocks[p] is not None)}
            lda, ldc = (buffers[s.buffer].stride(1) for s in (a, c))
            add(0, [a, c, weight], weight_at=at[p], lda=lda, ldc=ldc, **dims)

        by_round = products_by_round(plan)
        stages = reversed(range(len(plan.stages))) if backward else range(len(plan.stages))
        for k in stages:
            if not backward:
                for p in by_round[k]:
                    product(p)
            if kernels[k] is not None:
                fn, slots = kernels[k]
                add(1, slots, fn)
            if backward:
                for p in by_round[k]:
                    product(p)
        self.ops = (Op * len(ops))(*ops)
        # Bind only the buffers the steps and the packing use: a later call may lack the
        # others (the buffers a call holds differ with what it differentiates).
        used = {int(i) for bufs in arguments for i in bufs} | {j.src for j in jobs}
        order = sorted(used | {self._packed})
        renumber = {old: new for new, old in enumerate(order)}
        for bufs in arguments:
            bufs[:] = [renumber[int(i)] for i in bufs]
        for job in self.jobs:
            job.src = renumber[job.src]
        self._packed = renumber[self._packed]
        self.names = [every[i] for i in order]
        self._bases = ctypes.c_void_p * len(self.names)

    def run(self, buffers: Mapping[str, torch.Tensor], T: int, B: int) -> None:
        """Pack the weights into ``buffers[PACKED]`` (:attr:`packed_size` elements) and run
        ``T`` steps (at most the length this schedule was built for), the batch rows split
        across torch's threads where there is enough work per step to share."""
        assert buffers[PACKED].numel() >= self.packed_size
        self.launch(self.bases(buffers), T, B)

    def bases(self, buffers: Mapping[str, torch.Tensor]) -> ctypes.Array:
        """The base pointers of ``buffers`` that the steps read: a call's argument, good
        as long as those tensors hold their storage."""
        return self._bases(*[buffers[n].data_ptr() for n in self.names])

    def launch(self, bases: ctypes.Array, T: int, B: int) -> None:
        """:meth:`run` on buffers given by :meth:`bases`."""
        assert T <= self.T
        threads = min(torch.get_num_threads(), B) if B * self._width >= PARALLEL_ELEMENTS else 1
        self._runner(
            T,
            int(self.backward),
            B,
            self._width,
            len(self.ops),
            self.ops,
            bases,
            self._gemm,
            threads,
            len(self.jobs),
            self.jobs,
            self._packed,
            self._pack,
        )
