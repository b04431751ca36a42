"""The fleet monitor's Spark engine: the same pure per-(model, day) counts, from Spark partitions.

Each partition runs `core.fleet_monitor.count_chunk` (the local engine's function) with
`mapInPandas`; it emits one row per (model, day) with its counts as JSON; the driver merges them
(`Counts.merge`, exact: counts are sums of integers) and judges exactly as the local engine does,
so the verdicts are identical (tests/spark).

Sources: a Parquet dataset of the log (`--source path.parquet`, the layout a cluster reads: the
log exported by day), or the log store itself read by the driver in chunks and handed to Spark
(fine for one machine; a cluster should read Parquet or PostgreSQL over JDBC instead).

Traps handled here (STACK.md): `SPARK_LOCAL_IP=127.0.0.1` so the driver binds locally without a
network; `spark.sql.execution.arrow.maxRecordsPerBatch` bounds each Arrow batch; timestamps travel
as epoch microseconds (Spark drops the zone of tz-aware pandas columns); `stop_session` also shuts
the py4j gateway, or the JVM lingers after `spark.stop()`.

Point it at a cluster with `--master spark://host:7077` (or `yarn`, `k8s://…`): the executors need
this package installed (pip install driftlight) and read access to the Parquet source.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pandas as pd

from core.fleet_monitor import Key, count_chunk, merge_into
from data_contracts.contract import Contract
from monitoring.fleet import Counts, ModelRef

TS = "_ts_us"  # the windowing clock as epoch microseconds (UTC)


def spark_session(master: str = "local[2]", *, app: str = "driftlight-fleet", batch_rows: int = 50_000) -> Any:
    """A SparkSession for the fleet monitor (local mode needs only Java 17)."""
    local = master.startswith("local")
    if local:  # no network needed; on a cluster the executors must reach the driver's address
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    # Python workers must be this interpreter (its packages), not whatever `python3` is on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_rows))
        .config("spark.sql.shuffle.partitions", "8")
        .config("spark.ui.enabled", "false")
    )
    if local:
        builder = builder.config("spark.driver.bindAddress", "127.0.0.1")
    return builder.getOrCreate()


def stop_session(spark: Any) -> None:
    """Stop Spark and shut its py4j gateway (else the JVM outlives `spark.stop()`)."""
    from pyspark import SparkContext

    spark.stop()
    gw = getattr(SparkContext, "_gateway", None)
    if gw is not None:
        proc = getattr(gw, "proc", None)
        gw.shutdown()
        SparkContext._gateway = None
        SparkContext._jvm = None
        if proc is not None:  # the JVM the gateway launched: reap it, close its pipe
            if proc.stdin is not None:
                proc.stdin.close()
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
                proc.wait()


def to_spark_frame(chunk: pd.DataFrame, by: str) -> pd.DataFrame:
    """A log chunk as Spark takes it: the clock as epoch microseconds, lists (warnings) dropped."""
    out = chunk.drop(columns=[c for c in ("warnings", "received_at", "served_at", "event_time") if c in chunk and c != by])
    ts = pd.to_datetime(out.pop(by), utc=True)
    out[TS] = ts.astype("int64") // 1000
    if "label" in out:
        out["label"] = out["label"].astype("float64")
    return out


def _partition_counter(refs: Mapping[str, ModelRef], timezone: str) -> Any:
    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        acc: dict[Key, Counts] = {}
        for b in batches:
            b = b.assign(_clock=pd.to_datetime(b[TS], unit="us", utc=True))
            merge_into(acc, count_chunk(refs, b, timezone, by="_clock"))
        if not acc:  # an empty partition (a Parquet split with no rows): an empty frame fails Arrow here
            return
        yield pd.DataFrame(
            {
                "model": [k[0] for k in acc],
                "day": [k[1] for k in acc],
                "counts": [json.dumps(c.to_dict()) for c in acc.values()],
            }
        )

    return run


def count_spark(spark: Any, sdf: Any, refs: Mapping[str, ModelRef], timezone: str) -> dict[Key, Counts]:
    """Per-(model, day) counts of a Spark DataFrame shaped like `to_spark_frame` output."""
    rows = sdf.mapInPandas(_partition_counter(refs, timezone), schema="model string, day string, counts string").collect()
    acc: dict[Key, Counts] = {}
    for r in rows:
        merge_into(acc, {(r["model"], r["day"]): Counts.from_dict(json.loads(r["counts"]))})
    return acc


class SparkCounter:
    """`counter(start, end) -> (counts, rows)` for `core.fleet_monitor.run_fleet` on Spark."""

    def __init__(
        self, spark: Any, log_url: str, refs: Mapping[str, ModelRef], contract: Contract, *,
        by: str = "event_time", parquet: str | None = None, partitions: int | None = None,
    ) -> None:  # fmt: skip
        self.spark, self.log_url, self.refs, self.contract = spark, log_url, refs, contract
        self.by, self.parquet, self.partitions = by, parquet, partitions

    def frame(self, start: datetime, end: datetime) -> Any:
        from pyspark.sql import functions as F

        lo, hi = int(pd.Timestamp(start).value // 1000), int(pd.Timestamp(end).value // 1000)
        if self.parquet is not None:
            sdf = self.spark.read.parquet(self.parquet)
        else:
            from core.logstore import LogStore
            from features.pipeline import build_features

            store = LogStore(self.log_url, self.contract, [str(n) for n in build_features(self.contract).get_feature_names_out()])
            parts = [to_spark_frame(c, self.by) for c in store.iter_predictions(start, end, by=self.by, chunksize=200_000)]  # type: ignore[arg-type]
            store.dispose()
            sdf = self.spark.createDataFrame(pd.concat(parts, ignore_index=True))
        if self.partitions:
            sdf = sdf.repartition(self.partitions)
        return sdf.where((F.col(TS) >= lo) & (F.col(TS) < hi))

    def __call__(self, start: datetime, end: datetime) -> tuple[dict[Key, Counts], int]:
        sdf = self.frame(start, end).cache()
        try:
            n = sdf.count()
            return count_spark(self.spark, sdf, self.refs, self.contract.timezone), n
        finally:
            sdf.unpersist()
