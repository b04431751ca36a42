"""Fleet monitor engines: local (pandas, chunks) vs Spark local[2], same counts, same verdicts.

Rows are real logged fleet traffic (a log written by `python -m drills.fleet`) resampled with
replacement to `--rows`; every model of the fleet appears. Reports seconds to count, seconds to
judge, the driver's peak RSS growth, and whether the verdicts are identical.

    python -m benchmarks.bench_fleet_engines --home .driftlight --log .driftlight/fleet-eval/nodrift.db --rows 1000000
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from datetime import date
from pathlib import Path

import pandas as pd

from core.fleet import load_refs
from core.fleet_monitor import count_chunk, flatten, judge_counts
from core.logstore import LogStore
from core.registry import registry_from_settings
from core.settings import Settings
from data_contracts.contract import load_contract
from data_contracts.fleet import load_fleet
from features.pipeline import build_features
from monitoring.policy import load_policy


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--log", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--master", default="local[2]")
    a = ap.parse_args()
    settings, contract = Settings(home=a.home), load_contract()
    spec = load_fleet(contract=contract)
    refs = load_refs(registry_from_settings(settings), spec, a.home / "fleet-cache")
    names = [str(n) for n in build_features(contract).get_feature_names_out()]
    store = LogStore(f"sqlite:///{a.log}", contract, names)
    base = pd.concat(list(store.iter_predictions(None, None, chunksize=100_000)), ignore_index=True)
    frame = base.sample(a.rows, replace=True, random_state=0).sort_values("event_time", kind="mergesort").reset_index(drop=True)
    day = date.fromisoformat(frame["event_time"].dt.tz_convert(contract.timezone).max().strftime("%Y-%m-%d"))
    policy = load_policy()
    out: dict[str, object] = {"rows": a.rows, "models": len(refs), "day": day.isoformat()}

    m0, t0 = peak_mb(), time.perf_counter()
    local = flatten(count_chunk(refs, frame.iloc[i : i + 100_000], contract.timezone) for i in range(0, len(frame), 100_000))
    t1 = time.perf_counter()
    jl = judge_counts(refs, local, spec, policy, day)
    out["local"] = {
        "count_s": round(t1 - t0, 2),
        "judge_s": round(time.perf_counter() - t1, 2),
        "peak_rss_growth_mb": round(peak_mb() - m0, 1),
    }
    print(out, flush=True)

    from core.spark_engine import count_spark, spark_session, stop_session, to_spark_frame

    t0 = time.perf_counter()
    spark = spark_session(a.master)
    start_s = time.perf_counter() - t0
    try:
        pdf = to_spark_frame(frame, "event_time")
        t0 = time.perf_counter()
        sdf = spark.createDataFrame(pdf)
        remote = count_spark(spark, sdf, refs, contract.timezone)
        t1 = time.perf_counter()
        js = judge_counts(refs, remote, spec, policy, day)
        out["spark"] = {
            "master": a.master,
            "session_start_s": round(start_s, 2),
            "count_s": round(t1 - t0, 2),
            "judge_s": round(time.perf_counter() - t1, 2),
        }
    finally:
        stop_session(spark)
    out["identical_verdicts"] = [v.as_dict() for v in jl.verdicts] == [v.as_dict() for v in js.verdicts]
    out["counts_by_colour"] = jl.counts
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
