"""Contract violations seen at the door, kept for the monitor.

A rejected request never reaches the prediction log, so the monitor could not see an upstream
schema change or a caller sending garbage. The handler counts each violation in memory by
(second, field, kind) — a dict increment under a lock, off any I/O — and a background thread adds
the counts to the `contract_violations` table every few seconds (and at shutdown). If the store is
down the counts stay in memory and are added on the next attempt: nothing is lost or doubled.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.runs import RunStore

from data_contracts.contract import REJECTED_BY_EVENT

log = logging.getLogger("driftlight.service")


class ViolationCounter:
    def __init__(self, store: RunStore, interval: float = 5.0) -> None:
        self.store = store
        self.interval = interval
        self._lock = threading.Lock()
        # One flush at a time: a caller's flush waits for the background one in progress, so when
        # it returns, every count added before the call is in the store (or put back on failure).
        self._flush_lock = threading.Lock()
        self._counts: Counter[tuple[datetime, str, str, bool]] = Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, field: str, kind: str, n: int = 1, *, at: datetime | None = None, drill: bool = False) -> None:
        # One-second buckets: a drill's window of a few seconds must not inherit the previous
        # minute's violations (at most one row per second per field and kind, only while rejecting).
        # `at`: book under another time (a refused record's own event hour), not now.
        second = (at or datetime.now(UTC)).replace(microsecond=0)
        with self._lock:
            self._counts[(second, field, kind, drill)] += n

    def add_event_hours(self, records: list[Any], timestamp_field: str, *, drill: bool = False) -> None:
        """Book refused records by their own event hour too (those whose timestamp parses), so the
        monitor judging a window by event time sees the traffic that never reached the log."""
        hours: Counter[datetime] = Counter()
        for r in records:
            raw = r.get(timestamp_field) if isinstance(r, dict) else None
            if not isinstance(raw, str):
                continue
            try:
                t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            except ValueError:
                continue
            if t.tzinfo is None:
                continue
            try:  # year 1 at +14:00 has no UTC hour: such a record is counted per field, not by hour
                hours[t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)] += 1
            except (OverflowError, ValueError):
                continue
        for hour, n in hours.items():
            self.add(*REJECTED_BY_EVENT, n, at=hour, drill=drill)

    def flush(self) -> bool:
        with self._flush_lock:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            batch, self._counts = self._counts, Counter()
        ok = True
        for drill in (False, True):  # a drill's refusals are kept apart from the real traffic's
            part = Counter({(t, f, k): n for (t, f, k, d), n in batch.items() if d == drill})
            if not part:
                continue
            try:
                self.store.add_violations(part, drill=drill)
            except Exception as exc:  # store down: put the counts back for the next attempt
                with self._lock:
                    self._counts.update({(t, f, k, drill): n for (t, f, k), n in part.items()})
                log.warning("could not store contract-violation counts (%s); will retry", type(exc).__name__)
                ok = False
        return ok

    def start(self) -> None:
        def run() -> None:
            while not self._stop.wait(self.interval):
                self.flush()

        self._thread = threading.Thread(target=run, name="violation-counter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 1)
        self.flush()
