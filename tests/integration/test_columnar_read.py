"""The columnar window read (ADBC -> Arrow) against the SQLAlchemy row path, on SQLite and PostgreSQL.

Same log, same window: identical frames chunk by chunk (values, dtypes, column order, NULLs,
decoded warnings) and identical window signals and verdicts from the monitor's accumulator.
The log is real: resampled 2013 flights with the trained model's features and probabilities,
labels on ~95 % of rows, some rows served by the fallback (no features), some with warnings.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from benchmarks.logdata import fill_log
from core.logstore import LogStore
from monitoring.monitor import ModelContext, WindowAccumulator, judge
from monitoring.policy import load_policy

N = 3_000


def _store(url, contract, bundle, flights) -> tuple[LogStore, object]:
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    store = LogStore(url, contract, names)
    start = fill_log(store, bundle, contract, flights, N, seed=7)
    assert store.arrow_reader_available()
    return store, start


def _windows(start):
    yield None, None, "event_time"
    yield start + timedelta(microseconds=500), start + timedelta(microseconds=2_250), "served_at"
    lo = pd.Timestamp("2013-04-01", tz="UTC").to_pydatetime()
    yield lo, lo + timedelta(days=90), "event_time"
    yield start + timedelta(days=9_999), None, "served_at"  # empty


def _verdict(ctx, contract, chunks):
    acc = WindowAccumulator(ctx, contract)
    for chunk in chunks:
        acc.add(chunk)
    ws = acc.finish()
    return ws, judge(ws, {}, load_policy(), []).verdict


def _check_identical(store: LogStore, start, contract, bundle) -> None:
    ctx = ModelContext.from_bundle("flights-late", "1", bundle)
    for lo, hi, by in _windows(start):
        for chunksize in (1_000, 777):
            arrow = list(store.iter_predictions(lo, hi, by=by, chunksize=chunksize, reader="arrow"))
            rows = list(store.iter_predictions(lo, hi, by=by, chunksize=chunksize, reader="sqlalchemy"))
            assert [len(c) for c in arrow] == [len(c) for c in rows]
            for a, r in zip(arrow, rows, strict=True):
                pd.testing.assert_frame_equal(a.reset_index(drop=True), r.reset_index(drop=True), check_exact=True)
        labelled = list(store.iter_predictions(lo, hi, by=by, with_labels=False, reader="arrow"))
        assert "label" not in labelled[0].columns
        ws_a, v_a = _verdict(ctx, contract, store.iter_predictions(lo, hi, by=by, reader="arrow"))
        ws_r, v_r = _verdict(ctx, contract, store.iter_predictions(lo, hi, by=by, reader="sqlalchemy"))
        assert ws_a.rows == ws_r.rows
        assert ws_a.signals == ws_r.signals
        assert v_a == v_r
    whole = pd.concat(store.iter_predictions(None, None, reader="arrow"))
    assert len(whole) == N
    assert whole["label"].notna().mean() > 0.9 and whole["f_temp"].isna().any() and whole["warnings"].map(len).sum() > 0


def test_sqlite_columnar_read_equals_the_row_path(tmp_path, contract, bundle, flights):
    # Both SQLite libraries (Python's and ADBC's) open this file in one process here, which is
    # unsafe with a writer (see LogStore.iter_predictions); every write is done before the reads.
    store, start = _store(f"sqlite:///{tmp_path / 'log.db'}", contract, bundle, flights)
    try:
        _check_identical(store, start, contract, bundle)
    finally:
        store.dispose()


def test_postgres_columnar_read_equals_the_row_path(pg_url, contract, bundle, flights):
    store, start = _store(pg_url, contract, bundle, flights)
    try:
        _check_identical(store, start, contract, bundle)
    finally:
        store.dispose()


def test_auto_reads_sqlite_through_the_row_path(tmp_path, contract, bundle, monkeypatch):
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    store = LogStore(f"sqlite:///{tmp_path / 'log.db'}", contract, names)
    store.create_schema()
    used = []
    monkeypatch.setattr(LogStore, "_iter_arrow", lambda self, *a: used.append("arrow") or iter(()))
    frames = list(store.iter_predictions(None, None))
    assert used == [] and len(frames) == 1 and frames[0].empty
    list(store.iter_predictions(None, None, reader="arrow"))
    assert used == ["arrow"]
    store.dispose()


def test_in_memory_sqlite_falls_back_to_the_row_path(contract, bundle):
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    store = LogStore("sqlite://", contract, names)
    assert not store.arrow_reader_available()
    with pytest.raises(ValueError, match="reader must be"):
        next(store.iter_predictions(None, None, reader="duckdb"))  # type: ignore[arg-type]


# -- the Parquet archive of closed days (core.archive) ---------------------------------------------
def _late_changes(store: LogStore, start, contract) -> None:
    """After archiving: a late row on an archived day, a first label and a correction for archived
    rows, and a label that was spooled (an old received_at, inserted only now)."""
    first = next(store.iter_predictions(None, None, chunksize=50))
    row = first.iloc[0]
    unlabelled = first[first["label"].isna()]
    labelled = first[first["label"].notna()]
    late_event = row["event_time"].to_pydatetime() + timedelta(seconds=1)
    inputs = {f: (None if pd.isna(row[f]) else row[f]) for f in contract.field_names}
    inputs[contract.timestamp_field] = late_event
    store.insert_predictions(
        [
            {
                "prediction_id": "late-row-after-archiving",
                "served_at": start + timedelta(days=30),
                "event_time": late_event,
                "model_name": "flights-late",
                "model_version": "1",
                "probability": 0.9,
                "late": 1,
                "warnings": [],
                "inputs": inputs,
                "features": {c[2:]: row[c] for c in first.columns if c.startswith("f_") and pd.notna(row[c])},
            }
        ]
    )
    now = start + timedelta(days=40)
    store.upsert_labels(
        [
            {"prediction_id": unlabelled.iloc[0]["prediction_id"] if len(unlabelled) else "late-row-after-archiving",
             "label": 1, "received_at": now},
            {"prediction_id": labelled.iloc[0]["prediction_id"], "label": 1 - int(labelled.iloc[0]["label"]), "received_at": now},
            {"prediction_id": "late-row-after-archiving", "label": 1, "received_at": start + timedelta(seconds=1)},
        ]
    )  # fmt: skip


def _check_archive(store: LogStore, start, contract, bundle, tmp_path, reader) -> None:
    from core.archive import ArchivedLog, LogArchive

    archive = LogArchive(tmp_path / "archive", store)
    days = archive.closed_days()
    assert len(days) > 300  # resampled 2013 flights: every day of the year
    written = archive.archive(days[: len(days) // 2])
    assert [a.day for a in written] == days[: len(days) // 2]
    assert archive.archive(days[: len(days) // 2]) == []  # idempotent: nothing changed, nothing rewritten
    source = ArchivedLog(archive, reader=reader)
    _late_changes(store, start, contract)
    stale_day = pd.Timestamp(next(store.iter_predictions(None, None, chunksize=1))["event_time"].iloc[0])
    stale_day = stale_day.tz_convert(contract.timezone).date()
    plan = source.plan(None, None)
    on_parquet = {a.day for kind, run, _ in plan if kind == "parquet" for a in run}
    assert len(on_parquet) == len(days) // 2 - 1 and stale_day not in on_parquet  # the late row's day is read from the DB
    ctx = ModelContext.from_bundle("flights-late", "1", bundle)
    lo13 = pd.Timestamp("2013-03-01", tz=contract.timezone).to_pydatetime()
    windows = [
        (None, None, "event_time"),
        (lo13, lo13 + timedelta(days=61, hours=7), "event_time"),  # whole archived days, a partial open day
        (start + timedelta(microseconds=500), start + timedelta(microseconds=2_250), "served_at"),
        (start + timedelta(days=9_999), None, "event_time"),  # empty
    ]
    for lo, hi, by in windows:
        for chunksize in (1_000, 777):
            got = list(source.iter_predictions(lo, hi, by=by, chunksize=chunksize))
            want = list(store.iter_predictions(lo, hi, by=by, chunksize=chunksize, reader="sqlalchemy"))
            assert [len(c) for c in got] == [len(c) for c in want]
            for a, r in zip(got, want, strict=True):
                pd.testing.assert_frame_equal(a, r.reset_index(drop=True), check_exact=True)
        ws_a, v_a = _verdict(ctx, contract, source.iter_predictions(lo, hi, by=by))
        ws_r, v_r = _verdict(ctx, contract, store.iter_predictions(lo, hi, by=by, reader="sqlalchemy"))
        assert ws_a.rows == ws_r.rows and ws_a.signals == ws_r.signals and v_a == v_r
    # Only the columns the monitor reads (no per-row JSON), from both paths alike.
    cols = [c for c in store.column_names if c not in ("warnings", "late", "model_name")]
    got = list(source.iter_predictions(None, None, chunksize=1_000, columns=cols))
    want = list(store.iter_predictions(None, None, chunksize=1_000, columns=cols, reader="sqlalchemy"))
    assert list(got[0].columns) == [*cols, "label", "received_at"]
    for a, r in zip(got, want, strict=True):
        pd.testing.assert_frame_equal(a, r, check_exact=True)
    # The late labels are in the archived rows' frame although they arrived after archiving.
    whole = pd.concat(source.iter_predictions(None, None), ignore_index=True)
    assert whole.set_index("prediction_id").loc["late-row-after-archiving", "label"] == 1
    # Re-archiving rewrites exactly the day that changed, atomically, and then it reads from Parquet.
    assert [a.day for a in archive.archive(days[: len(days) // 2])] == [stale_day]
    assert not list(archive.root.glob("*/.*.tmp"))
    assert stale_day in {a.day for kind, run, _ in source.plan(None, None) if kind == "parquet" for a in run}
    pd.testing.assert_frame_equal(
        pd.concat(source.iter_predictions(None, None), ignore_index=True),
        pd.concat(store.iter_predictions(None, None, reader="sqlalchemy"), ignore_index=True),
        check_exact=True,
    )


def test_sqlite_archive_read_equals_the_row_path(tmp_path, contract, bundle, flights):
    store, start = _store(f"sqlite:///{tmp_path / 'log.db'}", contract, bundle, flights)
    try:
        _check_archive(store, start, contract, bundle, tmp_path, "sqlalchemy")
    finally:
        store.dispose()


def test_postgres_archive_read_equals_the_row_path(pg_url, tmp_path, contract, bundle, flights):
    store, start = _store(pg_url, contract, bundle, flights)
    try:
        _check_archive(store, start, contract, bundle, tmp_path, "auto")
    finally:
        store.dispose()


# -- archived labels: each day's labels file, overlaid with the labels written since its watermark ------
def _check_label_overlay(store: LogStore, contract, tmp_path, reader, monkeypatch) -> None:
    from core.archive import ArchivedLog, LogArchive

    archive = LogArchive(tmp_path / "archive", store)
    days = archive.closed_days()[:60]
    archive.archive(days)
    assert all(a.labels_path is not None for a in archive.archived().values())
    source = ArchivedLog(archive, reader=reader)
    read: list[tuple[int | None, int]] = []  # (after_seq, label rows the database returned) per call
    real = store.labels_table

    def spy(since=None, *, after_seq=None, reader="auto"):  # type: ignore[no-untyped-def]
        table = real(since, after_seq=after_seq, reader=reader)
        read.append((after_seq, table.num_rows))
        return table

    monkeypatch.setattr(store, "labels_table", spy)

    def check_identical() -> pd.DataFrame:
        read.clear()
        got = list(source.iter_predictions(None, None, chunksize=777))
        want = list(store.iter_predictions(None, None, chunksize=777, reader="sqlalchemy"))
        assert [len(c) for c in got] == [len(c) for c in want]
        for a, r in zip(got, want, strict=True):
            pd.testing.assert_frame_equal(a, r, check_exact=True)
        return pd.concat(got, ignore_index=True).set_index("prediction_id")

    check_identical()
    watermark = min(a.label_watermark or 0 for a in archive.archived().values())
    assert read == [(watermark, 0)]  # nothing changed since archiving: no label row read at all

    # After archiving: a correction, a first label, and a replayed older label (ignored), on three days.
    rows = [next(store.iter_predictions(*archive.bounds(d), chunksize=50)) for d in days[:3]]
    corrected = rows[0][rows[0]["label"].notna()].iloc[0]
    new = rows[1][rows[1]["label"].isna()].iloc[0]
    replayed = rows[2][rows[2]["label"].notna()].iloc[0]
    later = corrected["received_at"].to_pydatetime() + timedelta(days=400)
    store.upsert_labels(
        [
            {"prediction_id": corrected["prediction_id"], "label": 1 - int(corrected["label"]), "received_at": later},
            {"prediction_id": new["prediction_id"], "label": 1, "received_at": later},
            {"prediction_id": replayed["prediction_id"], "label": 1 - int(replayed["label"]),
             "received_at": replayed["received_at"].to_pydatetime() - timedelta(hours=1)},
        ]
    )  # fmt: skip
    whole = check_identical()
    assert read == [(watermark, 2)]  # the two effective writes; the ignored replay kept its seq
    assert whole.loc[corrected["prediction_id"], "label"] == 1 - int(corrected["label"])
    assert whole.loc[new["prediction_id"], "label"] == 1
    assert whole.loc[replayed["prediction_id"], "label"] == int(replayed["label"])

    # archive() rewrites exactly the changed days' labels files (not their predictions), then
    # reads overlay nothing again.
    before = archive.archived()
    assert archive.archive(days) == []
    after = archive.archived()
    assert {d for d in days if after[d].label_watermark != before[d].label_watermark} == set(days[:2])
    assert all(after[d].path.stat().st_mtime_ns == before[d].path.stat().st_mtime_ns for d in days)
    assert not list(archive.root.glob("*/.*.tmp"))
    check_identical()
    assert read == [(watermark, 2)]  # the other days' watermarks are older than the two writes
    # ... until the days whose watermark lags the newest label write get their labels rewritten too.
    monkeypatch.setattr("core.archive.LABEL_REFRESH_LAG", 1)
    assert archive.archive(days) == []
    lagging = [d for d in days if after[d].label_watermark < max(a.label_watermark for a in after.values()) - 1]
    assert lagging and all(archive.archived()[d].label_watermark > after[d].label_watermark for d in lagging)
    check_identical()
    assert read == [(min(a.label_watermark or 0 for a in archive.archived().values()), 0)]

    # An archive from before labels files reads identically through the full label lookup, and
    # the next archive() gives its days labels files.
    for f in archive.root.glob("*/labels.parquet"):
        f.unlink()
    check_identical()
    assert [after_seq for after_seq, _ in read] == [None]
    assert archive.archive(days) == [] and all(a.labels_path is not None for a in archive.archived().values())
    check_identical()
    assert [n for _, n in read] == [0]

    # A label written by a writer older than the seq column (no seq): the full label lookup again.
    archived = pd.concat(store.iter_predictions(archive.bounds(days[0])[0], archive.bounds(days[-1])[1], reader="sqlalchemy"))
    unlabelled = archived[archived["label"].isna()].iloc[0]
    with store.engine.begin() as conn:
        conn.execute(
            store.labels.insert().values(
                prediction_id=unlabelled["prediction_id"], label=0, received_at=later.replace(tzinfo=None)
            )
        )
    assert not store.label_seq_complete()
    whole = check_identical()
    assert [after_seq for after_seq, _ in read] == [None] and whole.loc[unlabelled["prediction_id"], "label"] == 0

    # A row before the first archived day, logged after archiving: the window's open start is read
    # from the database again (it is skipped only while the event-time index says it is empty).
    first = next(store.iter_predictions(None, None, chunksize=1)).iloc[0]
    early = first["event_time"].to_pydatetime() - timedelta(days=2)
    inputs = {f: (None if pd.isna(first[f]) else first[f]) for f in contract.field_names}
    inputs[contract.timestamp_field] = early
    row = {"prediction_id": "early-row-after-archiving", "served_at": first["served_at"].to_pydatetime(), "event_time": early,
           "model_name": "flights-late", "model_version": "1", "probability": 0.5, "late": 0, "warnings": [], "inputs": inputs,
           "features": {}}  # fmt: skip
    assert store.insert_predictions([row]) == 1
    assert "early-row-after-archiving" in check_identical().index


def test_sqlite_archived_labels_see_later_writes_exactly(tmp_path, contract, bundle, flights, monkeypatch):
    store, _ = _store(f"sqlite:///{tmp_path / 'log.db'}", contract, bundle, flights)
    try:
        _check_label_overlay(store, contract, tmp_path, "sqlalchemy", monkeypatch)
    finally:
        store.dispose()


def test_postgres_archived_labels_see_later_writes_exactly(pg_url, tmp_path, contract, bundle, flights, monkeypatch):
    store, _ = _store(pg_url, contract, bundle, flights)
    try:
        _check_label_overlay(store, contract, tmp_path, "auto", monkeypatch)
    finally:
        store.dispose()


def _check_days_written_together(store: LogStore, tmp_path, monkeypatch) -> None:
    """Runs of consecutive days are read by one statement and split at the days' bounds: the files
    are those of writing each day alone (rows, order, metadata, labels and their watermark)."""
    import pyarrow.parquet as pq

    import core.archive as archive_module
    from core.archive import LogArchive

    days = LogArchive(tmp_path / "probe", store).closed_days()[:40]
    days = [d for i, d in enumerate(days) if i % 9 != 4]  # gaps: runs end where a day is left out
    monkeypatch.setattr(archive_module, "WRITE_BATCH_ROWS", 1)  # every day alone
    alone = LogArchive(tmp_path / "alone", store)
    one_by_one = alone.archive(days)
    monkeypatch.setattr(archive_module, "WRITE_BATCH_ROWS", 60)  # a few days per statement here
    together = LogArchive(tmp_path / "together", store)
    reads = []
    real = store.iter_predictions

    def spy(*args, **kwargs):  # type: ignore[no-untyped-def]
        reads.append(args[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "iter_predictions", spy)
    batched = together.archive(days)
    monkeypatch.setattr(store, "iter_predictions", real)
    # several days per statement: fewer reads than days, more than the runs the gaps leave (5)
    assert 5 <= len(reads) < len(days) // 2, len(reads)
    assert [a.day for a in batched] == [a.day for a in one_by_one] == days
    assert sum(a.rows for a in batched) == sum(store.event_day_count(*together.bounds(d)) for d in days)
    for a, b in zip(one_by_one, batched, strict=True):
        assert (a.rows, a.served_min, a.label_watermark) == (b.rows, b.served_min, b.label_watermark)
        for x, y in ((a.path, b.path), (a.labels_path, b.labels_path)):
            tx, ty = pq.read_table(x), pq.read_table(y)
            assert tx.equals(ty, check_metadata=True), (a.day, x.name)
    assert together.archive(days) == []  # and they are recognised as archived


def test_sqlite_days_written_together_equal_days_written_alone(tmp_path, contract, bundle, flights, monkeypatch):
    store, _ = _store(f"sqlite:///{tmp_path / 'log.db'}", contract, bundle, flights)
    try:
        _check_days_written_together(store, tmp_path, monkeypatch)
    finally:
        store.dispose()


def test_postgres_days_written_together_equal_days_written_alone(pg_url, tmp_path, contract, bundle, flights, monkeypatch):
    store, _ = _store(pg_url, contract, bundle, flights)
    try:
        _check_days_written_together(store, tmp_path, monkeypatch)
    finally:
        store.dispose()
