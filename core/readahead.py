"""Read the next chunk of a window while the judge folds the current one.

A window is read from the log (or its Parquet archive) and judged chunk by chunk. Reading is mostly
work outside the GIL (SQLite's and Parquet's C code, Arrow's conversion to pandas), judging mostly
NumPy and pandas: on two cores the two can overlap. `read_ahead` runs the source's iterator in one
background thread, at most `depth` chunks ahead of the consumer, so memory grows by `depth` chunks
and no more (the threaded Parquet scanner, by contrast, read most of a 1M-row window ahead: +270 MB,
see docs/performance.md).

The source's iterator runs entirely in that thread (a database cursor is opened, used and closed in
the thread that made it). An exception in the reader is raised in the consumer, with its traceback;
a consumer that stops early (an exception while judging, a `break`) stops the reader and closes the
source's iterator, so its cursor and connection are released.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar, cast

T = TypeVar("T")

_POLL_SECONDS = 0.05  # how often a blocked reader checks whether the consumer has gone


class _End:
    """The reader finished: nothing more will come."""


class _Failed:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def read_ahead(source: Iterable[T], depth: int = 1) -> Iterator[T]:
    """The items of `source` in order, read by a background thread up to `depth` items ahead.
    `depth` 0 reads in the caller's thread (no thread, no overlap)."""
    if depth < 0:
        raise ValueError(f"depth must be >= 0, got {depth}")
    if depth == 0:
        yield from source
        return
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    gone = threading.Event()

    def offer(item: object) -> bool:
        """Put `item` unless the consumer has gone; False if it has."""
        while not gone.is_set():
            try:
                items.put(item, timeout=_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        it = iter(source)
        try:
            for item in it:
                if not offer(item):
                    return
            offer(_End())
        except BaseException as exc:  # handed to the consumer, raised there
            offer(_Failed(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()  # a generator's `finally` (cursor, connection) runs here, in its own thread

    thread = threading.Thread(target=reader, name="driftlight-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if isinstance(item, _End):
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield cast(T, item)  # neither end marker: an item of the source
    finally:
        gone.set()
        thread.join()
