"""What the torch and TensorRT backends share for CUDA work: bounded per-shape caches, graph capture with a
fallback, and a stream of their own ordered with the caller's.

Every input shape a backend meets ([B, 3, H, W]: rectangular inference makes many) costs device buffers, pinned
host memory and, with CUDA graphs, a graph (and for TensorRT an execution context). :class:`ShapeCache` keeps the
most recently used :data:`SHAPE_CACHE_SIZE` of them and hands the one it drops to a release callback.

:func:`capture_graph` captures in torch's ``thread_local`` capture mode, so another thread's CUDA calls during the
capture do not invalidate it (the backends are shared across threads), and returns None when the capture fails
(as trtexec does, the caller then runs that shape without a graph). The logic here takes torch as an argument
and holds no CUDA state of its own, so it runs, and is tested, without a GPU.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

LOGGER = logging.getLogger(__name__)

SHAPE_CACHE_SIZE = 8  # input shapes kept per thread (buffers, pinned memory, graphs, contexts)
CAPTURE_ERROR_MODE = "thread_local"  # only this thread's unsafe CUDA calls can invalidate its capture

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ShapeCache(Generic[K, V]):
    """A least-recently-used map of at most ``capacity`` entries; ``release(value)`` is called for each dropped one.

    Not thread-safe: each backend keeps one per thread.
    """

    def __init__(self, capacity: int = SHAPE_CACHE_SIZE, release: Callable[[V], None] | None = None) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._release = release
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def get_or_make(self, key: K, make: Callable[[], V]) -> V:
        """The value of ``key``, made by ``make()`` and stored (dropping the least recently used) when missing."""
        value = self.get(key)
        if value is None:
            value = self.put(key, make())
        return value

    def put(self, key: K, value: V) -> V:
        """Store ``value`` under ``key`` as the most recently used; drops the oldest entries beyond capacity."""
        old = self._items.pop(key, None)
        if old is not None and old is not value and self._release is not None:
            self._release(old)
        self._items[key] = value
        while len(self._items) > self.capacity:
            _, dropped = self._items.popitem(last=False)
            if self._release is not None:
                self._release(dropped)
        return value

    def keys(self) -> list[K]:
        """Keys from the least to the most recently used."""
        return list(self._items)

    def items(self) -> list[tuple[K, V]]:
        """(key, value) pairs from the least to the most recently used (the order is left as it is)."""
        return list(self._items.items())

    def clear(self) -> None:
        """Drop every entry (each released)."""
        while self._items:
            _, dropped = self._items.popitem(last=False)
            if self._release is not None:
                self._release(dropped)

    def __len__(self) -> int:
        return len(self._items)


def capture_graph(torch: Any, stream: Any, run: Callable[[], object], what: str) -> Any | None:
    """``run()`` captured into a ``torch.cuda.CUDAGraph`` on ``stream`` (thread-local capture mode), or None when
    the capture fails; the failure is logged with ``what`` (e.g. "input (1, 3, 640, 640) of m.engine").

    ``run`` must have run once uncaptured with the same buffers (lazy library set-up stays out of the graph).
    """
    try:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=stream, capture_error_mode=CAPTURE_ERROR_MODE):
            run()
    except Exception as exc:  # torch raises RuntimeError subclasses for every failed capture; keep serving
        LOGGER.warning("CUDA graph capture of %s failed (%s); that shape runs without a graph", what, exc)
        return None
    return graph


@contextmanager
def ordered_stream(torch: Any, own: Any, caller: Any) -> Iterator[Any]:
    """Run the block on ``own`` (current stream inside), after the work already queued on ``caller``; the caller's
    later work waits for the block's. Yields ``own``."""
    own.wait_stream(caller)
    try:
        with torch.cuda.stream(own):
            yield own
    finally:
        caller.wait_stream(own)
