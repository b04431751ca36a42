"""Monitor speed: our drift + quality vs Evidently's `DataDriftPreset(method="psi")`, 1M rows.

`python -m benchmarks.bench_monitor` (part of `make bench`). Reference = 1M rows resampled from
Jan-Mar 2013, current = 1M rows resampled from Apr-Jun, all 15 non-timestamp contract fields.
Each engine runs in its own subprocess so its peak memory (VmHWM growth over the loaded data) is
its own. Then a 1M-row window is written to a SQLite prediction log and monitored the way
`driftlight monitor` does it (streamed in chunks), with the time split into reading and computing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
RESULTS = Path(__file__).resolve().parent / "results"


def traced(fn):  # type: ignore[no-untyped-def]
    """(result, seconds, peak MB allocated during fn) — tracemalloc sees numpy's buffers too."""
    import tracemalloc

    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    t0 = time.perf_counter()
    res = fn()
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return res, seconds, (peak - base) / 2**20


def frames(n: int) -> tuple[Any, Any, list[str], list[str]]:
    from datetime import date

    from data_contracts.contract import load_contract
    from data_contracts.windows import select_window
    from training.data import contract_frame, load_flights

    c = load_contract()
    f = load_flights()
    ref = contract_frame(c, select_window(f, c, date(2013, 1, 1), date(2013, 3, 31))).sample(n, replace=True, random_state=0)
    cur = contract_frame(c, select_window(f, c, date(2013, 4, 1), date(2013, 6, 30))).sample(n, replace=True, random_state=1)
    num = [x.name for x in c.numeric_fields]
    cat = [x.name for x in c.category_fields]
    return ref.reset_index(drop=True), cur.reset_index(drop=True), num, cat


def engine(name: str, n: int) -> dict[str, Any]:
    ref, cur, num, cat = frames(n)
    if name == "ours":
        from data_contracts.contract import load_contract
        from monitoring.drift import compute_drift
        from monitoring.profile import build_profile
        from monitoring.quality import quality_signals
        from training.reference import quality_reference

        t0 = time.perf_counter()
        prof = build_profile(ref, num, cat)
        from monitoring.quality import references_from_mapping

        refs = references_from_mapping(quality_reference(load_contract(), ref))
        t_profile = time.perf_counter() - t0
        compute_drift(prof, cur.head(1000))  # warm imports and caches
        (drift, quality), _, mb = traced(lambda: (compute_drift(prof, cur), quality_signals(refs, cur)))
        t0 = time.perf_counter()  # timed again without tracemalloc's overhead
        compute_drift(prof, cur)
        quality_signals(refs, cur)
        seconds = time.perf_counter() - t0
        return {
            "seconds": seconds,
            "profile_seconds_once_at_training": t_profile,
            "extra_mb": mb,
            "columns": len(drift.features),
            "quality_signals": len(quality),
        }
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    dd = DataDefinition(numerical_columns=num, categorical_columns=cat)

    def evidently_run():  # type: ignore[no-untyped-def]
        return Report([DataDriftPreset(method="psi")]).run(
            Dataset.from_pandas(cur, data_definition=dd), Dataset.from_pandas(ref, data_definition=dd)
        )

    t0 = time.perf_counter()
    snap = evidently_run()
    seconds = time.perf_counter() - t0
    _, _, mb = traced(evidently_run)
    return {"seconds": seconds, "extra_mb": mb, "metrics": len(snap.dict()["metrics"])}


