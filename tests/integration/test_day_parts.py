"""Archived days folded once and merged (core.day_parts) judge a window exactly as folding its rows.

The log is real (resampled 2013 flights with the trained model's features and probabilities,
labels on ~95 % of rows, fallback rows, warnings), with drill traffic on archived days, a label and a
correction written after archiving, and a late row that leaves one archived day stale. Every window
is judged three ways: row by row from the database (the definition), row by row from the archive,
and by merging the kept day states (cold: built in the run; warm: read back). The signals, the
verdict, the performance and the HTML report's sample must be identical.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest

from benchmarks.logdata import fill_log
from core.archive import ArchivedLog, LogArchive
from core.day_parts import KEEP_MODELS, DayParts, part_days
from core.logstore import LogStore
from core.monitor_job import fold_window
from monitoring.monitor import ModelContext, WindowAccumulator, judge
from monitoring.policy import load_policy

pytestmark = pytest.mark.integration

N = 3_000


def _log(url, contract, bundle, flights) -> tuple[LogStore, object]:
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    store = LogStore(url, contract, names)
    start = fill_log(store, bundle, contract, flights, N, seed=11)
    # Drill traffic (drill ids: "d" at character 12) copied from real rows: left out of the real light.
    first = next(store.iter_predictions(None, None, chunksize=40))
    rows = []
    for i, (_, r) in enumerate(first.iterrows()):
        rows.append(
            {
                "prediction_id": f"drill{i:07d}d-x",
                "served_at": r["served_at"].to_pydatetime() + timedelta(seconds=5),
                "event_time": r["event_time"].to_pydatetime(),
                "model_name": "flights-late",
                "model_version": "1",
                "probability": 0.99,
                "late": 1,
                "warnings": [],
                "inputs": {f: (None if pd.isna(r[f]) else r[f]) for f in contract.field_names} | {"carrier": "ZZ"},
                "features": {c[2:]: r[c] for c in first.columns if c.startswith("f_") and pd.notna(r[c])},
            }
        )
    store.insert_predictions(rows)
    store.upsert_labels([{"prediction_id": r["prediction_id"], "label": 0, "received_at": start} for r in rows])
    return store, start


def _judge(acc: WindowAccumulator):
    ws = acc.finish()
    return ws, judge(ws, {}, load_policy(), []).verdict


def _fold(ctx, contract, source, lo, hi, *, parts: bool, report: bool = False):
    acc = WindowAccumulator(ctx, contract, report_rows=2_000 if report else 0)
    fold_window(acc, source, lo, hi, chunksize=700, day_parts=parts)
    return acc


def _same(a: WindowAccumulator, b: WindowAccumulator) -> None:
    (wa, va), (wb, vb) = _judge(a), _judge(b)
    assert wa.rows == wb.rows
    assert wa.signals == wb.signals
    assert wa.performance == wb.performance
    assert wa.arrivals == wb.arrivals
    assert va == vb


def _check(store: LogStore, start, contract, bundle, tmp_path, reader: str) -> None:
    archive = LogArchive(tmp_path / "archive", store)
    days = archive.closed_days()
    archive.archive(days[: len(days) // 2])
    source = ArchivedLog(archive, reader=reader)  # type: ignore[arg-type]
    ctx = ModelContext.from_bundle("flights-late", "1", bundle)
    # after archiving: a first label, a correction, and a late row (its day goes stale)
    first = next(store.iter_predictions(None, None, chunksize=60))
    real = first[~first["prediction_id"].str.startswith("drill")]
    unlabelled, labelled = real[real["label"].isna()], real[real["label"].notna()]
    now = start + timedelta(days=40)
    row = real.iloc[0]
    store.insert_predictions(
        [
            {
                "prediction_id": "late-row-after-archiving",
                "served_at": start + timedelta(days=30),
                "event_time": row["event_time"].to_pydatetime() + timedelta(seconds=1),
                "model_name": "flights-late",
                "model_version": "1",
                "probability": 0.9,
                "late": 1,
                "warnings": [],
                "inputs": {f: (None if pd.isna(row[f]) else row[f]) for f in contract.field_names}
                | {contract.timestamp_field: row["event_time"].to_pydatetime() + timedelta(seconds=1)},
                "features": {c[2:]: row[c] for c in real.columns if c.startswith("f_") and pd.notna(row[c])},
            }
        ]
    )
    store.upsert_labels(
        [{"prediction_id": unlabelled.iloc[0]["prediction_id"], "label": 1, "received_at": now}] * (len(unlabelled) > 0)
        + [{"prediction_id": labelled.iloc[0]["prediction_id"], "label": 1 - int(labelled.iloc[0]["label"]), "received_at": now}]
    )
    lo13 = pd.Timestamp("2013-03-01", tz=contract.timezone).to_pydatetime()
    windows = [
        (None, None),  # archived days, then the rest of the year from the database
        (lo13, lo13 + timedelta(days=33, hours=7)),  # whole archived days and a partial open day
        (lo13, lo13 + timedelta(days=1)),  # one archived day
        (start + timedelta(days=9_999), None),  # empty
    ]
    parts = DayParts(archive, ctx, contract)
    for lo, hi in windows:
        definition = WindowAccumulator(ctx, contract, report_rows=0)
        fold_window(definition, store, lo, hi, chunksize=1_000)  # row by row from the database
        rows_archive = _fold(ctx, contract, source, lo, hi, parts=False)
        cold = _fold(ctx, contract, source, lo, hi, parts=True)
        warm = _fold(ctx, contract, source, lo, hi, parts=True)
        for acc in (rows_archive, cold, warm):
            _same(definition, acc)
    kept = part_days(archive.root)
    # a part for every fresh archived day; the late row's day went stale: read from the database, no part
    fresh = {a.day for kind, run, _ in source.plan(None, None) if kind == "parquet" for a in run}
    assert set(kept) == fresh and len(fresh) >= len(days) // 2 - 3
    assert all(len(files) == 2 for files in kept.values())  # state + samples
    # the drill rows are on archived days, and left out there as in the database path
    on_file = pd.concat(pd.read_parquet(archive.path(d), columns=["prediction_id"]) for d in kept)
    assert on_file["prediction_id"].str.startswith("drill").sum() > 0
    assert _fold(ctx, contract, source, None, None, parts=True).rows == N + 1  # the late row in, no drill row
    # The HTML report's sample: the same rows from the kept parts as from the rows.
    want = _fold(ctx, contract, source, None, None, parts=False, report=True).report_sample
    got = _fold(ctx, contract, source, None, None, parts=True, report=True).report_sample
    pd.testing.assert_frame_equal(got, want)
    # A label written now is seen by the next run through the kept parts (labels are not in them).
    target = labelled.iloc[1]
    store.upsert_labels([{"prediction_id": target["prediction_id"], "label": 1 - int(target["label"]), "received_at": now}])
    _same(_fold(ctx, contract, store, None, None, parts=False), _fold(ctx, contract, source, None, None, parts=True))
    # Another model (a retrained champion) builds its own parts; a day keeps those of KEEP_MODELS.
    assert parts.key not in {DayParts(archive, ModelContext.from_bundle("flights-late", "2", bundle), contract).key}
    for version in ("2", "3"):
        other = ModelContext.from_bundle("flights-late", version, bundle)
        _same(_fold(other, contract, store, lo13, lo13 + timedelta(days=3), parts=False),
              _fold(other, contract, source, lo13, lo13 + timedelta(days=3), parts=True))  # fmt: skip
    day = pd.Timestamp(lo13).date()
    names = sorted(p.name for p in archive.path(day).parent.glob("part-*"))
    assert len(names) == 2 * KEEP_MODELS and all(parts.key not in n for n in names)  # v1's went first
    # A damaged part is rebuilt, never trusted.
    v3 = DayParts(archive, ModelContext.from_bundle("flights-late", "3", bundle), contract)
    v3.path(day).write_bytes(b"not a pickle")
    np.save(v3.samples_path(day), np.zeros(3))
    a = archive.archived()[day]
    assert v3.load(a) is None
    _same(_fold(v3.ctx, contract, store, lo13, lo13 + timedelta(days=1), parts=False),
          _fold(v3.ctx, contract, source, lo13, lo13 + timedelta(days=1), parts=True))  # fmt: skip
    assert v3.load(a) is not None


def test_sqlite_day_parts_judge_as_the_rows_do(tmp_path, contract, bundle, flights):
    store, start = _log(f"sqlite:///{tmp_path / 'log.db'}", contract, bundle, flights)
    try:
        _check(store, start, contract, bundle, tmp_path, "sqlalchemy")
    finally:
        store.dispose()


def test_postgres_day_parts_judge_as_the_rows_do(pg_url, tmp_path, contract, bundle, flights):
    store, start = _log(pg_url, contract, bundle, flights)
    try:
        _check(store, start, contract, bundle, tmp_path, "auto")
    finally:
        store.dispose()
