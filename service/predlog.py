"""The prediction log writer: takes served rows off the request path and into the store in batches.

The request handler calls `PredictionLog.log_prediction` / `log_label`, which only append to an
in-memory queue (no I/O, no lock, no logging). One daemon thread drains the queue in batches into a
store (`core.logstore.LogStore` or anything with the same two write methods).

Nothing accepted is ever lost, whatever the store does:

- a failed batch is kept and retried with exponential backoff; the store's writes are idempotent
  (predictions: insert-or-ignore by id; labels: latest `received_at` wins), so a batch that was
  committed but reported as failed is simply written again without duplicating anything;
- while the store is down, rows accumulate in memory up to `max_memory_rows`; the oldest beyond
  that are appended to a JSONL spool file (fsync'd), so memory stays bounded;
- `stop()` writes what it can and spools the rest; the next `start()` in any process claims the
  spool files (atomic rename, so two workers never take the same file) and writes them;
- a row the store cannot hold (it can never succeed: an event time that overflows in UTC, a NUL in
  text, a missing key) is isolated by bisecting its batch and quarantined with its reason in the
  store's dead-letter table (`LogStore.quarantine`), counted (`driftlight_log_rows_quarantined_total`,
  the monitor), while every other row is written. A row whose error *looks* like an outage (the
  driver says "operational error") but which fails again and again while the store answers a ping
  is isolated the same way after `suspect_after` failed attempts of its batch, so one poison row can
  never stop the log. Only if the dead-letter table itself refuses a row does it go to a
  `rejected-*.jsonl` file.

Spool files in `spool_dir` (`<state>-<owner>-<time_ns>-<random>.jsonl`, one `{"k": "p"|"l", "r": row}`
per line, datetimes as `{"$dt": "<ISO-8601>"}`). `owner` is a random id drawn by each log when it
starts (`w` + 16 hex digits), never a process id: in containers every worker gets the same small pids,
so a pid says nothing about who owns a file after a restart. The owner holds an exclusive `flock`
on `owner-<owner>.lock` for as long as it runs; the kernel drops it when the process dies, however
it dies (SIGKILL and OOM included):

- `spill-<owner>-…`   being appended by the live writer `owner`;
- `ready-<owner>-…`   sealed, claimable by any writer;
- `claimed-<owner>-…` being written to the store by `owner`;
- `rejected-<owner>-…` rows even the dead-letter table refused (never replayed automatically).

A `spill-`/`claimed-` file whose owner's lock is free (the owner is dead) is claimable too (crash
recovery). Every running writer looks for claimable files at start and every `rescan_interval`
seconds, so files stranded by a crashed sibling worker are written (and counted in `pending()`)
without waiting for a restart. Files named with a numeric pid (older versions) are claimable when
that pid is not alive or is this process's own pid (a leftover, since this writer never uses pids).

Guarantee and its limit: every accepted row ends up in the store exactly once, in a spool file, or
in the dead-letter table - unless the process is killed hard (SIGKILL, OOM) while rows are still in
memory: in the default mode those (at most `max_memory_rows` plus one batch) are lost; spilled rows
are not. With `durable=True` every row is also group-committed to a local journal (service.journal)
and `barrier()` tells the caller when it may acknowledge: then a hard kill loses nothing that was
acknowledged.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from datetime import date, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import exc as sa_exc

from core.logstore import InvalidRowError
from service.journal import Journal

log = logging.getLogger(__name__)

PREDICTION = "prediction"
LABEL = "label"
# Short codes: they are written once per row into the queue and the spool.
_P = "p"
_L = "l"
_KIND = {_P: PREDICTION, _L: LABEL}
# Granularity (s) of waits during backoff: how quickly the writer notices memory pressure or stop().
_WAIT_SLICE = 0.05
# Warn again about an ongoing outage at most this often (s); every failure is still counted.
_WARN_EVERY = 30.0


class LogMetrics(Protocol):
    """What the writer reports; the service wires Prometheus into this."""

    def set_pending(self, n: int) -> None:
        """Rows accepted but not yet in the store (queue + in flight + spooled)."""

    def written(self, kind: str, n: int) -> None:
        """`n` rows of `kind` ("prediction" | "label") committed to the store."""

    def write_failed(self, kind: str) -> None:
        """One failed write attempt of a `kind` batch (or one row rejected as invalid)."""

    def spooled(self, kind: str, n: int) -> None:
        """`n` rows of `kind` written to a spool file on disk."""

    def quarantined(self, kind: str, n: int) -> None:
        """`n` rows of `kind` the store cannot hold, kept in its dead-letter table instead."""


class NullLogMetrics:
    """A `LogMetrics` that records nothing (the default)."""

    def set_pending(self, n: int) -> None:
        pass

    def written(self, kind: str, n: int) -> None:
        pass

    def write_failed(self, kind: str) -> None:
        pass

    def spooled(self, kind: str, n: int) -> None:
        pass

    def quarantined(self, kind: str, n: int) -> None:
        pass


class RowStore(Protocol):
    """The two idempotent writes the log needs (`LogStore` implements them).

    Optional, looked up with getattr: `quarantine(kind, [(row, reason)])` (a dead-letter table;
    without it rejected rows go to a `rejected-` spool file) and `ping() -> bool` (without it an
    outage-looking error is never blamed on a row).
    """

    def insert_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int: ...

    def upsert_labels(self, rows: Sequence[Mapping[str, Any]]) -> int: ...


def is_row_error(exc: BaseException) -> bool:
    """True if `exc` says the rows themselves are bad (retrying cannot help).

    Everything else - connection refused, timeouts, locks, a missing table - is treated as a store
    outage and retried, because giving up on it would lose rows.
    """
    if isinstance(exc, InvalidRowError | sa_exc.DataError | sa_exc.IntegrityError):
        return True
    # A StatementError that is not a DBAPIError failed while binding parameters (Python side).
    return isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError)


# -- spool encoding --------------------------------------------------------------------------------
def _encode(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return {"$dt": obj.isoformat()}
    if isinstance(obj, date):
        return obj.isoformat()
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=str)
    # Better a string in the spool than a row lost because it could not be encoded.
    return str(obj)


def _decode(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and "$dt" in obj:
        return datetime.fromisoformat(obj["$dt"])
    return obj


def encode_record(code: str, row: Mapping[str, Any]) -> bytes:
    """One spool line (with newline) for a row of kind code `p` or `l`."""
    return json.dumps({"k": code, "r": row}, default=_encode, separators=(",", ":")).encode() + b"\n"


def decode_record(line: bytes) -> tuple[str, dict[str, Any]]:
    """(kind code, row) from a spool line; datetimes come back as aware `datetime`s."""
    rec = json.loads(line, object_hook=_decode)
    if rec.get("k") not in _KIND or not isinstance(rec.get("r"), dict):
        raise ValueError("not a spool record")
    return rec["k"], rec["r"]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _fsync_dir(path: Path) -> None:
    # Make renames and new files survive an OS crash, not just a process crash.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _SpoolFile:
    """A sealed spool file being written to the store, read forward in committed chunks."""

    def __init__(self, path: Path, rows: int, *, own: bool) -> None:
        self.path = path
        self.rows_left = rows  # lines not yet committed (an estimate until read)
        self.offset = 0  # bytes whose rows are committed
        self.own = own  # spilled by this log (counts toward flush()) vs recovered

    def read(self, n: int) -> tuple[list[tuple[str, dict[str, Any]]], int, list[bytes]]:
        """Up to `n` records after the committed offset: (records, end offset, bad lines)."""
        out: list[tuple[str, dict[str, Any]]] = []
        bad: list[bytes] = []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            while len(out) < n:
                line = fh.readline()
                if not line:
                    break
                if not line.endswith(b"\n"):
                    # Torn last line of a writer killed mid-append. Those rows died with the
                    # process; keep the fragment for a person (it goes to a rejected- file).
                    bad.append(line)
                    break
                try:
                    out.append(decode_record(line))
                except ValueError:
                    bad.append(line)
            return out, fh.tell(), bad


class _SpoolWriter:
    """The active `spill-` segment: append-only, fsync'd after every append."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "ab")  # noqa: SIM115 - kept open across appends, closed in seal()

    def append(self, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Append records durably; on failure the file is cut back so no torn line is left."""
        data = b"".join(encode_record(code, row) for code, row in items)
        size = self._fh.tell()
        try:
            self._fh.write(data)
            self._fh.flush()
            os.fsync(self._fh.fileno())
        except OSError:
            with contextlib.suppress(OSError):
                self._fh.truncate(size)
            raise
        self.rows += data.count(b"\n")

    def close(self) -> None:
        self._fh.close()


class PredictionLog:
    """Batched, off-request-path writer of predictions and labels into a store.

    `batch_size`: rows per store call; `flush_interval` (s): how long a short batch waits for more
    rows; `max_memory_rows`: rows held in memory before the oldest spill to `spool_dir`;
    `retry_initial` / `retry_max` (s): backoff between failed attempts; `suspect_after`: failed
    attempts of one batch, with the store answering a ping, before its rows are tried one by one.
    """

    def __init__(
        self,
        store: RowStore,
        *,
        spool_dir: Path,
        batch_size: int = 500,
        flush_interval: float = 0.2,
        max_memory_rows: int = 100_000,
        retry_initial: float = 0.1,
        retry_max: float = 5.0,
        suspect_after: int = 3,
        rescan_interval: float = 5.0,
        spool_reserve_bytes: int = 0,
        durable: bool = False,
        journal_segment_bytes: int = 64 * 1024 * 1024,
        ensure_schema: Callable[[], Any] | None = None,
        metrics: LogMetrics | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_memory_rows < batch_size:
            raise ValueError(f"max_memory_rows ({max_memory_rows}) must be >= batch_size ({batch_size})")
        if flush_interval <= 0 or retry_initial <= 0 or retry_max < retry_initial:
            raise ValueError("need flush_interval > 0 and 0 < retry_initial <= retry_max (seconds)")
        if suspect_after < 1:
            raise ValueError(f"suspect_after must be >= 1, got {suspect_after}")
        self.suspect_after = suspect_after
        self.rescan_interval = rescan_interval
        self.spool_reserve_bytes = spool_reserve_bytes
        self.durable = durable
        self.journal_segment_bytes = journal_segment_bytes
        # The store was down when the service started, so its tables may not exist yet: create them
        # (idempotent) before the first write and while idle, until it works.
        self._ensure_schema = ensure_schema
        self._journal: Journal | None = None
        self.store = store
        self.spool_dir = Path(spool_dir)
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_memory_rows = max_memory_rows
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.metrics: LogMetrics = metrics or NullLogMetrics()

        # Hot path state: deque.append is atomic under the GIL, so producers need no lock.
        self._q: deque[tuple[str, Mapping[str, Any]]] = deque()
        self._closed = False

        # Writer state. `_lock` guards every mutation below (never held during a store call).
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._popped = 0  # rows ever taken off `_q`
        self._done = 0  # of those, rows committed (or rejected); FIFO, so a prefix of `_popped`
        self._held = 0  # rows out of `_q` but not yet in the store (in flight + spool files)
        self._handed_off = 0  # rows left in `ready-` files by stop() for the next start()
        self._batch: Sequence[tuple[str, Mapping[str, Any]]] | None = None
        self._batch_src: _SpoolFile | None = None  # None: the batch came from memory
        self._batch_end = 0  # offset in `_batch_src` once the batch is committed
        self._batch_kinds_done: set[str] = set()
        self._sources: deque[_SpoolFile] = deque()  # recovered files first, then own segments
        self._spill: _SpoolWriter | None = None
        self._flush_waiters = 0
        self._stopping = False
        self._stop_deadline = float("inf")
        self._abandoned = False  # stop() took over from a writer stuck in a store call
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._outage_since: float | None = None
        self._last_warning = -_WARN_EVERY
        self._last_spill_error = -_WARN_EVERY
        self._pid = os.getpid()
        self._owner = "w" + uuid.uuid4().hex[:16]  # see the module docstring: never a pid
        self._owner_lock: int | None = None  # fd holding flock on owner-<owner>.lock while running
        self._last_scan = time.monotonic()
        self._reserve: int | None = None  # fd of reserve-<owner>.bin (disk space kept for stop())
        self._spool_full = False  # the last spill failed with a full disk

    # -- hot path -------------------------------------------------------------------------------
    def log_prediction(self, row: Mapping[str, Any]) -> None:
        """Accept one prediction row (see `LogStore.insert_predictions`); O(1), no I/O, no lock.

        The row is kept by reference: do not mutate it afterwards. Raises `RuntimeError` after
        `stop()`.
        """
        if self._closed:
            raise RuntimeError("PredictionLog is stopped: rows logged now would be lost")
        self._q.append((_P, row))
        if self._journal is not None:
            self._journal.append(_P, row)

    def log_label(self, row: Mapping[str, Any]) -> None:
        """Accept one label row (`prediction_id`, `label` 0/1, `received_at`); same cost as above."""
        if self._closed:
            raise RuntimeError("PredictionLog is stopped: rows logged now would be lost")
        self._q.append((_L, row))
        if self._journal is not None:
            self._journal.append(_L, row)

    def barrier(self) -> Future[None] | None:
        """In durable mode, a future done once every row logged so far is fsync'd in the local
        journal (acknowledge only then); None in the default mode (nothing to wait for)."""
        return self._journal.barrier() if self._journal is not None else None

    # -- control --------------------------------------------------------------------------------
    def start(self) -> None:
        """Claim spool files left by earlier processes, then start the writer thread."""
        if self._thread is not None or self._closed:
            raise RuntimeError("PredictionLog.start() may be called once, before stop()")
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self._take_owner_lock()
        self._make_reserve()
        self._adopt(self._claim_spool_files())
        if self._ensure_schema is not None:
            self._outage_since = time.monotonic()  # down at start: /ready says so until it answers
        if self.durable:
            self._journal = Journal(
                self.spool_dir, self._owner, encode_record, self._accepted, segment_bytes=self.journal_segment_bytes
            )
            self._journal.start()
        self._thread = threading.Thread(target=self._run, name="driftlight-predlog", daemon=True)
        self._thread.start()

    def pending(self) -> int:
        """Rows accepted (or recovered) but not yet in the store: queue + in flight + spooled."""
        with self._lock:
            return len(self._q) + self._held + self._handed_off

    def flush(self, timeout: float) -> bool:
        """Wait up to `timeout` s until every row accepted before the call (and every recovered
        spool row) is in the store. Returns False on timeout (e.g. the store is down)."""
        with self._cv:
            target = self._popped + len(self._q)
            self._flush_waiters += 1
        self._wake.set()
        try:
            with self._cv:
                return self._cv.wait_for(lambda: self._flushed(target), timeout)
        finally:
            with self._lock:
                self._flush_waiters -= 1

    def _flushed(self, target: int) -> bool:
        return self._done >= target and not any(not s.own for s in self._sources) and not self._abandoned

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting rows, write what the store takes within `timeout` s, spool the rest.

        After it returns, every accepted row is in the store or in a `ready-` spool file (fsync'd)
        that the next `start()` on this `spool_dir` writes. Idempotent.
        """
        if self._closed and self._thread is None:
            return
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is not None:
            with self._lock:
                self._stopping = True
                # Leave the last fifth of the budget for writing the spool file.
                self._stop_deadline = time.monotonic() + 0.8 * timeout
            self._wake.set()
            thread.join(timeout)
        with self._lock:
            if thread is not None and thread.is_alive():
                # The writer is stuck in a store call past the deadline. Take over its state; if its
                # call does commit later, the spooled copy is a harmless idempotent replay.
                self._abandoned = True
                log.error("prediction log writer did not finish within %.1f s; spooling its rows", timeout)
            # Also catches rows a producer appended while stop() was closing the log.
            try:
                self._spool_everything()
            except OSError as exc:
                # Disk full at shutdown: give back the space reserved at start() for exactly this
                # moment and try once more; only if that fails too are memory rows lost.
                if not (_disk_full(exc) and self._release_reserve()):
                    raise
                log.error("prediction log: spool disk full at shutdown; released the %d-byte reserve", self.spool_reserve_bytes)
                self._spool_everything()
            pending = len(self._q) + self._held + self._handed_off
            abandoned = self._abandoned
        if self._journal is not None:
            # Every journaled row is in the store or a ready- file now: the journal has done its
            # job (abandoned: keep it, a later start() replays it idempotently). Closed outside the
            # lock: its thread takes the lock to read the watermark when it rotates a segment.
            self._journal.close(delete=not abandoned)
        if not abandoned:
            # Every file of ours is `ready-` now: claimable by anyone, no lock needed.
            self._release_owner_lock()
        self.metrics.set_pending(pending)

    # -- spool recovery -------------------------------------------------------------------------
    def _lock_path(self, owner: str) -> Path:
        return self.spool_dir / f"owner-{owner}.lock"

    def _take_owner_lock(self) -> None:
        fd = os.open(self._lock_path(self._owner), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh random name: never contended
        self._owner_lock = fd

    def _accepted(self) -> int:
        """Rows accepted so far, in FIFO order (the journal's retirement watermark)."""
        with self._lock:
            return self._popped + len(self._q)

    def _reserve_path(self, owner: str) -> Path:
        return self.spool_dir / f"reserve-{owner}.bin"

    def _make_reserve(self) -> None:
        """Take `spool_reserve_bytes` of real disk blocks now, to be given back if the disk is full
        when stop() must spool what is in memory."""
        if self.spool_reserve_bytes <= 0:
            return
        path = self._reserve_path(self._owner)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, self.spool_reserve_bytes)
        except OSError as exc:
            os.close(fd)
            path.unlink(missing_ok=True)
            self._spool_full = _disk_full(exc)
            log.error("prediction log: cannot reserve %d bytes in %s: %s", self.spool_reserve_bytes, self.spool_dir, exc)
            return
        self._reserve = fd

    def _release_reserve(self) -> bool:
        """Give the reserved space back to the file system; True if there was any."""
        if self._reserve is None:
            return False
        with contextlib.suppress(OSError):
            self._reserve_path(self._owner).unlink(missing_ok=True)
        os.close(self._reserve)
        self._reserve = None
        return True

    def health(self) -> str | None:
        """None when the log is healthy, else why not, for /ready: a full spool disk (rows can no
        longer leave memory) or a store that has not answered for over a second."""
        if self._spool_full:
            return "spool disk full: rows cannot be spilled and wait in memory"
        since = self._outage_since
        if since is not None and (down := time.monotonic() - since) > 1.0:
            return f"log store unreachable for {down:.0f} s: rows wait in memory and the spool"
        return None

    def disk_full(self) -> bool:
        """True while the spool disk is full (a worker should stop taking traffic: fail closed)."""
        return self._spool_full

    def _release_owner_lock(self) -> None:
        self._release_reserve()
        if self._owner_lock is not None:
            with contextlib.suppress(OSError):  # a vanished spool folder must not fail the shutdown
                self._lock_path(self._owner).unlink(missing_ok=True)
            os.close(self._owner_lock)
            self._owner_lock = None

    def _owner_alive(self, owner: str, dead: dict[str, int]) -> bool:
        """True if a live writer owns files named `owner`; a dead owner's lock is kept in `dead`."""
        if owner == self._owner:
            return True
        if owner.isdigit():  # an older version's pid-named file
            return int(owner) != self._pid and _pid_alive(int(owner))
        if owner in dead:
            return False
        try:
            fd = os.open(self._lock_path(owner), os.O_RDWR)
        except FileNotFoundError:
            return False  # its owner stopped cleanly or was cleaned up: nobody holds it
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return True
        dead[owner] = fd  # held until its files are claimed, so no one else judges it meanwhile
        return False

    def _adopt(self, claimed: list[_SpoolFile]) -> None:
        with self._lock:
            for src in claimed:
                self._sources.append(src)
                self._held += src.rows_left
        if claimed:
            log.info("recovering %d spooled rows from %d file(s)", sum(s.rows_left for s in claimed), len(claimed))

    def _claim_spool_files(self) -> list[_SpoolFile]:
        claimed: list[_SpoolFile] = []
        dead: dict[str, int] = {}
        try:
            claimed = self._claim_from(dead)
        finally:
            for owner, fd in dead.items():
                # Its files are ours now (or another claimer's): its lock and reserve have no use.
                self._reserve_path(owner).unlink(missing_ok=True)
                self._lock_path(owner).unlink(missing_ok=True)
                os.close(fd)
        return claimed

    def _claim_from(self, dead: dict[str, int]) -> list[_SpoolFile]:
        claimed: list[_SpoolFile] = []
        for path in sorted(self.spool_dir.glob("*.jsonl"), key=lambda p: p.name.split("-", 2)[-1]):
            state, _, rest = path.name.partition("-")
            owner, _, suffix = rest.partition("-")
            if state not in ("ready", "spill", "claimed", "journal") or not owner.isalnum():
                continue
            if state != "ready" and self._owner_alive(owner, dead):
                continue  # a live writer owns it
            target = path.with_name(f"claimed-{self._owner}-{suffix}")
            try:
                # Atomic: of several workers renaming the same file, exactly one succeeds.
                os.rename(path, target)
            except FileNotFoundError:
                continue
            with open(target, "rb") as fh:
                rows = sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
            claimed.append(_SpoolFile(target, rows, own=False))
        if claimed:
            _fsync_dir(self.spool_dir)
        return claimed

    def _new_spool_path(self, state: str) -> Path:
        return self.spool_dir / f"{state}-{self._owner}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"

    # -- writer thread --------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception:  # a bug here must not silently stop the log
                log.exception("prediction log writer error; continuing")
                time.sleep(self.flush_interval)

    def _step(self) -> bool:
        """One writer iteration; False when the writer should exit."""
        if not self._refresh_pending():
            return False
        if self._journal is not None:
            self._journal.retire(self._done)
        if not self._stopping and time.monotonic() - self._last_scan >= self.rescan_interval:
            # Files a sibling worker stranded (it crashed, or stopped and handed them off).
            self._last_scan = time.monotonic()
            if self._batch is None and not self._q:
                self._schema_ready()  # the store down at start: notice its return with no traffic
            try:
                self._adopt(self._claim_spool_files())
            except OSError as exc:  # an unreadable spool folder: rows stay where they are; say so
                log.warning("prediction log: cannot scan %s for stranded spool files: %s", self.spool_dir, exc)
        if self._batch is None and not self._next_batch():
            with self._lock:
                if self._stopping and not self._q and not self._sources and self._batch is None:
                    self._spool_everything()  # nothing left; closes an empty active spill if any
                    return False
            return True
        if self._stopping and time.monotonic() >= self._stop_deadline:
            with self._lock:
                self._spool_everything()
            return False
        if self._write_batch():
            if self._outage_since is not None:
                log.warning(
                    "prediction log store is back after %d failed attempts (%.1f s)",
                    self._failures,
                    time.monotonic() - self._outage_since,
                )
            self._failures, self._outage_since = 0, None
            return True
        return self._backoff()

    def _urgent(self) -> bool:
        return self._stopping or self._flush_waiters > 0

    def _next_batch(self) -> bool:
        """Load the next batch: spool files first (FIFO), then memory. False if nothing to do."""
        with self._lock:
            if self._abandoned:
                return False
            if self._spill is not None:
                # Seal the active segment so rows spilled from now on land after it in order.
                self._seal_spill()
            while self._sources:
                src = self._sources[0]
                try:
                    items, end, bad = src.read(self.batch_size)
                except OSError:
                    log.exception("cannot read spool file %s; moving it aside", src.path)
                    self._drop_source(src, broken=True)
                    continue
                if bad:
                    self._reject_lines(bad)
                if items:
                    self._batch, self._batch_src, self._batch_end = items, src, end
                    self._batch_kinds_done = set()
                    return True
                # Every row of the file is committed: only now may it go.
                self._drop_source(src, broken=False)
        if len(self._q) < self.batch_size and not self._urgent():
            self._wake.wait(self.flush_interval)
            self._wake.clear()
        with self._lock:
            if self._abandoned:
                return False
            n = min(len(self._q), self.batch_size)
            if n == 0:
                return False
            self._batch = [self._q.popleft() for _ in range(n)]
            self._batch_src, self._batch_kinds_done = None, set()
            self._popped += n
            self._held += n
        return True

    def _drop_source(self, src: _SpoolFile, *, broken: bool) -> None:
        self._sources.popleft()
        if broken:
            os.replace(src.path, src.path.with_name("broken-" + src.path.name))
        else:
            src.path.unlink(missing_ok=True)
        _fsync_dir(self.spool_dir)
        self._held -= max(src.rows_left, 0)
        if src.own:
            self._done += max(src.rows_left, 0)
        self._cv.notify_all()

    def _write_batch(self) -> bool:
        """Write the in-flight batch; True once all of it is committed (or quarantined)."""
        assert self._batch is not None
        if not self._schema_ready():
            return False
        # After repeated failures with the store answering, suspect the rows rather than the store.
        suspect = self._failures >= self.suspect_after and self._store_answers()
        for code in (_P, _L):
            if code in self._batch_kinds_done:
                continue
            rows = [row for c, row in self._batch if c == code]
            if rows:
                kind = _KIND[code]
                bad: list[tuple[Mapping[str, Any], str]] = []
                try:
                    written = self._write_isolating(code, rows, bad, suspect=suspect)
                    self._quarantine(code, bad)
                except Exception as exc:
                    self.metrics.write_failed(kind)
                    self._note_failure(kind, exc)
                    return False
                self.metrics.written(kind, written)
            self._batch_kinds_done.add(code)
        with self._lock:
            if self._abandoned:
                return True  # stop() already spooled this batch
            n = len(self._batch)
            if self._batch_src is None:
                self._done += n
            else:
                self._batch_src.offset = self._batch_end
                self._batch_src.rows_left -= n
                if self._batch_src.own:
                    self._done += n
            self._held -= n
            self._batch, self._batch_src = None, None
            self._cv.notify_all()
        return True

    def _schema_ready(self) -> bool:
        """True once the store's tables exist (created now if the store was down at start)."""
        if self._ensure_schema is None:
            return True
        try:
            self._ensure_schema()
        except Exception as exc:
            self._note_failure("schema", exc)
            return False
        self._ensure_schema = None
        self._failures, self._outage_since = 0, None
        log.warning("prediction log: the store answers again; schema ensured")
        return True

    def _store_answers(self) -> bool:
        ping = getattr(self.store, "ping", None)
        return bool(ping()) if callable(ping) else False

    def _write_isolating(
        self, code: str, rows: list[Mapping[str, Any]], bad: list[tuple[Mapping[str, Any], str]], *, suspect: bool
    ) -> int:
        """Write `rows`, bisecting to set aside (into `bad`) exactly the rows the store cannot hold.

        A row error (the store says the row is invalid) is isolated at once. With `suspect`, any
        other error is isolated too, as long as the store keeps answering a ping; a single row is
        only blamed if it fails twice on its own. Returns the number of rows passed to a successful
        write. Store outages propagate (the batch is retried as a whole; writes are idempotent).
        """
        write = self.store.insert_predictions if code == _P else self.store.upsert_labels
        try:
            write(rows)
            return len(rows)
        except Exception as exc:
            if not is_row_error(exc):
                if not suspect or not self._store_answers():
                    raise
                if len(rows) == 1:
                    try:  # once more, alone: a transient error (a lock) should pass now
                        write(rows)
                        return 1
                    except Exception as again:
                        if is_row_error(again) or self._store_answers():
                            bad.append((rows[0], f"fails while the store answers: {type(again).__name__}: {again}"))
                            return 0
                        raise
            elif len(rows) == 1:
                bad.append((rows[0], f"{type(exc).__name__}: {exc}"))
                return 0
        mid = len(rows) // 2
        return self._write_isolating(code, rows[:mid], bad, suspect=suspect) + self._write_isolating(
            code, rows[mid:], bad, suspect=suspect
        )

    def _quarantine(self, code: str, bad: list[tuple[Mapping[str, Any], str]]) -> None:
        """Keep rows the store cannot hold in its dead-letter table (else a `rejected-` file).

        An outage while writing the dead-letter rows propagates: the batch is retried whole.
        """
        if not bad:
            return
        kind = _KIND[code]
        for _, reason in bad[:3]:
            log.error("prediction log: %s row quarantined (the store cannot hold it): %s", kind, reason[:500])
        quarantine = getattr(self.store, "quarantine", None)
        if callable(quarantine):
            try:
                quarantine(kind, bad)
                self.metrics.quarantined(kind, len(bad))
                return
            except Exception as exc:
                if not is_row_error(exc):
                    raise
                log.error("prediction log: the dead-letter table refused %d row(s) too: %s", len(bad), exc)
        for row, reason in bad:
            self.metrics.write_failed(kind)
            rec = json.loads(encode_record(code, row))
            rec["error"] = reason[:2000]
            self._append_rejected([json.dumps(rec).encode() + b"\n"])
        self.metrics.quarantined(kind, len(bad))

    def _reject_lines(self, lines: list[bytes]) -> None:
        log.error("prediction log: %d unreadable spool line(s) kept in a rejected- file", len(lines))
        self._append_rejected([line if line.endswith(b"\n") else line + b"\n" for line in lines])

    def _append_rejected(self, lines: list[bytes]) -> None:
        path = self._new_spool_path("rejected")
        with open(path, "ab") as fh:
            fh.write(b"".join(lines))
            fh.flush()
            os.fsync(fh.fileno())

    def _note_failure(self, kind: str, exc: BaseException) -> None:
        now = time.monotonic()
        self._failures += 1
        if self._outage_since is None:
            self._outage_since = now
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning(
                "prediction log: writing %s batch failed (attempt %d, %d rows pending); retrying: %s",
                kind,
                self._failures,
                self.pending(),
                exc,
            )

    def _backoff(self) -> bool:
        """Sleep before the next attempt, spilling meanwhile; False if the writer should exit."""
        delay = min(self.retry_max, self.retry_initial * 2 ** (self._failures - 1))
        # Jitter so several workers do not hammer a recovering database in lockstep.
        delay *= random.uniform(0.5, 1.0)
        if self._stopping and time.monotonic() + delay >= self._stop_deadline:
            with self._lock:
                self._spool_everything()
            return False
        until = time.monotonic() + delay
        while (left := until - time.monotonic()) > 0:
            time.sleep(min(left, _WAIT_SLICE))
            # Keep spilling and the gauge moving during a long outage (retry_max can be seconds).
            if not self._refresh_pending():
                return False
        return True

    def _refresh_pending(self) -> bool:
        """Spill past the memory bound and publish the pending gauge; False once abandoned."""
        with self._lock:
            if self._abandoned:
                return False
            self._spill_excess()
            pending = len(self._q) + self._held + self._handed_off
        self.metrics.set_pending(pending)
        return True

    # -- spooling (callers hold `_lock`) ---------------------------------------------------------
    def _spill_excess(self) -> None:
        in_memory = len(self._q) + (len(self._batch) if self._batch and self._batch_src is None else 0)
        excess = min(in_memory - self.max_memory_rows, len(self._q))
        if excess <= 0:
            return
        # The oldest queued rows: they are newer than the in-flight batch and older than the rest
        # of the queue, so writing in-flight -> spool -> queue keeps the order flush() relies on.
        items = [self._q.popleft() for _ in range(excess)]
        try:
            if self._spill is None:
                self._spill = _SpoolWriter(self._new_spool_path("spill"))
                _fsync_dir(self.spool_dir)
            self._spill.append(items)
        except OSError as exc:
            # Disk full or unwritable: keep the rows in memory (over the bound) rather than lose them.
            self._spool_full = _disk_full(exc)
            self._q.extendleft(reversed(items))
            now = time.monotonic()
            if now - self._last_spill_error >= _WARN_EVERY:
                self._last_spill_error = now
                log.exception("prediction log: cannot spill to %s; keeping %d rows in memory", self.spool_dir, len(self._q))
            return
        self._spool_full = False
        self._popped += excess
        self._held += excess
        self._count_spooled(items)

    def _seal_spill(self) -> None:
        assert self._spill is not None
        self._spill.close()
        self._sources.append(_SpoolFile(self._spill.path, self._spill.rows, own=True))
        self._spill = None

    def _spool_everything(self) -> None:
        """Hand everything not yet in the store to `ready-` files for the next start().

        If the spool cannot be written (disk full), the rows stay in memory and OSError propagates.
        """
        memory_batch = self._batch if self._batch is not None and self._batch_src is None else []
        # Kinds of a half-written batch that are already committed need no spooling.
        items = [(c, r) for c, r in memory_batch if c not in self._batch_kinds_done]
        queued = list(self._q)
        items += queued
        if not items and self._spill is None and not self._sources:
            if memory_batch:  # fully committed, its bookkeeping cut short by an abandon
                self._held -= len(memory_batch)
                self._batch = None
            return
        if items:
            if self._spill is None:
                self._spill = _SpoolWriter(self._new_spool_path("spill"))
            self._spill.append(items)
            self._count_spooled(items)
        # Only now that the rows are on disk do they leave memory. Producers are closed out by
        # now; any row appended after the copy above stays queued for the next call.
        for _ in range(len(queued)):
            self._q.popleft()
        self._popped += len(queued)
        # A batch read from a spool file is still in that file (its offset was not advanced).
        self._batch, self._batch_src = None, None
        if self._spill is not None:
            self._seal_spill()
        handed = 0
        while self._sources:
            src = self._sources.popleft()
            if src.rows_left <= 0:
                src.path.unlink(missing_ok=True)
                continue
            # Rows before `offset` are committed already; replaying them is an idempotent no-op.
            suffix = src.path.name.split("-", 2)[2]
            os.replace(src.path, src.path.with_name(f"ready-{self._owner}-{suffix}"))
            handed += src.rows_left
        _fsync_dir(self.spool_dir)
        # Everything out of the queue is now committed or in a handed-off file.
        self._held = 0
        self._handed_off += handed
        log.warning("prediction log: %d rows left in %s for the next start()", handed, self.spool_dir)
        self._cv.notify_all()

    def _count_spooled(self, items: Sequence[tuple[str, Mapping[str, Any]]]) -> None:
        n_pred = sum(1 for c, _ in items if c == _P)
        if n_pred:
            self.metrics.spooled(PREDICTION, n_pred)
        if len(items) - n_pred:
            self.metrics.spooled(LABEL, len(items) - n_pred)
