"""The prediction log: what is served is stored, exactly once, whatever the store does.

A real SQLite file store throughout. Outages come from `FlakyStore`, a wrapper around the real store
(the writer's `RowStore` seam), not from patching the network.
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import select, text

from core.logstore import FIXED_PREDICTION_COLUMNS, LogStore, SchemaMismatchError
from data_contracts.contract import load_contract
from service.predlog import PredictionLog, decode_record, encode_record
from tests.rows import RecordingMetrics, contract_inputs, create_schemas_at_once

CONTRACT = load_contract()
FEATURES = ("dep_hour", "arr_hour", "distance", "temp", "temp_missing", "carrier_code")
T0 = datetime(2013, 4, 1, 10, tzinfo=UTC)
NEW_YORK = ZoneInfo("America/New_York")


# -- helpers -----------------------------------------------------------------------------------
def make_prediction(
    i: int,
    *,
    prefix: str = "p",
    event_time: datetime | None = None,
    served_at: datetime | None = None,
    features: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """A realistic prediction row whose inputs are derived from the contract."""
    event_time = event_time or T0 + timedelta(hours=i)
    inputs = contract_inputs(CONTRACT, i, event_time, 1.5)
    return {
        "prediction_id": f"{prefix}{i:08d}",
        "served_at": served_at or datetime.now(UTC),
        "event_time": event_time,
        "model_name": "flights-late",
        "model_version": "3",
        "probability": (i % 100) / 100,
        "late": int(i % 3 == 0),
        "warnings": ["unseen carrier"] if i % 7 == 0 else [],
        "inputs": inputs,
        "features": dict(features) if features is not None else {f: float(i % 13) for f in FEATURES},
    }


def make_label(pid: str, label: int, received_at: datetime | None = None) -> dict[str, Any]:
    return {"prediction_id": pid, "label": label, "received_at": received_at or datetime.now(UTC)}


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def stored_ids(store: LogStore) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(store.predictions.c.prediction_id)).scalars())


def labels_by_id(store: LogStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(store.labels.c.prediction_id, store.labels.c.label)).all()
    return {pid: label for pid, label in rows}


def spool_files(spool: Path, state: str = "") -> list[Path]:
    return sorted(spool.glob(f"{state}*.jsonl")) if spool.exists() else []


def _outage() -> sa_exc.OperationalError:
    return sa_exc.OperationalError("INSERT INTO predictions ...", None, ConnectionRefusedError("store down (test)"))


class FlakyStore:
    """Wraps a real store; fails on demand like an unreachable or flaky database would.

    `down` (an Event): every call fails; `fail_next`: the next N calls fail before writing;
    `fail_after_commit`: the next N calls write and commit, then report failure (a lost ack).
    Records the ids each successful call was given.
    """

    def __init__(self, inner: LogStore) -> None:
        self.inner = inner
        self.down = threading.Event()
        self.fail_next = 0
        self.fail_after_commit = 0
        self.lock = threading.Lock()
        self.calls = 0
        self.prediction_ids: list[str] = []

    def _gate(self) -> bool:
        with self.lock:
            self.calls += 1
            if self.down.is_set():
                raise _outage()
            if self.fail_next > 0:
                self.fail_next -= 1
                raise _outage()
            if self.fail_after_commit > 0:
                self.fail_after_commit -= 1
                return True
            return False

    def insert_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        lose_ack = self._gate()
        n = self.inner.insert_predictions(rows)
        with self.lock:
            self.prediction_ids += [r["prediction_id"] for r in rows]
        if lose_ack:
            raise _outage()
        return n

    def upsert_labels(self, rows: Sequence[Mapping[str, Any]]) -> int:
        lose_ack = self._gate()
        n = self.inner.upsert_labels(rows)
        if lose_ack:
            raise _outage()
        return n


class NullStore:
    """Accepts everything instantly: isolates the writer's own cost."""

    def insert_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        return len(rows)

    def upsert_labels(self, rows: Sequence[Mapping[str, Any]]) -> int:
        return len(rows)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = LogStore(f"sqlite:///{tmp_path / 'db' / 'log.db'}", CONTRACT, FEATURES)
    s.create_schema()
    yield s
    s.dispose()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def make_log(store: Any, spool: Path, **kwargs: Any) -> PredictionLog:
    opts: dict[str, Any] = {"batch_size": 100, "flush_interval": 0.02, "retry_initial": 0.01, "retry_max": 0.05}
    opts.update(kwargs)
    return PredictionLog(store, spool_dir=spool, **opts)


