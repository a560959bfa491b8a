"""Read ahead of the model: one reader thread decodes the next items while the caller runs the current one.

:func:`prefetch` turns an iterable of items (video frames, image files) into a stream of :class:`Prefetched`
entries, in order. A single reader thread pulls the items, applies ``load`` to each (e.g. a file read) and puts
the result in a bounded queue of ``depth`` entries, so at most ``depth`` decoded items wait in memory however
long the stream is. An error raised by ``load`` is carried to its own entry and the reader goes on with the
next item; an error raised by the iterable itself (e.g. a video that cannot be decoded any further) is carried
to the entry at that position and ends the stream. Closing the consumer (``break``, an exception, garbage
collection) stops the reader and closes the iterable, which releases what it holds (a ``cv2.VideoCapture``).

The reader is worth its thread only where decoding and inference overlap: OpenCV's decoders and the model both
release the GIL, so on a 2-core machine the decode of frame n+1 runs beside the inference of frame n.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from yolov6_sdk.errors import ConfigError

Item = TypeVar("Item")
Loaded = TypeVar("Loaded")

DEFAULT_DEPTH = 2  # entries decoded ahead: one ready while one is being decoded
_POLL_S = 0.05  # how often a blocked reader looks whether the consumer has gone


@dataclass(frozen=True)
class Prefetched(Generic[Loaded]):
    """One entry of a prefetched stream.

    Attributes:
        index: position in the stream, from 0.
        value: what ``load`` returned (None when ``error`` is set).
        error: the exception raised while producing this entry, or None.
    """

    index: int
    value: Loaded | None = None
    error: BaseException | None = None


_END = object()  # the reader has nothing more


def _identity(item: Any) -> Any:
    return item


def prefetch(
    items: Iterable[Item],
    load: Callable[[Item], Loaded] = _identity,
    depth: int = DEFAULT_DEPTH,
) -> Iterator[Prefetched[Loaded]]:
    """Yield ``load(item)`` for every item of ``items`` in order, computed by one reader thread ahead of the caller.

    At most ``depth`` loaded entries wait in the queue (plus the one the reader is producing). See the module
    docstring for how errors travel.

    Raises:
        ConfigError: ``depth`` is not a positive int.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ConfigError(f"prefetch depth must be a positive int (entries read ahead), got {depth!r}")
    entries: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    reader = threading.Thread(target=_read, args=(items, load, entries, stop), name="yolov6-reader", daemon=True)
    reader.start()
    try:
        while True:
            entry = entries.get()
            if entry is _END:
                return
            yield entry
    finally:
        stop.set()
        _drain(entries)  # a reader blocked on a full queue sees the stop at its next poll
        reader.join()


def prefetched_values(items: Iterable[Item], depth: int = DEFAULT_DEPTH) -> Iterator[Item]:
    """The items of ``items`` in order, read ``depth`` ahead by :func:`prefetch`; an error raises at its own
    position, after the items before it, as iterating ``items`` directly would."""
    for entry in prefetch(items, depth=depth):
        if entry.error is not None:
            raise entry.error
        yield entry.value


def _read(items: Iterable[Any], load: Callable[[Any], Any], entries: queue.Queue[Any], stop: threading.Event) -> None:
    """The reader thread: load every item into ``entries`` until the items end, fail or ``stop`` is set."""
    iterator = iter(items)
    index = 0
    try:
        while not stop.is_set():
            try:
                item = next(iterator)
            except StopIteration:
                break
            except Exception as exc:  # the source itself failed: report it here and end the stream
                _put(entries, Prefetched(index, error=exc), stop)
                break
            try:
                entry = Prefetched(index, value=load(item))
            except Exception as exc:  # this item failed; the next ones still come
                entry = Prefetched(index, error=exc)
            if not _put(entries, entry, stop):
                break
            index += 1
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # release the source (e.g. a video capture) in the thread that ran it
        _put(entries, _END, stop)


def _put(entries: queue.Queue[Any], entry: Any, stop: threading.Event) -> bool:
    """Put ``entry`` unless the consumer has gone; False when it has."""
    while not stop.is_set():
        try:
            entries.put(entry, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _drain(entries: queue.Queue[Any]) -> None:
    while True:
        try:
            entries.get_nowait()
        except queue.Empty:
            return