def store_window(n: int) -> dict[str, Any]:
    """Write n rows to a SQLite log, then monitor them streamed in chunks: read vs compute time."""
    from datetime import UTC, datetime, timedelta

    import numpy as np

    from core.logstore import LogStore
    from data_contracts.contract import load_contract
    from drills.calibrate import log_frame
    from monitoring.monitor import ModelContext, WindowAccumulator
    from training.data import load_flights
    from training.train import TrainConfig, fit_bundle, split

    c = load_contract()
    f = load_flights()
    cfg = TrainConfig()
    fit, val = split(c, f, cfg)
    bundle = fit_bundle(c, fit, val, cfg).bundle
    ctx = ModelContext.from_bundle("flights-late", "bench", bundle)
    names = [str(x) for x in bundle.pipeline.named_steps["features"].get_feature_names_out()]
    with tempfile.TemporaryDirectory() as tmp:
        store = LogStore(f"sqlite:///{tmp}/log.db", c, names)
        store.create_schema()
        src = log_frame(bundle, c, f[f["late"].notna()].sample(n, replace=True, random_state=0))
        now = datetime.now(UTC)
        t0 = time.perf_counter()
        for a in range(0, n, 5000):
            part = src.iloc[a : a + 5000]
            rows = [
                {
                    "prediction_id": f"b{a + i:012d}",
                    "served_at": now + timedelta(microseconds=a + i),
                    "event_time": r[c.timestamp_field],
                    "model_name": "flights-late",
                    "model_version": "1",
                    "probability": r["probability"],
                    "late": int(r["probability"] >= 0.2),
                    "warnings": [],
                    "inputs": {k: (None if isinstance(r[k], float) and np.isnan(r[k]) else r[k]) for k in c.field_names},
                    "features": {x: r[f"f_{x}"] for x in names},
                }
                for i, r in enumerate(part.to_dict("records"))
            ]
            store.insert_predictions(rows)
        write_s = time.perf_counter() - t0
        times = {"read": 0.0, "compute": 0.0}

        def monitor():  # type: ignore[no-untyped-def]
            acc = WindowAccumulator(ctx, c)
            t = time.perf_counter()
            for chunk in store.iter_predictions(None, None, by="served_at", chunksize=50_000):
                t1 = time.perf_counter()
                times["read"] += t1 - t
                acc.add(chunk)
                t = time.perf_counter()
                times["compute"] += t - t1
            t1 = time.perf_counter()
            out = acc.finish()
            times["compute"] += time.perf_counter() - t1
            return out

        ws, _, mb = traced(monitor)  # under tracemalloc: times are inflated, memory is what counts
        times = {"read": 0.0, "compute": 0.0}
        monitor()  # timed without tracemalloc
        store.dispose()
    return {
        "rows": ws.rows,
        "write_seconds": write_s,
        "read_seconds": times["read"],
        "compute_seconds": times["compute"],
        "extra_mb_while_monitoring": mb,
    }


def sub(what: str, n: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_monitor", "--child", what, str(n)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(n_rows: int = 1_000_000, store_rows: int = 1_000_000) -> dict[str, Any]:
    ours, theirs = sub("ours", n_rows), sub("evidently", n_rows)
    return {
        "rows": n_rows,
        "ours": ours,
        "evidently": theirs,
        "speedup": theirs["seconds"] / ours["seconds"],
        "store": sub("store", store_rows),
    }


def report(r: dict[str, Any]) -> str:
    o, e, s = r["ours"], r["evidently"], r["store"]
    ok = lambda b: "PASS" if b else "MISS"  # noqa: E731
    return "\n".join(
        [
            f"Monitor, {r['rows']:,} current rows x 15 contract fields (reference {r['rows']:,} rows):",
            f"  ours: drift + quality      {o['seconds']:6.2f} s, +{o['extra_mb']:.0f} MB peak"
            f"   (profile, once at training: {o['profile_seconds_once_at_training']:.2f} s)",
            f"  Evidently DataDriftPreset(psi) {e['seconds']:6.2f} s, +{e['extra_mb']:.0f} MB peak",
            f"  speed-up {r['speedup']:.0f}x — target >= 30x: {ok(r['speedup'] >= 30)};"
            f" <= 1.5 s: {ok(o['seconds'] <= 1.5)}; < 100 MB: {ok(o['extra_mb'] < 100)}",
            f"Monitoring a {s['rows']:,}-row window from the SQLite log, streamed in 50k-row chunks:",
            f"  read {s['read_seconds']:.1f} s + compute {s['compute_seconds']:.1f} s (incl. skew recompute);"
            f" +{s['extra_mb_while_monitoring']:.0f} MB peak while monitoring"
            f" (writing it took {s['write_seconds']:.1f} s)",
        ]
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        what, n = sys.argv[2], int(sys.argv[3])
        res = store_window(n) if what == "store" else engine(what, n)
        print(json.dumps(res))
    else:
        r = run()
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "monitor.json").write_text(json.dumps(r, indent=2))
        print(report(r))
