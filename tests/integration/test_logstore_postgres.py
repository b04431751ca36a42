"""The prediction log against a real PostgreSQL, including a real outage.

Needs PostgreSQL on 127.0.0.1:5432 (trust auth, user `postgres`). Each run creates a throwaway
database with a random name and drops it afterwards. Without a reachable server the tests skip.
The outage is real: the database is closed to new connections (`ALLOW_CONNECTIONS false`) and the
writer's sessions are terminated, from an admin connection to the `postgres` database.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import Engine, create_engine, inspect, select, text
from sqlalchemy import exc as sa_exc

from core.logstore import LogStore
from data_contracts.contract import load_contract
from service.predlog import PredictionLog
from tests.rows import RecordingMetrics, contract_inputs, create_schemas_at_once

pytestmark = pytest.mark.integration

HOST = "127.0.0.1:5432"
ADMIN_URL = f"postgresql+psycopg://postgres@{HOST}/postgres"
CONTRACT = load_contract()
FEATURES = tuple(f"feat_{i:02d}" for i in range(30))
T0 = datetime(2013, 6, 1, 10, tzinfo=UTC)


def make_prediction(i: int, prefix: str = "p") -> dict[str, Any]:
    event_time = T0 + timedelta(hours=i)
    inputs = contract_inputs(CONTRACT, i, event_time, 0.5)
    return {
        "prediction_id": f"{prefix}{i:08d}",
        "served_at": T0 + timedelta(days=30, seconds=i),
        "event_time": event_time,
        "model_name": "flights-late",
        "model_version": "3",
        "probability": (i % 100) / 100,
        "late": i % 2,
        "warnings": [],
        "inputs": inputs,
        "features": {f: (math.nan if (i + k) % 11 == 0 else float(k)) for k, f in enumerate(FEATURES)},
    }


def make_label(pid: str, label: int, received_at: datetime) -> dict[str, Any]:
    return {"prediction_id": pid, "label": label, "received_at": received_at}


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture(scope="module")
def database() -> Iterator[tuple[Engine, str]]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except sa_exc.OperationalError as exc:
        admin.dispose()
        pytest.skip(
            f"PostgreSQL is not reachable at {HOST} as user postgres ({exc.orig}). Start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`."
        )
    name = f"driftlight_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin, name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def store(database: tuple[Engine, str]) -> Iterator[LogStore]:
    _, name = database
    s = LogStore(f"postgresql+psycopg://postgres@{HOST}/{name}", CONTRACT, FEATURES)
    s.create_schema()
    with s.engine.begin() as conn:
        conn.execute(text("TRUNCATE predictions, labels"))
    yield s
    s.dispose()


def set_connections(admin: Engine, name: str, *, allowed: bool) -> None:
    """Open or close database `name` to new connections; closing also ends its sessions."""
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {"true" if allowed else "false"}'))
        if not allowed:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
                {"db": name},
            )


def stored_ids(store: LogStore) -> list[str]:
    with store.engine.connect() as conn:
        return list(conn.execute(select(store.predictions.c.prediction_id)).scalars())


def labels_by_id(store: LogStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        rows = conn.execute(select(store.labels.c.prediction_id, store.labels.c.label)).all()
    return {pid: label for pid, label in rows}


def test_schema_is_created_concurrently_with_the_contract_types(database: tuple[Engine, str]) -> None:
    _, name = database
    url = f"postgresql+psycopg://postgres@{HOST}/{name}"
    stores = [LogStore(url, CONTRACT, FEATURES) for _ in range(4)]
    assert create_schemas_at_once(stores) == []
    columns = {c["name"]: str(c["type"]) for c in inspect(stores[0].engine).get_columns("predictions")}
    assert columns["prediction_id"] == "VARCHAR(64)"
    assert columns["served_at"] == "TIMESTAMP" and columns[CONTRACT.timestamp_field] == "TIMESTAMP"
    for spec in CONTRACT.fields:
        expected = {"number": "DOUBLE PRECISION", "integer": "INTEGER", "category": "VARCHAR(32)", "timestamp": "TIMESTAMP"}
        assert columns[spec.name] == expected[spec.type], spec.name
    assert all(columns[f"f_{f}"] == "DOUBLE PRECISION" for f in FEATURES)
    for s in stores:
        s.dispose()


def test_round_trip_idempotency_windows_and_labels(store: LogStore) -> None:
    rows = [make_prediction(i) for i in range(50)]
    assert store.insert_predictions(rows) == 50
    assert store.insert_predictions([*rows[:10], make_prediction(50)]) == 1  # retried batch
    assert store.count_predictions() == 51
    with store.engine.connect() as conn:
        nulls = conn.execute(text("SELECT count(*) FROM predictions WHERE f_feat_00 IS NULL")).scalar_one()
        nans = conn.execute(text("SELECT count(*) FROM predictions WHERE f_feat_00 = 'NaN'::float8")).scalar_one()
    assert nulls == sum(1 for i in range(51) if i % 11 == 0) and nans == 0

    t1 = T0 + timedelta(days=40)
    store.upsert_labels([make_label("p00000001", 1, t1), make_label("p00000002", 0, t1)])
    store.upsert_labels([make_label("p00000001", 0, t1 + timedelta(hours=1))])  # correction
    store.upsert_labels([make_label("p00000001", 1, t1)])  # late replay: ignored
    assert labels_by_id(store) == {"p00000001": 0, "p00000002": 0}

    chunks = list(store.iter_predictions(None, None, chunksize=7))
    assert [len(c) for c in chunks] == [7] * 7 + [2]
    window = pd.concat(store.iter_predictions(T0 + timedelta(hours=5), T0 + timedelta(hours=9), chunksize=2))
    assert window.prediction_id.tolist() == [f"p{i:08d}" for i in range(5, 9)]
    assert str(window.event_time.dtype) == "datetime64[ns, UTC]"
    by_served = pd.concat(store.iter_predictions(T0 + timedelta(days=30), T0 + timedelta(days=30, seconds=3), by="served_at"))
    assert by_served.prediction_id.tolist() == ["p00000000", "p00000001", "p00000002"]
    assert by_served.label.tolist()[1:] == [0, 0] and pd.isna(by_served.label.iloc[0])
    assert store.ping()


def test_a_real_outage_loses_and_duplicates_nothing(store: LogStore, database: tuple[Engine, str], tmp_path: Path) -> None:
    admin, name = database
    metrics = RecordingMetrics()
    plog = PredictionLog(
        store,
        spool_dir=tmp_path / "spool",
        batch_size=200,
        flush_interval=0.05,
        max_memory_rows=2_000,  # small, so the outage also exercises the spill to disk
        retry_initial=0.05,
        retry_max=0.5,
        metrics=metrics,
    )
    plog.start()
    served: list[str] = []
    labelled: dict[str, int] = {}
    stop_producing = threading.Event()

    def produce() -> None:
        i = 0
        while not stop_producing.is_set():
            for _ in range(50):
                row = make_prediction(i, prefix="o")
                plog.log_prediction(row)
                served.append(row["prediction_id"])
                if i % 4 == 0:
                    plog.log_label(make_label(row["prediction_id"], i % 2, T0 + timedelta(days=60)))
                    labelled[row["prediction_id"]] = i % 2
                i += 1
            time.sleep(0.005)

    producer = threading.Thread(target=produce)
    producer.start()
    try:
        assert wait_until(lambda: store.count_predictions() > 1000), "the writer is writing before the outage"
        set_connections(admin, name, allowed=False)
        logged_at_outage = len(served)
        assert wait_until(lambda: metrics.failed["prediction"] + metrics.failed["label"] >= 3)
        assert wait_until(lambda: len(served) > logged_at_outage + 5000), "rows keep being accepted"
        assert plog.pending() > 0
        assert not plog.flush(0.3)
        assert metrics.spooled_rows["prediction"] > 0, "memory stayed bounded by spilling"
    finally:
        set_connections(admin, name, allowed=True)
    assert wait_until(lambda: store.ping())
    time.sleep(0.3)  # some rows logged after the database came back, too
    stop_producing.set()
    producer.join()

    assert plog.flush(60), f"{plog.pending()} rows still pending"
    ids = stored_ids(store)
    assert len(ids) == len(served) and set(ids) == set(served)
    assert labels_by_id(store) == labelled
    assert plog.pending() == 0
    plog.stop()
    assert list((tmp_path / "spool").glob("*.jsonl")) == []


def test_stop_during_an_outage_spools_and_the_next_start_recovers(
    store: LogStore, database: tuple[Engine, str], tmp_path: Path
) -> None:
    admin, name = database
    spool = tmp_path / "spool"
    first = PredictionLog(store, spool_dir=spool, batch_size=100, flush_interval=0.02, retry_initial=0.05, retry_max=0.2)
    first.start()
    set_connections(admin, name, allowed=False)
    try:
        for i in range(3000):
            first.log_prediction(make_prediction(i, prefix="s"))
        for i in range(0, 3000, 3):
            first.log_label(make_label(f"s{i:08d}", 1, T0 + timedelta(days=60)))
        first.stop(timeout=1.0)
        assert first.pending() == 4000
        assert list(spool.glob("ready-*.jsonl"))
    finally:
        set_connections(admin, name, allowed=True)

    second = PredictionLog(store, spool_dir=spool, batch_size=500, flush_interval=0.02)
    second.start()
    assert second.flush(60)
    ids = stored_ids(store)
    assert len(ids) == 3000 and set(ids) == {f"s{i:08d}" for i in range(3000)}
    assert store.count_labels() == 1000
    served = pd.concat(store.iter_predictions(None, None, chunksize=1000)).set_index("prediction_id").served_at
    assert served["s00000042"] == pd.Timestamp(make_prediction(42)["served_at"])
    second.stop()
    assert list(spool.glob("*.jsonl")) == []


def label_seqs(store: LogStore) -> dict[str, int]:
    with store.engine.connect() as conn:
        return {pid: seq for pid, seq in conn.execute(select(store.labels.c.prediction_id, store.labels.c.seq))}


def test_an_old_labels_table_is_migrated_once_under_concurrent_workers(pg_url: str) -> None:
    engine = create_engine(pg_url)
    with engine.begin() as conn:  # the labels table as the schema before `seq` made it
        conn.execute(
            text(
                "CREATE TABLE labels (prediction_id VARCHAR(64) NOT NULL PRIMARY KEY, label INTEGER NOT NULL, "
                "received_at TIMESTAMP WITHOUT TIME ZONE NOT NULL)"
            )
        )
        conn.execute(text("INSERT INTO labels SELECT 'old' || i, i % 2, TIMESTAMP '2013-06-02' FROM generate_series(0, 49) AS i"))
    engine.dispose()
    stores = [LogStore(pg_url, CONTRACT, FEATURES) for _ in range(4)]
    assert create_schemas_at_once(stores) == []
    store = stores[0]
    assert labels_by_id(store) == {f"old{i}": i % 2 for i in range(50)}
    seqs = label_seqs(store)
    assert len(set(seqs.values())) == 50 and None not in seqs.values()
    assert store.label_seq_complete()
    assert "ix_labels_seq" in {ix["name"] for ix in inspect(store.engine).get_indexes("labels")}
    store.create_schema()  # idempotent
    assert label_seqs(store) == seqs
    t1 = datetime(2013, 6, 3, tzinfo=UTC)
    store.upsert_labels([make_label("old3", 0, t1), make_label("old4", 1, datetime(2013, 6, 1, tzinfo=UTC))])
    after = label_seqs(store)
    assert after["old3"] > max(seqs.values()) and after["old4"] == seqs["old4"]  # the correction; the replay ignored
    for s in stores:
        s.dispose()


def test_label_writers_hold_the_label_lock_until_they_commit(store: LogStore) -> None:
    from core.logstore import _LABEL_LOCK_KEY

    t1 = T0 + timedelta(days=40)
    store.upsert_labels([make_label("a", 1, t1), make_label("b", 0, t1)])
    first = label_seqs(store)
    assert first["a"] < first["b"]
    done = threading.Event()
    other = create_engine(store.url)
    with other.connect() as conn:
        # Another label writer in its transaction: this one must wait for it, not allocate a seq
        # that could commit before the other's (which a reader would then never look for).
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LABEL_LOCK_KEY})
        writer = threading.Thread(target=lambda: (store.upsert_labels([make_label("a", 0, t1 + timedelta(hours=1))]), done.set()))
        writer.start()
        assert not done.wait(0.5), "the label upsert did not wait for the label lock"
        conn.commit()
    writer.join(10)
    other.dispose()
    assert done.is_set()
    after = label_seqs(store)
    assert labels_by_id(store) == {"a": 0, "b": 0} and after["a"] > first["b"]
    store.upsert_labels([make_label("b", 1, t1 - timedelta(hours=1))])  # a replayed older label: no new seq
    assert label_seqs(store) == after
