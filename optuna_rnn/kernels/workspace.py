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

Buffers come back from finalizers (``weakref.finalize`` on a freed autograd graph), and
a finalizer runs wherever the cyclic garbage collector happens to run: inside any
allocation, including one made while this thread holds the pool's lock. So the lock is
never waited for by the thread that holds it: a call re-entered that way only queues its
buffers, and the outer call takes them in before it lets go. No tensor is freed and no
generator is run while the lock is held either; callers may pass any iterable.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Iterable

import torch

__all__ = ["Workspace", "scratch"]

_Key = tuple[torch.dtype, tuple[int, ...]]


class Workspace:
    """Free buffers by (dtype, shape), least recently returned dropped first once more
    than ``limit_bytes`` are held. Shapes, not sizes: a training loop asks for the same
    shapes every step, and handing a buffer back as it was costs no view."""

    def __init__(self, *, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._free: OrderedDict[_Key, list[torch.Tensor]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()  # buffers come back from autograd's threads too
        self._owner: int | None = None  # the thread holding ``_lock``
        self._pending: deque[torch.Tensor] = deque()  # given while the lock was held

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised contiguous CPU tensor of ``shape``: a returned one if any."""
        return self.take_all([shape], dtype)[0]

    def take_all(self, shapes: Iterable[tuple[int, ...]], dtype: torch.dtype) -> list[torch.Tensor]:
        """:meth:`take` for each of ``shapes``, under one hold of the lock (a fused call
        takes about ten buffers)."""
        keys = [(dtype, tuple(shape)) for shape in shapes]
        bufs: list[torch.Tensor | None] = [None] * len(keys)
        if self._acquire():
            try:
                for i, key in enumerate(keys):
                    free = self._free.get(key)
                    if free:
                        buf = bufs[i] = free.pop()
                        self._held -= buf.nbytes
            finally:
                dropped = self._release()
            del dropped  # freed outside the lock
        return [
            torch.empty(key[1], dtype=dtype) if buf is None else buf for key, buf in zip(keys, bufs)
        ]

    def give(self, tensors: Iterable[torch.Tensor]) -> None:
        """Return buffers made by :meth:`take` (and no views of them still in use)."""
        self._pending.extend(list(tensors))  # deque appends are atomic: no lock needed
        if self._acquire():
            dropped = self._release()
            del dropped  # freed outside the lock

    def _acquire(self) -> bool:
        """Take the lock, unless this thread already holds it (a finalizer run by the
        garbage collector inside one of this pool's calls): then ``False``."""
        me = threading.get_ident()
        if self._owner == me:
            return False
        self._lock.acquire()
        self._owner = me
        return True

    def _release(self) -> list[torch.Tensor]:
        """Take in the queued buffers, drop the oldest beyond the limit, let go of the
        lock; returns the dropped buffers for the caller to free after that."""
        dropped: list[torch.Tensor] = []
        try:
            while self._pending:
                t = self._pending.popleft()
                key = (t.dtype, tuple(t.shape))
                self._free.setdefault(key, []).append(t)
                self._free.move_to_end(key)
                self._held += t.nbytes
            while self._held > self.limit_bytes and self._free:
                key, free = next(iter(self._free.items()))
                dropped.append(free.pop(0))
                self._held -= dropped[-1].nbytes
                if not free:
                    del self._free[key]
        finally:
            self._owner = None
            self._lock.release()
        return dropped

    @property
    def held_bytes(self) -> int:
        """Bytes held in free buffers."""
        return self._held


scratch = Workspace(limit_bytes=256 << 20)
