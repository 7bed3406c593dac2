"""A fused layer's forward or backward call, replayed as a CUDA graph.

On CUDA a fused call launches, per stage and step, a product and a pointwise kernel, and
around its time loop some forty more ops (allocations, the products outside the loop,
copies); from Python each launch costs more than the GPU's work at a search's sizes. A
graph captured per input layout replays the whole call as one launch. A graph bakes in
the addresses it ran on, so it owns a twin of the call's inputs (same shapes, strides
and aliasing) and the outputs it writes: a call copies its inputs in, replays, and copies
the outputs out into fresh tensors. A layout is captured on its second call, so that
one-off shapes never pay for a capture.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import optuna
import torch

__all__ = ["CallGraphs", "kept_nbytes", "layout", "twin", "twin_nbytes"]

Buffers = Mapping[str, torch.Tensor]
_logger = optuna.logging.get_logger(__name__)


def _span(t: torch.Tensor) -> int:
    """Elements from ``t``'s first to its last, in its storage."""
    return 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride())) if t.numel() else 0


def _regions(buffers: Buffers) -> dict[int, tuple[int, int]]:
    """Per storage the buffers share: the first and one-past-last element they use."""
    out: dict[int, tuple[int, int]] = {}
    for t in buffers.values():
        lo, hi = out.get(t.untyped_storage().data_ptr(), (t.storage_offset(), 0))
        out[t.untyped_storage().data_ptr()] = (
            min(lo, t.storage_offset()),
            max(hi, t.storage_offset() + _span(t)),
        )
    return out


