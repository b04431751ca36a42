"""The prediction log's optional write-ahead journal: acknowledge a row only once it is on disk.

In the default mode the service answers as soon as a row is in the writer's memory queue, so a hard
kill (SIGKILL, OOM) loses what is still in memory. With `DRIFTLIGHT_LOG_DURABILITY=local` every
accepted row is also appended to a local journal file and fsync'd, and the request is answered only
after that (`barrier()`): a SIGKILL then loses nothing that was answered.

Group commit: one thread takes every row appended since its last write, writes them with one
`write` and one `fsync`, then releases every request waiting on them; under load one fsync covers
many requests. Journal segments are spool files (`journal-<owner>-…`, the spool's line format), so
the existing crash recovery replays a dead writer's journal like its spill files; the store's writes
are idempotent, so rows that had already reached the store are not duplicated. A closed segment is
deleted once every row in it is in the store (`retire`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class Journal:
    """Append-only, group-committed journal of accepted rows in `spool_dir`.

    `encode(code, row) -> bytes` makes one line; `watermark()` returns how many rows the log has
    accepted so far (its FIFO position), recorded when a segment is closed so the segment can be
    deleted once the log's committed count passes it. `segment_bytes`: rotate past this size.
    """

    def __init__(
        self,
        spool_dir: Path,
        owner: str,
        encode: Callable[[str, Mapping[str, Any]], bytes],
        watermark: Callable[[], int],
        *,
        segment_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.spool_dir = spool_dir
        self.owner = owner
        self.encode = encode
        self.watermark = watermark
        self.segment_bytes = segment_bytes
        self._q: deque[tuple[str, Mapping[str, Any]]] = deque()
        self._append_lock = threading.Lock()  # appended count and queue order must agree
        self._appended = 0
        self._committed = 0
        self._waiters: list[tuple[int, Future[None]]] = []
        self._waiters_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = False
        self._error: OSError | None = None
        self._fh: Any = None
        self._path: Path | None = None
        self._closed_segments: deque[tuple[Path, int]] = deque()
        self._thread: threading.Thread | None = None
        self.fsyncs = 0  # group commits done (for benchmarks: rows / fsyncs = group size)

    def start(self) -> None:
        self._open_segment()
        self._thread = threading.Thread(target=self._run, name="driftlight-journal", daemon=True)
        self._thread.start()

    def append(self, code: str, row: Mapping[str, Any]) -> None:
        """Queue one row for the next group commit (O(1); the row is encoded by the journal thread)."""
        with self._append_lock:
            self._q.append((code, row))
            self._appended += 1
        self._wake.set()

    def barrier(self) -> Future[None]:
        """A future done once every row appended so far is on disk (fails with the OSError if the
        journal cannot be written)."""
        fut: Future[None] = Future()
        with self._append_lock:
            target = self._appended
        with self._waiters_lock:
            if self._committed >= target:
                fut.set_result(None)
            elif self._error is not None:
                fut.set_exception(self._error)
            else:
                self._waiters.append((target, fut))
        return fut

    def retire(self, done: int) -> None:
        """Delete closed segments whose rows are all in the store (`done`: the log's committed count)."""
        while self._closed_segments and self._closed_segments[0][1] <= done:
            path, _ = self._closed_segments.popleft()
            path.unlink(missing_ok=True)

    def close(self, *, delete: bool) -> None:
        """Commit what is queued, stop the thread; with `delete`, remove every segment (the caller
        has put all rows in the store or in ready- files)."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
            self._thread = None
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if delete:
            for path, _ in self._closed_segments:
                path.unlink(missing_ok=True)
            self._closed_segments.clear()
            if self._path is not None:
                self._path.unlink(missing_ok=True)

    # -- journal thread -----------------------------------------------------------------------------
    def _open_segment(self) -> None:
        self._path = self.spool_dir / f"journal-{self.owner}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
        self._fh = open(self._path, "ab")  # noqa: SIM115 - kept open across group commits

    def _run(self) -> None:
        while True:
            self._wake.wait(0.05)
            self._wake.clear()
            with self._append_lock:
                items = list(self._q)
                self._q.clear()
            if items:
                self._commit(items)
            elif self._stop:
                return

    def _commit(self, items: list[tuple[str, Mapping[str, Any]]]) -> None:
        data = b"".join(self.encode(code, row) for code, row in items)
        size = self._fh.tell()
        try:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError as exc:
            # Not on disk: fail every waiter (their requests are refused, not acknowledged). The
            # rows are still in the log's memory queue and will reach the store as usual.
            log.error("prediction log journal: cannot write %s: %s", self._path, exc)
            with contextlib.suppress(OSError):
                self._fh.truncate(size)
            self._release(len(items), exc)
            return
        self.fsyncs += 1
        self._release(len(items), None)
        if self._fh.tell() >= self.segment_bytes:
            self._rotate()

    def _release(self, n: int, error: OSError | None) -> None:
        with self._waiters_lock:
            self._committed += n
            self._error = error
            keep = []
            for target, fut in self._waiters:
                if error is not None:
                    fut.set_exception(error)
                elif self._committed >= target:
                    fut.set_result(None)
                else:
                    keep.append((target, fut))
            self._waiters = keep

    def _rotate(self) -> None:
        assert self._path is not None
        self._fh.close()
        # Every row in the closed segment was accepted by the log before this point.
        self._closed_segments.append((self._path, self.watermark()))
        self._open_segment()
