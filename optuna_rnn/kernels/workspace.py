"""Scratch buffers of the fused backend on the CPU, kept for the next call.

A training step of a fused cell allocates and frees megabytes of scratch: the per-step
values the backward reads, their gradients, packed weights. glibc returns freed memory
at the top of its heap to the kernel, so the next step faults those pages in again, and
a page fault costs about 2 us in the project's VM (a 4 KiB page is written warm in 0.2):
200-600 faults, 0.4-1.3 ms, in a 7-12 ms step at T=35 B=20 H=200. The pool hands back
buffers of the same size instead. CUDA needs none of this: torch's caching allocator
already keeps device memory.

A buffer goes back only when nothing can read it any more: scratch at the end of the
call that made it, buffers saved for the backward when autograd frees the graph.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable

import torch

__all__ = ["Workspace", "scratch"]


class Workspace:
    """Free buffers by (dtype, shape), least recently returned dropped first once more
    than ``limit_bytes`` are held. Shapes, not sizes: a training loop asks for the same
    shapes every step, and handing a buffer back as it was costs no view."""

    def __init__(self, *, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._free: OrderedDict[tuple[torch.dtype, tuple[int, ...]], list[torch.Tensor]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()  # buffers come back from autograd's threads too

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised contiguous CPU tensor of ``shape``: a returned one if any."""
        with self._lock:
            free = self._free.get((dtype, shape))
            if free:
                buf = free.pop()
                self._held -= buf.nbytes
                return buf
        return torch.empty(shape, dtype=dtype)

    def give(self, tensors: Iterable[torch.Tensor]) -> None:
        """Return buffers made by :meth:`take` (and no views of them still in use)."""
        with self._lock:
            for t in tensors:
                key = (t.dtype, tuple(t.shape))
                self._free.setdefault(key, []).append(t)
                self._free.move_to_end(key)
                self._held += t.nbytes
            while self._held > self.limit_bytes:
                key, free = next(iter(self._free.items()))
                self._held -= free.pop(0).nbytes
                if not free:
                    del self._free[key]

    @property
    def held_bytes(self) -> int:
        """Bytes held in free buffers."""
        return self._held


scratch = Workspace(limit_bytes=256 << 20)
