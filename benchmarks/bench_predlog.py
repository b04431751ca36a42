"""Benchmark the prediction log: rows per second from `log_prediction` to committed in the store.

Rows are realistic: every contract field (values inside the contract's ranges, some nulls) and 30
features, as the service logs them. They are pushed through `PredictionLog` as fast as one thread
can call it; the clock stops when `flush()` confirms every row is in the store.

    .venv/bin/python benchmarks/bench_predlog.py [--rows 200000] [--batch-size 500]

prints one line for SQLite (a temporary file) and one for PostgreSQL (a throwaway database on
127.0.0.1:5432, dropped afterwards; skipped with a message if the server is unreachable).
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from core.logstore import LogStore
from data_contracts.contract import Contract, load_contract
from service.predlog import PredictionLog

N_FEATURES = 30
# Distinct input/feature payloads; rows share them by reference so 200k rows fit in memory
# (~4 KB per fully distinct row would be ~1 GB) while the store still flattens every value.
_PAYLOADS = 1_000
PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def feature_names(n: int = N_FEATURES) -> list[str]:
    """`n` plausible feature names (the benchmark does not need the trained model's)."""
    return [f"feature_{i:02d}" for i in range(n)]


def _inputs(contract: Contract, rng: random.Random, event_time: datetime) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for spec in contract.fields:
        if spec.nullable and rng.random() < 0.05:
            out[spec.name] = None
        elif spec.type == "timestamp":
            out[spec.name] = event_time
        elif spec.type == "category":
            out[spec.name] = rng.choice(spec.categories)
        elif spec.type == "integer":
            lo, hi = int(spec.min or 0), int(spec.max or 0)
            value = rng.randint(lo, hi)
            out[spec.name] = value - value % 100 + min(value % 100, 59) if spec.format == "hhmm" else value
        else:
            out[spec.name] = round(rng.uniform(spec.min or 0.0, spec.max or 0.0), 2)
    return out


def build_rows(contract: Contract, n_rows: int, features: list[str], seed: int = 0) -> list[dict[str, Any]]:
    """`n_rows` prediction rows as the service logs them (unique ids; payloads shared, see above)."""
    rng = random.Random(seed)
    start = datetime(2013, 1, 1, 5, tzinfo=UTC)
    payloads = []
    for _ in range(_PAYLOADS):
        event_time = start + timedelta(hours=rng.randrange(365 * 24))
        feats = {f: (math.nan if rng.random() < 0.05 else rng.gauss(0, 1)) for f in features}
        payloads.append((event_time, _inputs(contract, rng, event_time), feats))
    served0 = datetime.now(UTC)
    rows = []
    for i in range(n_rows):
        event_time, inputs, feats = payloads[i % _PAYLOADS]
        rows.append(
            {
                "prediction_id": uuid.UUID(int=rng.getrandbits(128), version=4).hex,
                "served_at": served0 + timedelta(microseconds=i * 50),
                "event_time": event_time,
                "model_name": "flights-late",
                "model_version": "1",
                "probability": rng.random(),
                "late": int(rng.random() < 0.2),
                "warnings": [] if rng.random() < 0.98 else ["unseen dest"],
                "inputs": inputs,
                "features": feats,
            }
        )
    return rows


def run(url: str, n_rows: int = 200_000, batch_size: int = 500, *, max_memory_rows: int | None = None) -> dict[str, Any]:
    """Push `n_rows` rows through a `PredictionLog` into the store at `url`; wait for the flush.

    `max_memory_rows` defaults to `n_rows`, so what is measured is the store path, not the spill
    to disk (the producer here is far faster than any real request rate). Returns
    `{"store": dialect, "rows": n, "seconds": s, "rows_per_s": r, "lost": served - stored,
    "log_call_us": mean cost of one log_prediction call in µs}`.
    """
    contract = load_contract()
    features = feature_names()
    rows = build_rows(contract, n_rows, features)
    store = LogStore(url, contract, features)
    store.create_schema()
    before = store.count_predictions()
    with tempfile.TemporaryDirectory(prefix="driftlight-bench-spool-") as spool:
        plog = PredictionLog(
            store, spool_dir=Path(spool), batch_size=batch_size, max_memory_rows=max(max_memory_rows or n_rows, batch_size)
        )
        plog.start()
        t0 = time.perf_counter()
        for row in rows:
            plog.log_prediction(row)
        t_logged = time.perf_counter()
        flushed = plog.flush(timeout=3600)
        seconds = time.perf_counter() - t0
        plog.stop()
    stored = store.count_predictions() - before
    store.dispose()
    if not flushed:
        raise RuntimeError(f"flush timed out with {plog.pending()} rows pending")
    return {
        "store": store.dialect,
        "rows": n_rows,
        "seconds": round(seconds, 3),
        "rows_per_s": round(n_rows / seconds),
        "lost": n_rows - stored,
        "log_call_us": round((t_logged - t0) / n_rows * 1e6, 3),
    }


def _postgres(n_rows: int, batch_size: int) -> dict[str, Any] | str:
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    try:
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as exc:
        admin.dispose()
        return f"skipped: PostgreSQL unreachable at 127.0.0.1:5432 ({exc.orig})"
    name = f"driftlight_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        return run(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", n_rows, batch_size)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="driftlight-bench-") as tmp:
        print("sqlite    ", run(f"sqlite:///{Path(tmp) / 'predictions.db'}", args.rows, args.batch_size))
    print("postgresql", _postgres(args.rows, args.batch_size))


if __name__ == "__main__":
    main()
