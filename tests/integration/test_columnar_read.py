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
