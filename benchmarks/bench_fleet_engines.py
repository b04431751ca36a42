"""Fleet monitor engines: local (pandas, chunks) vs Spark local[2], same counts, same verdicts,
and how both scale with rows (1M, 3M, 10M) and with models.

Rows are real logged fleet traffic (a log written by `python -m drills.fleet`) resampled with
replacement and written once as a Parquet dataset (1M-row files, the layout a cluster reads: the
log exported by day), so both engines read the same bytes: the local engine streams it in
100k-row batches through `count_chunk`; Spark reads it with `spark.read.parquet` and runs the same
`count_chunk` per partition (`count_spark`). Reported per run: seconds to count, seconds to judge,
the driver's peak RSS (and its growth in this run), the JVM's peak RSS and the peak RSS of the
whole Spark process tree (JVM + Python workers, sampled every 0.2 s from /proc), and whether the
verdicts are identical.

    python -m benchmarks.bench_fleet_engines --home .driftlight --log .driftlight/fleet-eval/nodrift.db \
        --rows 1000000 3000000 10000000 --models-at 1000000 --models 10 30
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import threading
import time
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd

from core.fleet import load_refs
from core.fleet_monitor import count_chunk, flatten, judge_counts
from core.logstore import LogStore
from core.registry import registry_from_settings
from core.settings import Settings
from data_contracts.contract import load_contract
from data_contracts.fleet import load_fleet
from features.pipeline import build_features
from monitoring.fleet import ModelRef
from monitoring.policy import load_policy

FILE_ROWS = 1_000_000
BATCH_ROWS = 100_000


def peak_mb() -> float:
    """This process's peak RSS so far (MiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


class TreeRss:
    """Samples the summed RSS of a process and all its descendants (the JVM and its Python workers)."""

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self.pid, self.every_s, self.peak_mb = pid, every_s, 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            todo, total = [self.pid], 0
            while todo:
                p = todo.pop()
                total += _status_kb(p, "VmRSS")
                todo += _children(p)
            self.peak_mb = max(self.peak_mb, total / 1024)
            self._stop.wait(self.every_s)

    def __enter__(self) -> TreeRss:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def write_dataset(base: pd.DataFrame, rows: int, out: Path, seed: int = 0) -> None:
    """`rows` rows resampled with replacement from `base`, as Parquet files of FILE_ROWS rows."""
    from core.spark_engine import to_spark_frame

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for i, lo in enumerate(range(0, rows, FILE_ROWS)):
        n = min(FILE_ROWS, rows - lo)
        part = base.sample(n, replace=True, random_state=seed + i).reset_index(drop=True)
        # Spark 4 refuses Parquet TIMESTAMP(NANOS) (pandas' default): microseconds, as Spark keeps them.
        to_spark_frame(part, "event_time").to_parquet(
            out / f"part-{i:04d}.parquet", index=False, coerce_timestamps="us", allow_truncated_timestamps=True
        )


def count_local_parquet(refs: Mapping[str, ModelRef], path: Path, timezone: str) -> Any:
    """The local engine over the Parquet dataset: 100k-row batches through `count_chunk`."""
    import pyarrow.dataset as ds

    from core.spark_engine import TS

    def parts() -> Any:
        for batch in ds.dataset(path, format="parquet").to_batches(batch_size=BATCH_ROWS):
            b = batch.to_pandas()
            b["_clock"] = pd.to_datetime(b[TS], unit="us", utc=True)
            yield count_chunk(refs, b, timezone, by="_clock")

    return flatten(parts())