# -- the store ---------------------------------------------------------------------------------
@pytest.mark.unit
def test_schema_is_derived_from_the_contract_and_created_idempotently(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "log.db"
    s = LogStore(f"sqlite:///{db}", CONTRACT, FEATURES)
    assert not db.parent.exists(), "nothing may touch the disk before create_schema()"
    s.create_schema()
    s.create_schema()
    cols = [c.name for c in s.predictions.columns]
    assert cols == [*FIXED_PREDICTION_COLUMNS, *CONTRACT.field_names, *(f"f_{f}" for f in FEATURES)]
    assert cols[0] == "prediction_id" and s.predictions.c.prediction_id.primary_key
    with s.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        indexes = {r[1] for r in conn.execute(text("PRAGMA index_list(predictions)"))}
    assert {"ix_predictions_event_time", "ix_predictions_served_at"} <= indexes
    s.dispose()


@pytest.mark.unit
def test_schema_mismatch_is_reported_not_retried(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    LogStore(url, CONTRACT, FEATURES).create_schema()
    with pytest.raises(SchemaMismatchError, match="f_new_feature"):
        LogStore(url, CONTRACT, (*FEATURES, "new_feature")).create_schema()


@pytest.mark.unit
def test_insert_is_idempotent_and_nan_features_are_null(store: LogStore) -> None:
    row = make_prediction(1, features={"dep_hour": math.nan, "arr_hour": 1.0, "distance": np.float32(2.5)})
    row["inputs"]["temp"] = math.nan
    assert store.insert_predictions([row]) == 1
    assert store.insert_predictions([row, make_prediction(2)]) == 1
    assert store.count_predictions() == 2
    with store.engine.connect() as conn:
        query = "SELECT f_dep_hour, f_arr_hour, f_distance, f_temp, temp FROM predictions WHERE prediction_id = 'p00000001'"
        got = conn.execute(text(query)).one()
    # dep_hour NaN -> NULL; temp missing from the features mapping -> NULL; input NaN -> NULL.
    assert got == (None, 1.0, 2.5, None, None)


@pytest.mark.unit
def test_labels_are_idempotent_and_later_labels_correct_earlier_ones(store: LogStore) -> None:
    t1 = datetime(2013, 4, 2, tzinfo=UTC)
    store.upsert_labels([make_label("a", 1, t1)])
    store.upsert_labels([make_label("a", 1, t1)])
    assert labels_by_id(store) == {"a": 1}
    store.upsert_labels([make_label("a", 0, t1 + timedelta(hours=1))])
    assert labels_by_id(store) == {"a": 0}
    # A replayed older label (a retried batch, a late spool file) must not undo the correction.
    store.upsert_labels([make_label("a", 1, t1)])
    assert labels_by_id(store) == {"a": 0}
    # Two labels for one id in one batch: the latest wins.
    store.upsert_labels([make_label("b", 0, t1 + timedelta(hours=2)), make_label("b", 1, t1)])
    assert labels_by_id(store) == {"a": 0, "b": 0}
    assert store.count_labels() == 2


def label_seqs(store: LogStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {pid: seq for pid, seq in conn.execute(select(store.labels.c.prediction_id, store.labels.c.seq))}


@pytest.mark.unit
def test_every_effective_label_write_takes_a_larger_seq(store: LogStore) -> None:
    t1 = datetime(2013, 4, 2, tzinfo=UTC)
    store.upsert_labels([make_label("a", 1, t1), make_label("b", 0, t1), make_label("c", 1, t1)])
    first = label_seqs(store)
    assert first["a"] < first["b"] < first["c"]  # per row of one executemany, in batch order
    # A correction and a new label take new, larger seqs; a replayed older label keeps its old one.
    store.upsert_labels(
        [make_label("a", 0, t1 + timedelta(hours=1)), make_label("b", 1, t1 - timedelta(hours=1)), make_label("d", 1, t1)]
    )
    second = label_seqs(store)
    assert labels_by_id(store) == {"a": 0, "b": 0, "c": 1, "d": 1}
    assert second["b"] == first["b"] and second["c"] == first["c"]
    assert max(first.values()) < second["a"] < second["d"]
    # "Changed since a watermark" is exactly the writes after it, from the seq index alone.
    changed = store.labels_table(after_seq=max(first.values()), reader="sqlalchemy")
    assert changed.column("prediction_id").to_pylist() == ["a", "d"]
    assert changed.column("label").to_pylist() == [0, 1]
    # Another ignored replay, then a correction in a later transaction: still above everything.
    store.upsert_labels([make_label("d", 0, t1 - timedelta(days=1))])
    assert label_seqs(store) == second
    store.upsert_labels([make_label("c", 0, t1 + timedelta(hours=3))])
    assert label_seqs(store)["c"] == max(second.values()) + 1
    assert store.label_seq_complete()


OLD_LABELS_DDL = (
    "CREATE TABLE labels (prediction_id VARCHAR(64) NOT NULL, label INTEGER NOT NULL, "
    "received_at DATETIME NOT NULL, PRIMARY KEY (prediction_id))"
)


@pytest.mark.unit
def test_an_old_labels_table_is_migrated_once_under_concurrent_workers(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "log.db"
    LogStore(f"sqlite:///{db}", CONTRACT, FEATURES).create_schema()
    with sqlite3.connect(db) as conn:  # the labels table as the schema before `seq` made it
        conn.execute("DROP TABLE labels")
        conn.execute(OLD_LABELS_DDL)
        conn.executemany(
            "INSERT INTO labels VALUES (?, ?, ?)", [(f"old{i}", i % 2, "2013-04-02 00:00:00.000000") for i in range(50)]
        )
    stores = [LogStore(f"sqlite:///{db}", CONTRACT, FEATURES) for _ in range(4)]
    # Another writer holds the write lock while the four start: they all find the old table
    # waiting, and only one may migrate it (without the lock, all would run the ALTER TABLE).
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")

    def release() -> None:
        time.sleep(0.5)
        blocker.execute("COMMIT")
        blocker.close()

    assert create_schemas_at_once(stores, before_join=release) == []
    store = stores[0]
    assert labels_by_id(store) == {f"old{i}": i % 2 for i in range(50)}
    seqs = label_seqs(store)
    assert sorted(seqs.values()) == list(range(1, 51))  # distinct, one each (SQLite: the rowid)
    assert store.label_seq_complete()
    with store.engine.connect() as conn:
        assert "ix_labels_seq" in {r[1] for r in conn.execute(text("PRAGMA index_list(labels)"))}
    store.create_schema()  # idempotent
    assert label_seqs(store) == seqs
    store.upsert_labels([make_label("old3", 0, datetime(2013, 4, 3, tzinfo=UTC)), make_label("new", 1)])
    after = label_seqs(store)
    assert after["old3"] > 50 and after["new"] > after["old3"]
    for s in stores:
        s.dispose()


@pytest.mark.unit
def test_rows_an_older_writer_left_without_seq_are_seen_and_numbered_above_the_rest(store: LogStore) -> None:
    store.upsert_labels([make_label("a", 1), make_label("b", 0)])
    top = max(label_seqs(store).values())
    with store.engine.begin() as conn:  # what a writer running the code before `seq` does
        conn.execute(text("INSERT INTO labels (prediction_id, label, received_at) VALUES ('old', 1, '2013-04-02 00:00:00')"))
    assert not store.label_seq_complete()
    # Overlays take such a row whatever the watermark: an older writer's insert is news.
    assert store.labels_table(after_seq=top, reader="sqlalchemy").column("prediction_id").to_pylist() == ["old"]
    store.create_schema()  # the next start numbers it above every seq given so far
    assert store.label_seq_complete() and label_seqs(store)["old"] > top


@pytest.mark.unit
def test_a_missing_contract_column_is_still_refused_when_labels_are_migrated(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite:///{tmp_path / 'log.db'}"
    LogStore(url, CONTRACT, FEATURES).create_schema()
    with sqlite3.connect(tmp_path / "log.db") as conn:  # back to a labels table without `seq`
        conn.execute("DROP TABLE labels")
        conn.execute(OLD_LABELS_DDL)
    with pytest.raises(SchemaMismatchError, match="f_new_feature"):
        LogStore(url, CONTRACT, (*FEATURES, "new_feature")).create_schema()


@pytest.mark.unit
def test_iter_predictions_streams_chunks_over_a_half_open_window(store: LogStore) -> None:
    s0 = datetime(2013, 5, 1, tzinfo=UTC)
    # served_at runs backwards relative to event_time, so the two orders are distinguishable.
    rows = [make_prediction(i, served_at=s0 + timedelta(minutes=49 - i)) for i in range(50)]
    store.insert_predictions(rows)
    store.upsert_labels([make_label("p00000003", 1)])

    chunks = list(store.iter_predictions(None, None, chunksize=7))
    assert [len(c) for c in chunks] == [7] * 7 + [1]
    frame = pd.concat(chunks, ignore_index=True)
    assert list(frame.prediction_id) == [r["prediction_id"] for r in rows]
    assert str(frame.event_time.dtype) == "datetime64[ns, UTC]"
    assert frame.loc[3, "label"] == 1 and pd.isna(frame.loc[4, "label"])
    assert frame.loc[7, "warnings"] == ["unseen carrier"]

    start, end = T0 + timedelta(hours=10), T0 + timedelta(hours=20)
    window = pd.concat(store.iter_predictions(start, end, chunksize=3))
    assert list(window.prediction_id) == [f"p{i:08d}" for i in range(10, 20)]  # [start, end)

    by_served = pd.concat(store.iter_predictions(s0, s0 + timedelta(minutes=5), by="served_at"))
    assert list(by_served.prediction_id) == [f"p{i:08d}" for i in range(49, 44, -1)]

    # Aware bounds in any zone mean the same instant.
    local = pd.concat(store.iter_predictions(start.astimezone(NEW_YORK), end.astimezone(NEW_YORK)))
    assert len(local) == 10

    empty = list(store.iter_predictions(end + timedelta(days=999), None, with_labels=False))
    assert len(empty) == 1 and empty[0].empty and "label" not in empty[0].columns
    with pytest.raises(ValueError, match="timezone-aware"):
        next(store.iter_predictions(datetime(2013, 1, 1), None))


# -- the writer --------------------------------------------------------------------------------
@pytest.mark.unit
def test_every_served_row_is_stored_exactly_once(store: LogStore, spool: Path) -> None:
    metrics = RecordingMetrics()
    plog = make_log(store, spool, metrics=metrics)
    plog.start()

    def produce(worker: int) -> None:
        for i in range(2500):
            row = make_prediction(i, prefix=f"w{worker}-")
            plog.log_prediction(row)
            if i % 2 == 0:
                plog.log_label(make_label(row["prediction_id"], i % 4 // 2))

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert plog.flush(30)
    served = {f"w{w}-{i:08d}" for w in range(4) for i in range(2500)}
    ids = stored_ids(store)
    assert len(ids) == len(served) == 10_000 and set(ids) == served
    assert store.count_labels() == 5000
    assert plog.pending() == 0
    assert metrics.written_rows == {"prediction": 10_000, "label": 5000}
    plog.stop()
    assert spool_files(spool) == []


@pytest.mark.unit
def test_failed_and_unacknowledged_writes_are_retried_without_duplicates(store: LogStore, spool: Path) -> None:
    flaky = FlakyStore(store)
    flaky.fail_next = 3
    flaky.fail_after_commit = 2  # committed, but the writer is told it failed: it must retry safely
    metrics = RecordingMetrics()
    plog = make_log(flaky, spool, metrics=metrics)
    plog.start()
    for i in range(2000):
        plog.log_prediction(make_prediction(i))
    assert plog.flush(30)
    assert sorted(stored_ids(store)) == [f"p{i:08d}" for i in range(2000)]
    assert sum(metrics.failed.values()) == 5
    # The unacknowledged batches were sent twice; the store kept one copy.
    assert len(flaky.prediction_ids) > 2000
    plog.stop()


@pytest.mark.unit
def test_rows_wait_in_memory_during_an_outage_and_land_when_the_store_returns(store: LogStore, spool: Path) -> None:
    flaky = FlakyStore(store)
    flaky.down.set()
    metrics = RecordingMetrics()
    plog = make_log(flaky, spool, metrics=metrics)
    plog.start()
    for i in range(1500):
        plog.log_prediction(make_prediction(i))
        plog.log_label(make_label(f"p{i:08d}", 1))
    assert wait_until(lambda: metrics.failed["prediction"] >= 3)
    assert plog.pending() == 3000
    assert not plog.flush(0.2)
    assert store.count_predictions() == 0
    flaky.down.clear()
    assert plog.flush(30)
    assert plog.pending() == 0
    assert sorted(stored_ids(store)) == [f"p{i:08d}" for i in range(1500)]
    assert store.count_labels() == 1500
    assert wait_until(lambda: metrics.last_pending == 0)
    plog.stop()


@pytest.mark.unit
def test_label_before_its_prediction_is_kept(store: LogStore, spool: Path) -> None:
    plog = make_log(store, spool)
    plog.start()
    plog.log_label(make_label("p00000042", 1))
    assert plog.flush(10)
    plog.log_prediction(make_prediction(42))
    assert plog.flush(10)
    frame = pd.concat(store.iter_predictions(None, None))
    assert frame.prediction_id.tolist() == ["p00000042"] and frame.label.tolist() == [1]
    plog.stop()


@pytest.mark.unit
def test_labels_through_the_log_are_idempotent_and_corrected(store: LogStore, spool: Path) -> None:
    plog = make_log(store, spool)
    plog.start()
    t1 = datetime(2013, 4, 2, tzinfo=UTC)
    plog.log_prediction(make_prediction(1))
    plog.log_label(make_label("p00000001", 1, t1))
    plog.log_label(make_label("p00000001", 1, t1))
    assert plog.flush(10)
    assert labels_by_id(store) == {"p00000001": 1}
    plog.log_label(make_label("p00000001", 0, t1 + timedelta(minutes=5)))
    assert plog.flush(10)
    assert labels_by_id(store) == {"p00000001": 0}
    plog.stop()


@pytest.mark.unit
def test_memory_is_bounded_by_spilling_to_the_spool(store: LogStore, spool: Path) -> None:
    flaky = FlakyStore(store)
    flaky.down.set()
    metrics = RecordingMetrics()
    plog = make_log(flaky, spool, batch_size=100, max_memory_rows=1000, metrics=metrics)
    plog.start()
    for i in range(5000):
        plog.log_prediction(make_prediction(i))
    # At most max_memory_rows stay in memory (the in-flight batch counts toward them).
    assert wait_until(lambda: metrics.spooled_rows["prediction"] >= 4000)
    spilled = spool_files(spool, "spill-")
    assert len(spilled) == 1
    assert spilled[0].read_bytes().count(b"\n") == metrics.spooled_rows["prediction"]
    assert plog.pending() == 5000 and store.count_predictions() == 0

    flaky.down.clear()
    assert plog.flush(30)
    ids = stored_ids(store)
    assert len(ids) == 5000 and set(ids) == {f"p{i:08d}" for i in range(5000)}
    assert spool_files(spool) == [], "a spool file goes once its rows are committed"
    plog.stop()


@pytest.mark.unit
def test_rows_stay_in_memory_when_the_spool_cannot_be_written(store: LogStore, spool: Path) -> None:
    flaky = FlakyStore(store)
    flaky.down.set()
    plog = make_log(flaky, spool, batch_size=100, max_memory_rows=500)
    plog.start()
    shutil.rmtree(spool)
    spool.write_text("not a folder")  # every spill attempt now fails with an OSError
    for i in range(2000):
        plog.log_prediction(make_prediction(i))
    assert wait_until(lambda: flaky.calls >= 3)
    assert plog.pending() == 2000
    flaky.down.clear()
    assert plog.flush(30)
    assert sorted(stored_ids(store)) == [f"p{i:08d}" for i in range(2000)]
    plog.stop()


@pytest.mark.unit
def test_stop_while_down_spools_and_a_new_log_recovers_every_row_once(store: LogStore, spool: Path) -> None:
    flaky = FlakyStore(store)
    flaky.down.set()
    first = make_log(flaky, spool, max_memory_rows=1000)
    first.start()
    sent = []
    for i in range(3000):
        # Local-zone datetimes must come back as the same instants.
        row = make_prediction(i, served_at=(T0 + timedelta(seconds=i, microseconds=7)).astimezone(NEW_YORK))
        sent.append(row)
        first.log_prediction(row)
    for i in range(0, 3000, 6):
        first.log_label(make_label(f"p{i:08d}", 1, T0 + timedelta(days=1)))
    first.stop(timeout=0.5)
    assert first.pending() == 3500
    assert spool_files(spool, "ready-") and not spool_files(spool, "spill-")
    assert store.count_predictions() == 0
    with pytest.raises(RuntimeError, match="stopped"):
        first.log_prediction(make_prediction(9999))

    second = make_log(store, spool)
    second.start()
    assert second.flush(30)
    ids = stored_ids(store)
    assert len(ids) == 3000 and set(ids) == {r["prediction_id"] for r in sent}
    assert store.count_labels() == 500
    frame = pd.concat(store.iter_predictions(None, None, by="served_at"))
    expected = pd.Series([r["served_at"] for r in sent]).dt.tz_convert("UTC")
    assert (frame.served_at.reset_index(drop=True) == expected).all()
    assert spool_files(spool) == []
    second.stop()


@pytest.mark.unit
def test_rows_logged_before_start_are_spooled_by_stop(store: LogStore, spool: Path) -> None:
    never_started = make_log(store, spool)
    for i in range(10):
        never_started.log_prediction(make_prediction(i))
    never_started.stop()
    assert len(spool_files(spool, "ready-")) == 1
    recovering = make_log(store, spool)
    recovering.start()
    assert recovering.flush(10)
    assert store.count_predictions() == 10
    recovering.stop()


@pytest.mark.unit
def test_two_logs_recovering_one_spool_dir_never_double_write(store: LogStore, spool: Path) -> None:
    down = FlakyStore(store)
    down.down.set()
    for part in range(8):
        plog = make_log(down, spool)
        plog.start()
        for i in range(300):
            plog.log_prediction(make_prediction(i, prefix=f"part{part}-"))
        plog.stop(timeout=0.1)
    assert len(spool_files(spool, "ready-")) == 8

    a, b = FlakyStore(store), FlakyStore(store)
    logs = [make_log(a, spool), make_log(b, spool)]
    barrier = threading.Barrier(2)

    def start(plog: PredictionLog) -> None:
        barrier.wait()
        plog.start()

    threads = [threading.Thread(target=start, args=(plog,)) for plog in logs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(plog.flush(30) for plog in logs)
    assert not set(a.prediction_ids) & set(b.prediction_ids), "a spool file was taken by both"
    assert len(a.prediction_ids) + len(b.prediction_ids) == 2400
    assert store.count_predictions() == 2400
    for plog in logs:
        plog.stop()
    assert spool_files(spool) == []


@pytest.mark.unit
def test_spool_of_a_killed_process_is_recovered(store: LogStore, spool: Path, tmp_path: Path) -> None:
    # A real hard crash: a child process spills while its store is down, then SIGKILLs itself.
    script = textwrap.dedent(
        f"""
        import os, signal, sys, time
        from datetime import UTC, datetime
        from pathlib import Path
        from sqlalchemy import exc
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(Path(__file__).resolve().parents[2])!r}]
        from test_predlog import make_prediction
        from service.predlog import PredictionLog

        class Down:
            def insert_predictions(self, rows):
                raise exc.OperationalError("x", None, ConnectionRefusedError("down"))
            upsert_labels = insert_predictions

        plog = PredictionLog(Down(), spool_dir=Path({str(spool)!r}), batch_size=10,
                             max_memory_rows=100, flush_interval=0.01, retry_initial=0.01, retry_max=0.02)
        plog.start()
        for i in range(1000):
            plog.log_prediction(make_prediction(i))
        spool = Path({str(spool)!r})
        while sum(f.read_bytes().count(b"\\n") for f in spool.glob("spill-*")) < 890:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    child = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, stderr=subprocess.PIPE)
    _, stderr = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]
    (spilled,) = spool_files(spool, "spill-")
    owner = spilled.name.split("-")[1]
    assert owner.startswith("w") and str(child.pid) not in owner, "owned by a random id, not a pid"
    assert (spool / f"owner-{owner}.lock").exists(), "SIGKILL left its lock file (the kernel dropped the lock)"
    survived = [decode_record(line)[1]["prediction_id"] for line in spilled.read_bytes().splitlines()]

    plog = make_log(store, spool)
    plog.start()
    assert plog.flush(30)
    ids = stored_ids(store)
    # Rows still in the dead process's memory are gone (at most max_memory_rows); spilled ones are
    # all there, once.
    assert len(ids) == len(survived) >= 890 and set(ids) == set(survived)
    assert spool_files(spool) == []
    plog.stop()


def write_spool(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(encode_record("p", r) for r in rows))


@pytest.mark.unit
def test_pid_reuse_strands_nothing(store: LogStore, spool: Path) -> None:
    """The issue's container case: files of a crashed worker that had *our* pid are recovered (they
    used to be skipped as "our own"), a dead random owner's files are recovered, and a live writer's
    files are left alone."""
    import os

    # A live writer (same process, its own lock) with a spill segment of its own; started first
    # (and never rescanning) so it does not take the files below itself.
    live = make_log(FlakyStore(store), spool, rescan_interval=3600)
    live.store.down.set()  # type: ignore[attr-defined]
    live.start()
    live_file = spool / f"spill-{live._owner}-{time.time_ns():020d}-cccccccc.jsonl"
    write_spool(live_file, [make_prediction(i, prefix="live") for i in range(10)])
    legacy = spool / f"claimed-{os.getpid()}-{time.time_ns():020d}-aaaaaaaa.jsonl"
    write_spool(legacy, [make_prediction(i, prefix="legacy") for i in range(30)])
    # A crashed owner: its lock file is there, nobody holds the lock.
    write_spool(
        spool / f"spill-wdead000000000001-{time.time_ns():020d}-bbbbbbbb.jsonl",
        [make_prediction(i, prefix="dead") for i in range(40)],
    )
    (spool / "owner-wdead000000000001.lock").touch()

    plog = make_log(store, spool)
    plog.start()
    assert plog.flush(30)
    ids = stored_ids(store)
    assert sorted(ids) == sorted([f"legacy{i:08d}" for i in range(30)] + [f"dead{i:08d}" for i in range(40)])
    assert live_file.exists(), "a live writer's file is never taken"
    assert not (spool / "owner-wdead000000000001.lock").exists()
    plog.stop()
    live.store.down.clear()  # type: ignore[attr-defined]
    live.stop()


@pytest.mark.unit
def test_files_stranded_while_running_are_claimed_and_counted(store: LogStore, spool: Path) -> None:
    """A sibling worker's handed-off or crashed files are written by a running writer within
    `rescan_interval`, and pending() counts them meanwhile (no restart needed, no silent 0)."""
    flaky = FlakyStore(store)
    flaky.down.set()
    plog = make_log(flaky, spool, rescan_interval=0.1)
    plog.start()
    write_spool(spool / f"ready-wsibling00000001-{time.time_ns():020d}-dddddddd.jsonl", [make_prediction(i) for i in range(25)])
    assert wait_until(lambda: plog.pending() == 25, 10), plog.pending()
    flaky.down.clear()
    assert plog.flush(30)
    assert store.count_predictions() == 25 and plog.pending() == 0
    plog.stop()


def quarantined(store: LogStore) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(kind, prediction_id, reason, payload) of every dead-letter row."""
    q = store.quarantine_table
    with store.engine.connect() as conn:
        rows = conn.execute(select(q.c.kind, q.c.prediction_id, q.c.reason, q.c.payload).order_by(q.c.id)).all()
    return [(k, pid, reason, json.loads(payload)) for k, pid, reason, payload in rows]


@pytest.mark.unit
def test_an_invalid_row_is_quarantined_and_does_not_block_the_log(store: LogStore, spool: Path) -> None:
    metrics = RecordingMetrics()
    plog = make_log(store, spool, batch_size=100, metrics=metrics)
    bad = make_prediction(50)
    bad["served_at"] = datetime(2013, 4, 1, 12)  # naive: the store refuses to guess its zone
    for i in range(100):
        plog.log_prediction(bad if i == 50 else make_prediction(i))
    plog.start()
    assert plog.flush(10)
    assert store.count_predictions() == 99 and "p00000050" not in stored_ids(store)
    ((kind, pid, reason, payload),) = quarantined(store)
    assert (kind, pid) == ("prediction", "p00000050") and "naive" in reason
    assert payload["prediction_id"] == "p00000050" and store.count_quarantined() == 1
    assert spool_files(spool, "rejected-") == []
    assert metrics.quarantined_rows == {"prediction": 1}
    plog.stop()


def _poison_rows(i: int) -> dict[str, Any]:
    """A row of each kind that reached the log in the issue and blocked it (or was lost)."""
    row = make_prediction(i, prefix="x")
    kind = i % 4
    if kind == 0:  # year 1 at +14:00: converting to UTC overflows
        row["event_time"] = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))
    elif kind == 1:  # NUL in a category: PostgreSQL text cannot hold it
        row["inputs"]["carrier"] = "U\x00"
    elif kind == 2:  # a lone surrogate: not UTF-8
        row["inputs"]["dest"] = "\ud800"
    else:  # a value that is not a number at all
        row["probability"] = "not a number"
    return row


@pytest.mark.unit
def test_poison_rows_under_concurrent_load_lose_no_answered_row(store: LogStore, spool: Path) -> None:
    """8 producers, 12,000 rows, one poison row in every 100: every good row is stored once, every
    poison row is in the dead-letter table with its reason, nothing waits."""
    plog = make_log(store, spool, batch_size=500, flush_interval=0.02)
    plog.start()
    good: list[str] = []
    poison: list[str] = []
    lock = threading.Lock()

    def produce(worker: int) -> None:
        mine_good, mine_bad = [], []
        for j in range(1500):
            i = worker * 10_000 + j
            if j % 100 == 37:
                row = _poison_rows(i)
                mine_bad.append(row["prediction_id"])
            else:
                row = make_prediction(i)
                mine_good.append(row["prediction_id"])
            plog.log_prediction(row)
            plog.log_label(make_label(row["prediction_id"], j % 2))
        with lock:
            good.extend(mine_good)
            poison.extend(mine_bad)

    threads = [threading.Thread(target=produce, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert plog.flush(60), f"log still has {plog.pending()} rows pending: a poison row blocked it"
    plog.stop()
    assert len(good) == 11_880 and len(poison) == 120
    assert sorted(stored_ids(store)) == sorted(good)
    dead = quarantined(store)
    assert sorted(pid for _, pid, _, _ in dead) == sorted(poison)
    assert all(kind == "prediction" and reason for kind, _, reason, _ in dead)
    assert len(labels_by_id(store)) == 12_000  # labels of poison predictions are valid labels
    assert plog.pending() == 0 and spool_files(spool) == []


class PoisonedStore:
    """A real store that fails one row id with an *outage-looking* error (OperationalError), the way
    a driver can choke on a value; the store itself answers pings. `down`: a real outage."""

    def __init__(self, inner: LogStore, poison_id: str) -> None:
        self.inner = inner
        self.poison_id = poison_id
        self.down = threading.Event()
        self.attempts = 0

    def insert_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
        self.attempts += 1
        if self.down.is_set() or any(r["prediction_id"] == self.poison_id for r in rows):
            raise _outage()
        return self.inner.insert_predictions(rows)

    def upsert_labels(self, rows: Sequence[Mapping[str, Any]]) -> int:
        if self.down.is_set():
            raise _outage()
        return self.inner.upsert_labels(rows)

    def quarantine(self, kind: str, items: Sequence[tuple[Mapping[str, Any], str]]) -> int:
        if self.down.is_set():
            raise _outage()
        return self.inner.quarantine(kind, items)

    def ping(self) -> bool:
        return not self.down.is_set()


@pytest.mark.unit
def test_a_row_failing_like_an_outage_while_the_store_answers_is_isolated(store: LogStore, spool: Path) -> None:
    poisoned = PoisonedStore(store, "p00000042")
    plog = make_log(poisoned, spool, batch_size=100, suspect_after=3)
    for i in range(300):
        plog.log_prediction(make_prediction(i))
    plog.start()
    assert plog.flush(20)
    plog.stop()
    assert store.count_predictions() == 299 and "p00000042" not in stored_ids(store)
    ((_, pid, reason, _),) = quarantined(store)
    assert pid == "p00000042" and "fails while the store answers" in reason and "OperationalError" in reason


@pytest.mark.unit
def test_a_real_outage_never_quarantines_a_row(store: LogStore, spool: Path) -> None:
    poisoned = PoisonedStore(store, "none")
    poisoned.down.set()
    plog = make_log(poisoned, spool, batch_size=50, suspect_after=1)
    for i in range(200):
        plog.log_prediction(make_prediction(i))
    plog.start()
    assert wait_until(lambda: poisoned.attempts >= 10)
    assert store.count_quarantined() == 0 and plog.pending() == 200
    poisoned.down.clear()
    assert plog.flush(20)
    plog.stop()
    assert store.count_predictions() == 200 and store.count_quarantined() == 0


@pytest.mark.unit
def test_spool_records_round_trip_datetimes_and_numbers() -> None:
    row = make_prediction(3, served_at=datetime(2013, 4, 1, 6, 0, 0, 123456, tzinfo=NEW_YORK))
    row["features"]["dep_hour"] = math.nan
    row["features"]["distance"] = np.float64(1.25)
    code, back = decode_record(encode_record("p", row))
    assert code == "p"
    assert back["served_at"] == row["served_at"] and back["served_at"].utcoffset() == timedelta(hours=-4)
    assert back["inputs"][CONTRACT.timestamp_field] == row["event_time"]
    assert math.isnan(back["features"]["dep_hour"]) and back["features"]["distance"] == 1.25


@pytest.mark.unit
def test_log_prediction_never_waits_for_the_store(spool: Path) -> None:
    """The request path only enqueues: with the store stuck, 20,000 calls still return, and
    everything lands once the store answers. (Its cost is measured in `make bench`, not here.)"""
    release = threading.Event()

    class StuckStore(NullStore):
        def __init__(self) -> None:
            self.rows = 0

        def insert_predictions(self, rows: Sequence[Mapping[str, Any]]) -> int:
            release.wait()
            self.rows += len(rows)
            return len(rows)

    stuck = StuckStore()
    plog = make_log(stuck, spool, max_memory_rows=1_000_000)
    plog.start()
    for i in range(20_000):
        plog.log_prediction(make_prediction(i))
    assert stuck.rows == 0 and plog.pending() == 20_000
    release.set()
    assert plog.flush(30)
    plog.stop()
    assert stuck.rows == 20_000


@pytest.mark.unit
def test_a_store_down_at_start_gets_its_schema_and_every_row_when_it_returns(tmp_path: Path, spool: Path) -> None:
    """The tables could not be created at start; rows wait, health() says why, and once the store
    answers the schema is created and every row lands (it used to retry "no such table" for ever)."""
    fresh = LogStore(f"sqlite:///{tmp_path / 'late' / 'log.db'}", CONTRACT, FEATURES)
    flaky = FlakyStore(fresh)
    flaky.down.set()
    down = {"on": True}

    def ensure() -> None:
        if down["on"]:
            raise _outage()
        fresh.create_schema()

    plog = make_log(flaky, spool, ensure_schema=ensure, rescan_interval=0.1)
    plog.start()
    for i in range(300):
        plog.log_prediction(make_prediction(i))
    time.sleep(1.2)
    assert plog.health() is not None and "unreachable" in plog.health()  # type: ignore[operator]
    down["on"] = False
    flaky.down.clear()
    assert plog.flush(20)
    assert fresh.count_predictions() == 300 and plog.health() is None
    plog.stop()
    fresh.dispose()


@pytest.mark.unit
def lines_in(path: Path) -> int:
    """Rows in a journal segment, 0 if the writer retired it since it was listed."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def test_durable_mode_acknowledges_after_the_journal_and_retires_it(store: LogStore, spool: Path) -> None:
    """`barrier()` resolves only once the rows are in the journal on disk; closed segments are
    deleted once their rows are in the store, and a clean stop leaves no journal behind."""
    plog = make_log(store, spool, durable=True, journal_segment_bytes=20_000)
    plog.start()
    for i in range(600):
        plog.log_prediction(make_prediction(i))
        if i % 100 == 99:
            fut = plog.barrier()
            assert fut is not None
            fut.result(10)
            on_disk = sum(lines_in(f) for f in spool.glob("journal-*"))
            committed = store.count_predictions()  # counted after: a segment retired meanwhile is in here
            assert on_disk + committed >= i + 1, "acknowledged before the rows were durable"
    assert plog.flush(20)
    assert wait_until(lambda: len(list(spool.glob("journal-*"))) <= 1, 10), "closed segments are retired"
    plog.stop()
    assert store.count_predictions() == 600 and list(spool.glob("journal-*")) == []
    assert make_log(store, spool).barrier() is None  # the default mode has nothing to wait for
