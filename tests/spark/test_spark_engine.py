"""The fleet monitor on Apache Spark (local mode) gives the local engine's counts and verdicts exactly.

Needs pyspark (the `spark` extra) and Java 17; skipped with the reason when either is missing.
"""

from __future__ import annotations

import shutil
from datetime import date

import numpy as np
import pandas as pd
import pytest

from data_contracts.fleet import FleetMonitor, FleetSpec, FleetTrain
from monitoring.fleet import ModelRef, count_days, estimate_null
from monitoring.policy import load_policy
from monitoring.profile import build_profile
from monitoring.quality import field_conversions, reference_for

pytest.importorskip("pyspark", reason="pyspark is not installed (pip install -e '.[spark]')")
if shutil.which("java") is None:
    pytest.skip("no Java on PATH: Spark needs Java 17", allow_module_level=True)

NUM = ["temp", "humid", "distance", "probability"]
CAT = ["carrier", "dest"]
TZ = "America/New_York"


@pytest.fixture(scope="module")
def spark():
    from core.spark_engine import spark_session, stop_session

    s = spark_session("local[2]", batch_rows=2000)
    yield s
    stop_session(s)


@pytest.fixture(scope="module")
def fleet(flights, contract):
    """Three 'models' (one per origin) with profiles and nulls from January, and a log of
    March 1-7 in which JFK's temperature arrives in °C."""
    jan = flights[(flights["month"] == 1) & flights["late"].notna()].copy()
    rng = np.random.default_rng(0)
    jan["probability"] = rng.beta(2, 6, len(jan))
    jan["label"] = jan["late"]
    days = jan["time_hour"].dt.tz_convert(TZ).dt.strftime("%Y-%m-%d")
    refs = {}
    for origin, rows in jan.groupby("origin"):
        prof = build_profile(rows, NUM, CAT)
        null = estimate_null(prof, count_days(prof, rows, days.loc[rows.index]), 0.2, resamples=100)
        quality = [reference_for(rows, c, "numeric", contract.field(c).unit) for c in ("temp", "humid", "distance")]
        refs[origin] = ModelRef(
            origin, "1", origin, prof, float(rows["late"].mean()), 0.7, 2000, 6000, date(2013, 1, 31), null,
            {q.name: q for q in quality}, field_conversions(quality, contract),
        )  # fmt: skip
    log = flights[(flights["month"] == 3) & (flights["day"] <= 7)].copy()
    log["probability"] = rng.beta(2, 6, len(log))
    log["label"] = log["late"]
    log["model_name"] = log["origin"]
    log["model_version"] = "1"
    log["event_time"] = log["time_hour"]
    jfk = log["origin"] == "JFK"
    log.loc[jfk, "temp"] = (log.loc[jfk, "temp"] - 32) * 5 / 9
    cols = ["model_name", "model_version", "event_time", "label", *NUM, *CAT]
    spec = FleetSpec("t", ("origin",), "", "champion", FleetTrain(date(2013, 1, 1), date(2013, 1, 31)), FleetMonitor())
    return refs, log[cols].reset_index(drop=True), spec


def test_spark_counts_and_verdicts_equal_the_local_engine(spark, fleet) -> None:
    from core.fleet_monitor import count_chunk, judge_counts
    from core.spark_engine import count_spark, to_spark_frame

    refs, log, spec = fleet
    local = count_chunk(refs, log, TZ)
    sdf = spark.createDataFrame(to_spark_frame(log, "event_time")).repartition(4)
    remote = count_spark(spark, sdf, refs, TZ)
    assert set(local) == set(remote) and len(local) == 3 * 7
    for k in local:
        assert local[k].rows == remote[k].rows
        for col in local[k].cols:
            np.testing.assert_array_equal(local[k].cols[col], remote[k].cols[col])
        np.testing.assert_array_equal(local[k].hist_pos, remote[k].hist_pos)
        assert set(local[k].values) == set(remote[k].values) == {"temp", "humid", "distance"}
        for col, vc in local[k].values.items():  # the unit check's exact values survive the trip
            assert vc is not None and remote[k].values[col] is not None
            np.testing.assert_array_equal(vc[0], remote[k].values[col][0])  # type: ignore[index]
            np.testing.assert_array_equal(vc[1], remote[k].values[col][1])  # type: ignore[index]
    policy = load_policy()
    a = judge_counts(refs, local, spec, policy, date(2013, 3, 7))
    b = judge_counts(refs, remote, spec, policy, date(2013, 3, 7))
    assert [v.as_dict() for v in a.verdicts] == [v.as_dict() for v in b.verdicts]
    assert [v.segment for v in a.verdicts if v.status == "red"] == ["JFK"]  # the °C feed, found by both
    assert (a.verdicts[0].reasons[0].signal, a.verdicts[0].reasons[0].feature) == ("unit_change", "temp")


def test_the_clock_survives_the_trip_through_spark(spark, fleet) -> None:
    """Spark drops the zone of tz-aware columns; epoch microseconds keep local days exact."""
    from core.spark_engine import TS, to_spark_frame

    _, log, _ = fleet
    pdf = to_spark_frame(log.head(500), "event_time")
    back = spark.createDataFrame(pdf).toPandas()
    assert (pd.to_datetime(back[TS], unit="us", utc=True) == log["event_time"].head(500).dt.tz_convert("UTC")).all()


def test_empty_partitions_and_a_parquet_source_count_like_the_local_engine(spark, fleet, tmp_path) -> None:
    """A Parquet split or a repartition can leave a partition with no rows; it must add nothing
    (an empty output frame used to fail in Arrow: `Cannot convert ChunkedArray to Array`)."""
    from core.fleet_monitor import count_chunk
    from core.spark_engine import count_spark, to_spark_frame

    refs, log, _ = fleet
    few = log.head(3)
    local = count_chunk(refs, few, TZ)
    remote = count_spark(spark, spark.createDataFrame(to_spark_frame(few, "event_time")).repartition(8), refs, TZ)
    assert {k: c.rows for k, c in remote.items()} == {k: c.rows for k, c in local.items()}
    path = tmp_path / "log.parquet"
    to_spark_frame(log, "event_time").to_parquet(path, index=False, coerce_timestamps="us", allow_truncated_timestamps=True)
    remote = count_spark(spark, spark.read.parquet(str(path)), refs, TZ)
    assert {k: c.rows for k, c in remote.items()} == {k: c.rows for k, c in count_chunk(refs, log, TZ).items()}
