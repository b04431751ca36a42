"""The latest fleet run as the service shows it: one cached read for /metrics and the status page.

`FleetRunCache` reads `core.fleet.FleetRunStore.latest` at most once per `ttl_s` seconds whatever
the number of scrapes or page views (a lock makes concurrent callers wait for the one read, then
share it). When the store cannot be read, the last good run is kept and the error is reported
beside it, so a scrape never fails and a gauge never flaps to zero because a database blinked.

`fleet_figures` is the pure part: a run document -> the numbers the gauges and the page show.
The retrain queue (`core.fleet_queue`, beside the runs) is attached to the run document as `queue` by
`store_reader` and read by `queue_figures`; before any cycle ran there is none and the gauges read 0.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)

COLOUR_ORDER = ("red", "yellow", "green", "not_enough_data")
SEVERITY = {"red": 2, "yellow": 1, "green": 0, "not_enough_data": -1}


def queue_figures(run: Mapping[str, Any] | None) -> tuple[int, dict[str, int]]:
    """(queue length, {outcome: decisions}) from a fleet run document.

    Reads `run["queue"]` (falling back to `run["summary"]["queue"]`), a mapping with
    `items`: the queued models (a list; its length is the queue length) or `length`: an int, and
    `decisions`: a list of mappings each with an `outcome` (or `state`) such as promoted, refused.
    A run with no queue (the queue not built yet, or nothing red) gives (0, {}).
    """
    if not run:
        return 0, {}
    q = run.get("queue")
    if q is None:
        q = (run.get("summary") or {}).get("queue")
    if not isinstance(q, Mapping):
        return 0, {}
    items = q.get("items")
    length = len(items) if isinstance(items, list) else int(q.get("length") or 0)
    outcomes: Counter[str] = Counter()
    for d in q.get("decisions") or []:
        if isinstance(d, Mapping):
            outcomes[str(d.get("outcome") or d.get("state") or "unknown")] += 1
    return length, dict(outcomes)


@dataclass(frozen=True)
class FleetFigures:
    """What the gauges and the page show of one fleet run."""

    fleet: str
    day: str
    engine: str
    finished_at: datetime  # UTC
    counts: dict[str, int]  # colour -> models
    worst: list[dict[str, Any]]  # the verdicts, worst first (as recorded)
    not_enough_data: list[str]  # model names
    queue_length: int
    decisions: dict[str, int]
    rows_read: int | None = None

    def age_s(self, now: datetime | None = None) -> float:
        return max(0.0, ((now or datetime.now(UTC)) - self.finished_at).total_seconds())


def fleet_figures(run: Mapping[str, Any]) -> FleetFigures:
    """A `FleetRunStore.latest` document -> `FleetFigures` (pure)."""
    summary = run.get("summary") or {}
    verdicts = [v for v in run.get("verdicts") or [] if isinstance(v, Mapping)]
    counts = dict.fromkeys(COLOUR_ORDER, 0)
    counts.update({str(k): int(v) for k, v in (summary.get("counts") or {}).items()})
    finished = datetime.fromisoformat(str(run["finished_at"]))
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    qlen, decisions = queue_figures(run)
    rows = summary.get("rows_read")
    return FleetFigures(
        fleet=str(run.get("fleet", "")),
        day=str(run.get("window_end", "")),
        engine=str(run.get("engine", "")),
        finished_at=finished,
        counts=counts,
        worst=[dict(v) for v in verdicts],
        not_enough_data=[str(v.get("name")) for v in verdicts if v.get("status") == "not_enough_data"],
        queue_length=qlen,
        decisions=decisions,
        rows_read=int(rows) if isinstance(rows, int | float) else None,
    )


@dataclass
class FleetRunCache:
    """The latest fleet run of `fleet`, read through `reader` at most once per `ttl_s`."""

    reader: Callable[[], Mapping[str, Any] | None]
    ttl_s: float = 15.0
    clock: Callable[[], float] = time.monotonic
    reads: int = 0  # how many times the store was actually read (tests, and the page's footnote)
    _run: Mapping[str, Any] | None = None
    _error: str | None = None
    _at: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def invalidate(self) -> None:
        """Read the store again at the next `get` (a new fleet run is known to exist)."""
        with self._lock:
            self._at = None

    def get(self) -> tuple[Mapping[str, Any] | None, str | None]:
        """(latest run or None, error of the last read or None)."""
        with self._lock:
            now = self.clock()
            if self._at is None or now - self._at >= self.ttl_s:
                self.reads += 1
                try:
                    self._run, self._error = self.reader(), None
                except Exception as exc:  # keep the last good run; say what failed
                    self._error = f"fleet run store unavailable: {type(exc).__name__}"
                self._at = now
            return self._run, self._error


def store_reader(url: str, fleet: str) -> Callable[[], Mapping[str, Any] | None]:
    """`FleetRunStore(url).latest(fleet)`, the store opened on first read (never at start-up)."""
    opened: list[Any] = []

    def read() -> Mapping[str, Any] | None:
        from core.fleet import FleetRunStore

        if not opened:
            opened.append(FleetRunStore(url))
        result: Mapping[str, Any] | None = opened[0].latest(fleet)
        if result is None or "queue" in result or "queue" in (result.get("summary") or {}):
            return result
        return {**result, "queue": _queue_of(url, fleet)}

    return read


def _queue_of(url: str, fleet: str) -> dict[str, Any] | None:
    """The retrain queue beside the fleet runs (`core.fleet_queue`), in the shape `queue_figures`
    reads: the models waiting (queued or retraining) and the last cycle's decisions by action.
    None when the queue's tables are not there yet (no cycle ever ran): the gauges read 0."""
    from core.fleet_queue import queue_summary

    try:
        q = queue_summary(url, fleet)
    except Exception as exc:  # a run store without queue tables, or one the service may only read
        log.debug("fleet view: no retrain queue at the run store (%s)", type(exc).__name__)
        return None
    waiting = [i for i in q["items"] if i["state"] in ("queued", "retraining")]
    last = q.get("last_cycle") or {}
    decisions = [{"outcome": d.get("action", "unknown"), "model": d.get("model_name")} for d in last.get("decisions") or []]
    return {"items": waiting, "decisions": decisions}
