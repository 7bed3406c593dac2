"""One direction's Python time loop, replayed as a CUDA graph.

On CUDA the time loop launches a product and a pointwise kernel per stage and step, and
from Python each launch costs more than the GPU's work at a search's sizes. A graph
captured per buffer layout replays the whole loop as one launch. A graph bakes in the
addresses it ran on, so it owns a twin of the call's buffers (same shapes, strides and
aliasing): a call copies its buffers in, replays, and copies back the loop's results.
A layout is captured on its second call, so that one-off shapes never pay for a capture.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

import optuna
import torch

__all__ = ["LoopGraphs"]

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
        out[t.untyped_storage().data_ptr()] = min(lo, t.storage_offset()), max(hi, t.storage_offset() + _span(t))
    return out


def layout(buffers: Buffers) -> tuple:
    """What a twin of ``buffers`` depends on: their device, each buffer's dtype, shape and
    strides, and which buffers share memory, where each starts in it. Not where the memory
    is, so a layer's calls with fresh tensors of one shape share a layout. (Computed on
    every call: attribute reads only, each once.)"""
    rows = [(name, t.untyped_storage().data_ptr(), t.storage_offset(), t.shape, t.stride(), t.dtype)
            for name, t in buffers.items()]
    lows: dict[int, int] = {}
    for _, ptr, offset, *_ in rows:
        if lows.get(ptr, offset) >= offset:
            lows[ptr] = offset
    index = {ptr: i for i, ptr in enumerate(lows)}
    device = next(iter(buffers.values())).device
    return device, tuple((name, index[ptr], offset - lows[ptr], *rest) for name, ptr, offset, *rest in rows)


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


def _capture(run: Callable[[Buffers], None], static: Buffers) -> torch.cuda.CUDAGraph | None:
    """Run ``run(static)`` once on a side stream (compiling kernels, setting up cuBLAS;
    its results are the call's), then capture it without running it. ``None``, after one
    warning, where capture fails: the loop then goes on launch by launch."""
    stream = torch.cuda.Stream(static[next(iter(static))].device)
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        run(static)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    try:
        # Other threads (an Optuna study's n_jobs) may use the GPU meanwhile.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            run(static)
    except RuntimeError as e:
        message = f"capturing the time loop as a CUDA graph failed ({e}); it runs launch by launch"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        _logger.warning(message)
        return None
    return graph


@dataclass
class _Entry:
    static: dict[str, torch.Tensor]
    graph: torch.cuda.CUDAGraph | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: torch.cuda.Event | None = None  # the last call's copies out, on its stream


class LoopGraphs:
    """``run(buffers)`` through graphs, one per layout, the ``size`` most recent kept.

    ``capture=False`` keeps everything but the graph: each call runs ``run`` on the twin
    buffers (so the copying is checked where there is no GPU). ``results`` names the
    buffers ``run`` writes that the caller reads afterwards: only those are copied back;
    the others are scratch, or only read (some are the caller's inputs and parameters).
    """

    def __init__(
        self, run: Callable[[Buffers], None], results: Collection[str], *, capture: bool = True, size: int = 16
    ) -> None:
        self.run, self.results, self.capture, self.size = run, frozenset(results), capture, size
        self._entries: OrderedDict[tuple, _Entry] = OrderedDict()
        self._seen: OrderedDict[tuple, None] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, buffers: Buffers) -> None:
        key = layout(buffers)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None and key not in self._seen:
                self._seen[key] = None
                if len(self._seen) > 4 * self.size:
                    self._seen.popitem(last=False)
            elif entry is None:
                entry = self._entries[key] = _Entry(twin(buffers))
                if len(self._entries) > self.size:
                    evicted = self._entries.popitem(last=False)[1]
                    if evicted.done is not None:  # its graph's memory goes back: not while it runs
                        evicted.done.synchronize()
            else:
                self._entries.move_to_end(key)
        if entry is None:  # first sight of this layout
            self.run(buffers)
            return
        names = list(buffers)
        results = [n for n in names if n in self.results]
        with entry.lock:  # one call at a time on the twin
            if entry.done is not None:
                torch.cuda.current_stream().wait_event(entry.done)
            torch._foreach_copy_([entry.static[n] for n in names], [buffers[n] for n in names])
            if entry.graph is not None:
                entry.graph.replay()
            elif self.capture:
                entry.graph = _capture(self.run, entry.static)
                entry.done = torch.cuda.Event()
                self.capture = entry.graph is not None
            else:
                self.run(entry.static)
            torch._foreach_copy_([buffers[n] for n in results], [entry.static[n] for n in results])
            if entry.done is not None:
                entry.done.record()
