"""Test rows shaped by the contract, and a recording metrics fake (shared by the log tests)."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime
from typing import Any

from data_contracts.contract import Contract

# A valid record (contract fields, JSON form), as a caller sends it.
GOOD_RECORD: dict[str, Any] = {
    "time_hour": "2013-04-01T14:00:00Z",
    "sched_dep_time": 1000,
    "sched_arr_time": 1300,
    "carrier": "UA",
    "origin": "EWR",
    "dest": "IAH",
    "distance": 1400.0,
    "temp": 50.0,
    "dewp": 30.0,
    "humid": 50.0,
    "wind_dir": 200.0,
    "wind_speed": 10.0,
    "wind_gust": None,
    "precip": 0.0,
    "pressure": 1010.0,
    "visib": 10.0,
}


def contract_inputs(contract: Contract, i: int, event_time: datetime, number: float) -> dict[str, Any]:
    """Raw inputs for row `i`: every contract field, nullable numbers missing on every 5th row."""
    inputs: dict[str, Any] = {}
    for spec in contract.fields:
        if spec.type == "timestamp":
            inputs[spec.name] = event_time
        elif spec.type == "category":
            inputs[spec.name] = spec.categories[i % len(spec.categories)]
        elif spec.type == "integer":
            inputs[spec.name] = int(spec.min or 0) + i % 60
        else:
            inputs[spec.name] = None if spec.nullable and i % 5 == 0 else float(spec.min or 0) + number
    return inputs


class RecordingMetrics:
    """A `LogMetrics` that keeps totals (thread-safe)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.written_rows: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.spooled_rows: Counter[str] = Counter()
        self.quarantined_rows: Counter[str] = Counter()
        self.last_pending = -1

    def set_pending(self, n: int) -> None:
        self.last_pending = n

    def written(self, kind: str, n: int) -> None:
        with self.lock:
            self.written_rows[kind] += n

    def write_failed(self, kind: str) -> None:
        with self.lock:
            self.failed[kind] += 1

    def spooled(self, kind: str, n: int) -> None:
        with self.lock:
            self.spooled_rows[kind] += n

    def quarantined(self, kind: str, n: int) -> None:
        with self.lock:
            self.quarantined_rows[kind] += n


def create_schemas_at_once(stores: list[Any], *, before_join: Any = None) -> list[BaseException]:
    """Run `create_schema` of every store in its own thread at the same time (workers starting
    together); the errors they raised. `before_join`: called once every thread has started."""
    errors: list[BaseException] = []

    def create(s: Any) -> None:
        try:
            s.create_schema()
        except BaseException as exc:  # collected and asserted on by the caller
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    if before_join is not None:
        before_join()
    for t in threads:
        t.join()
    return errors