def run_once(
    refs: Mapping[str, ModelRef], path: Path, rows: int, spec: Any, policy: Any, day: date, timezone: str,
    master: str | None,
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {"rows": rows, "models": len(refs), "load_avg": os.getloadavg()[0]}
    m0, t0 = peak_mb(), time.perf_counter()
    local = count_local_parquet(refs, path, timezone)
    t1 = time.perf_counter()
    jl = judge_counts(refs, local, spec, policy, day)
    out["local"] = {
        "count_s": round(t1 - t0, 2),
        "judge_s": round(time.perf_counter() - t1, 2),
        "driver_peak_rss_mb": round(peak_mb(), 1),
        "driver_peak_growth_mb": round(peak_mb() - m0, 1),
    }
    print(json.dumps(out), flush=True)
    if master is None:
        return out

    from pyspark import SparkContext

    from core.spark_engine import count_spark, spark_session, stop_session

    t0 = time.perf_counter()
    spark = spark_session(master)
    start_s = time.perf_counter() - t0
    jvm = SparkContext._gateway.proc.pid  # type: ignore[union-attr]
    m0 = peak_mb()
    try:
        with TreeRss(jvm) as tree:
            t0 = time.perf_counter()
            remote = count_spark(spark, spark.read.parquet(str(path)), refs, timezone)
            t1 = time.perf_counter()
        js = judge_counts(refs, remote, spec, policy, day)
        out["spark"] = {
            "master": master,
            "session_start_s": round(start_s, 2),
            "count_s": round(t1 - t0, 2),
            "judge_s": round(time.perf_counter() - t1, 2),
            "driver_peak_growth_mb": round(peak_mb() - m0, 1),
            "jvm_peak_rss_mb": round(_status_kb(jvm, "VmHWM") / 1024, 1),
            "spark_tree_peak_rss_mb": round(tree.peak_mb, 1),
        }
    finally:
        stop_session(spark)
    out["identical_verdicts"] = [v.as_dict() for v in jl.verdicts] == [v.as_dict() for v in js.verdicts]
    out["counts_by_colour"] = jl.counts
    out["load_avg_after"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True, help="a fleet log (python -m drills.fleet writes one)")
    ap.add_argument("--rows", type=int, nargs="*", default=[1_000_000])
    ap.add_argument("--models", type=int, nargs="*", default=[], help="also run with only the N busiest models")
    ap.add_argument("--models-at", type=int, default=1_000_000, help="rows for the --models runs")
    ap.add_argument("--master", default="local[2]", help="Spark master; 'none' runs the local engine only")
    ap.add_argument("--work", type=Path, default=Path("/tmp/driftlight-bench-fleet"), help="where the Parquet goes")
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    a = ap.parse_args()
    master = None if a.master == "none" else a.master
    settings, contract = Settings(home=a.home), load_contract()
    spec = load_fleet(contract=contract)
    refs = load_refs(registry_from_settings(settings), spec, a.home / "fleet-cache", contract)
    names = [str(n) for n in build_features(contract).get_feature_names_out()]
    store = LogStore(f"sqlite:///{a.log}", contract, names)
    base = pd.concat(list(store.iter_predictions(None, None, chunksize=100_000)), ignore_index=True)
    store.dispose()
    day = date.fromisoformat(base["event_time"].dt.tz_convert(contract.timezone).max().strftime("%Y-%m-%d"))
    policy = load_policy()
    results: dict[str, Any] = {"base_rows": len(base), "day": day.isoformat(), "cpus": os.cpu_count(), "rows": [], "models": []}
    for rows in a.rows:
        path = a.work / f"rows-{rows}"
        t0 = time.perf_counter()
        write_dataset(base, rows, path)
        print(f"wrote {rows} rows to {path} in {time.perf_counter() - t0:.1f} s", flush=True)
        results["rows"].append(run_once(refs, path, rows, spec, policy, day, contract.timezone, master))
        shutil.rmtree(path)
    busiest = base["model_name"].value_counts()
    for n in a.models:
        keep = [m for m in busiest.index if m in refs][:n]
        if spec.global_model not in keep:
            keep = [spec.global_model, *keep[: n - 1]]
        sub_refs = {m: refs[m] for m in keep}
        path = a.work / f"models-{n}"
        write_dataset(base[base["model_name"].isin(keep)], a.models_at, path)
        results["models"].append(run_once(sub_refs, path, a.models_at, spec, policy, day, contract.timezone, master))
        shutil.rmtree(path)
    text = json.dumps(results, indent=2)
    if a.out:
        a.out.write_text(text + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    main()