def layout(buffers: Buffers) -> tuple:
    """What a twin of ``buffers`` depends on: their device, each buffer's dtype, shape and
    strides, and which buffers share memory, where each starts in it. Not where the memory
    is, so a layer's calls with fresh tensors of one shape share a layout. (Computed on
    every call: attribute reads only, each once.)"""
    rows = [
        (name, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
        for name, t in buffers.items()
    ]
    lows: dict[int, int] = {}
    for _, ptr, offset, *_ in rows:
        if lows.get(ptr, offset) >= offset:
            lows[ptr] = offset
    index = {ptr: i for i, ptr in enumerate(lows)}
    device = next(iter(buffers.values())).device
    return device, tuple(
        (name, index[ptr], offset - lows[ptr], *rest) for name, ptr, offset, *rest in rows
    )


def twin_nbytes(buffers: Buffers) -> int:
    """The memory :func:`twin` allocates for ``buffers``."""
    sizes = {t.untyped_storage().data_ptr(): t.element_size() for t in buffers.values()}
    return sum((hi - lo) * sizes[ptr] for ptr, (lo, hi) in _regions(buffers).items())


def twin(buffers: Buffers) -> dict[str, torch.Tensor]:
    """New (uninitialised) buffers laid out as ``buffers``: views of one another where
    those are, each storage only as large as the buffers use of it."""
    regions = _regions(buffers)
    bases: dict[int, torch.Tensor] = {}
    out = {}
    for name, t in buffers.items():
        ptr = t.untyped_storage().data_ptr()
        lo, hi = regions[ptr]
        if ptr not in bases:
            bases[ptr] = torch.empty(hi - lo, dtype=t.dtype, device=t.device)
        out[name] = bases[ptr].as_strided(t.shape, t.stride(), t.storage_offset() - lo)
    return out


def _capture(
    fn: Callable[[Buffers], Buffers], static: Buffers
) -> tuple[torch.cuda.CUDAGraph | None, Buffers]:
    """Run ``fn(static)`` once on a side stream (compiling kernels, setting up cuBLAS),
    then capture it without running it. Returns the graph and the outputs it writes;
    ``(None, {})``, after one warning, where capture fails: calls then run eagerly."""
    stream = torch.cuda.Stream(static[next(iter(static))].device)
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        fn(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    try:
        # Other threads (an Optuna study's n_jobs) may use the GPU meanwhile.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outputs = fn(static)
    except RuntimeError as e:
        message = (
            f"capturing a fused layer's call as a CUDA graph failed ({e}); it runs launch by launch"
        )
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        _logger.warning(message)
        return None, {}
    return graph, outputs


def _copy(outputs: Buffers) -> dict[str, torch.Tensor]:
    """Fresh tensors holding ``outputs`` (views of one another where those are)."""
    out = twin(outputs)
    torch._foreach_copy_(list(out.values()), list(outputs.values()))
    return out


@dataclass
class _Entry:
    static: dict[str, torch.Tensor]
    nbytes: int
    graph: torch.cuda.CUDAGraph | None = None
    outputs: Buffers = field(default_factory=dict)  # what the graph writes
    lock: threading.Lock = field(default_factory=threading.Lock)  # held while a call uses it
    done: torch.cuda.Event | None = None  # the last call's copies out, on its stream
    dropped: bool = False  # out of the cache: no call may start on it


# Every kept twin, least recently used first, across all cells and directions: a search
# trains a new cell per trial, and finished trials' graphs must not pile up in GPU memory.
_lock = threading.Lock()
_kept: OrderedDict[tuple[int, Hashable], CallGraphs] = OrderedDict()


def kept_nbytes() -> int:
    """The memory the kept graphs hold: their twins' inputs and outputs (under ``_lock``)."""
    return sum(owner._entries[key].nbytes for (_, key), owner in _kept.items())


class CallGraphs:
    """``fn(inputs, options) -> outputs`` through graphs, one per input layout and
    ``options`` (hashable).

    ``fn`` must read no tensor but ``inputs``; its outputs come back as fresh tensors.
    At most ``limit_count`` graphs (and ``limit_bytes`` of their inputs' twins and
    outputs) are kept across all instances; the least recently used goes first. One
    whose layouts keep being dropped and captured again (more than ``limit_count`` times:
    sequence lengths vary more than the cache holds) stops capturing new ones and runs
    those eagerly. ``CallGraphs.limit_count = 0`` turns graphs off.

    ``capture=False`` keeps everything but the graph: each call runs ``fn`` on the twin
    inputs (so the copying is checked where there is no GPU).
    """

    limit_count: ClassVar[int] = 64
    limit_bytes: ClassVar[int] = 4 << 30

    def __init__(self, fn: Callable[[Buffers, Hashable], Buffers], *, capture: bool = True) -> None:
        self.fn, self.capture = fn, capture
        self._entries: dict[Hashable, _Entry] = {}
        self._seen: OrderedDict[Hashable, bool] = OrderedDict()  # key -> was it dropped
        self._failed = False  # a capture failed: no more twins, every call runs ``fn``
        self._recaptured = 0

    def __call__(self, inputs: Buffers, options: Hashable = ()) -> Buffers:
        if self.capture and torch.cuda.is_current_stream_capturing():
            return self.fn(
                inputs, options
            )  # the caller is capturing a graph of its own: be part of it
        key = (options, layout(inputs))
        dropped: list[_Entry] = []  # twins made room for: freed after ``_lock`` is let go
        with _lock:
            entry = self._entries.get(key)
            if entry is not None:
                _kept.move_to_end((id(self), key))
            else:
                entry = self._admit(key, inputs, dropped)
        dropped.clear()
        if entry is not None:
            with entry.lock:  # one call at a time on the twin
                if not entry.dropped and (entry.graph is not None or not self._failed):
                    return self._replay(entry, inputs, lambda static: self.fn(static, options))
        return self.fn(inputs, options)

    def _replay(
        self, entry: _Entry, inputs: Buffers, fn: Callable[[Buffers], Buffers]
    ) -> dict[str, torch.Tensor]:
        """Copy ``inputs`` into the twin, replay (capturing first where there is no graph
        yet), copy the outputs out."""
        if entry.done is not None:
            torch.cuda.current_stream().wait_event(entry.done)
        torch._foreach_copy_(list(entry.static.values()), list(inputs.values()))
        if entry.graph is None and self.capture:
            entry.graph, entry.outputs = _capture(fn, entry.static)
            entry.done = torch.cuda.Event()
            self._failed = entry.graph is None
            entry.nbytes += twin_nbytes(entry.outputs)  # counted from the next admission on
        if entry.graph is not None:
            entry.graph.replay()
            outputs = entry.outputs
        else:
            outputs = fn(entry.static)
        out = _copy(outputs)
        if entry.done is not None:
            entry.done.record()
        return out

    def _admit(self, key: Hashable, inputs: Buffers, dropped: list[_Entry]) -> _Entry | None:
        """A new twin for ``key`` (under ``_lock``), room made for it by moving old twins
        to ``dropped`` (no tensor is freed under the lock); ``None`` (run without) on the
        layout's first sight, for a twin over the limits, once this instance thrashes, or
        after a capture failed."""
        if key not in self._seen:
            self._seen[key] = False
            if len(self._seen) > 4 * self.limit_count:
                self._seen.popitem(last=False)
            return None
        nbytes = twin_nbytes(inputs)
        if (
            self._recaptured > self.limit_count
            or self._failed
            or nbytes > self.limit_bytes
            or self.limit_count < 1
        ):
            return None
        self._recaptured += self._seen[key]
        entry = _Entry(twin(inputs), nbytes)
        while _kept and (
            len(_kept) >= self.limit_count or kept_nbytes() + entry.nbytes > self.limit_bytes
        ):
            (_, old_key), owner = _kept.popitem(last=False)
            dropped.append(owner._drop(old_key))
        self._entries[key] = entry
        _kept[(id(self), key)] = self
        return entry

    def _drop(self, key: Hashable) -> _Entry:
        """Forget ``key``'s twin (under ``_lock``), once the GPU is done with it; returns
        it for the caller to free after letting go of ``_lock``."""
        entry = self._entries.pop(key)
        self._seen[key] = True
        with entry.lock:  # a call on it finishes first (calls never take ``_lock``)
            entry.dropped = True
            if entry.done is not None:
                entry.done.synchronize()
        return entry
