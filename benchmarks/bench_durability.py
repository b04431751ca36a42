"""What the durable log mode costs: acknowledged /predict requests per second, memory vs local.

Starts `driftlight serve` twice on the same home (a packaged-fallback server: no training needed,
and a cheaper scoring path than the model, so the journal's *relative* cost is overstated, not
hidden), once with `DRIFTLIGHT_LOG_DURABILITY=memory` and once with `local`, and drives each with
`--clients` concurrent keep-alive clients sending single records for `--seconds`. Then counts the
answered ids against the rows stored after a graceful stop (0 lost is required in both modes).

    .venv/bin/python -m benchmarks.bench_durability [--clients 8] [--seconds 15] [--port 18260]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from core.logstore import log_store_from_settings
from core.server_process import start_server, stop_server, wait_ready
from core.settings import Settings
from data_contracts.contract import load_contract


def real_record() -> dict[str, Any]:
    """One real April 2013 flight as a caller sends it (the contract's JSON form), as `make bench` uses."""
    from datetime import date

    from data_contracts.windows import select_window
    from drills.replay import to_record
    from training.data import load_flights

    contract = load_contract()
    april = select_window(load_flights(), contract, date(2013, 4, 1), date(2013, 4, 1))
    return to_record(april.iloc[0].to_dict(), contract)


def drive(url: str, record: dict[str, Any], clients: int, seconds: float) -> tuple[list[str], list[float], int]:
    """(answered ids, latencies s, failed requests) of `clients` threads posting for `seconds`."""
    ids: list[str] = []
    lat: list[float] = []
    failed = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client() -> None:
        mine, times, bad = [], [], 0
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                r = http.post("/predict", json=record)
                times.append(time.perf_counter() - t0)
                if r.status_code == 200:
                    mine.append(r.json()["prediction_id"])
                else:
                    bad += 1
        with lock:
            ids.extend(mine)
            lat.extend(times)
            failed[0] += bad

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids, lat, failed[0]


def run_mode(home: Path, mode: str, port: int, record: dict[str, Any], clients: int, seconds: float) -> dict[str, Any]:
    s = Settings(home=home / mode, port=port, log_durability=mode, reload_interval=0)  # type: ignore[arg-type]
    s.home.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    proc = start_server(s, s.home / "server.log")
    try:
        wait_ready(url, proc, timeout=120)
        drive(url, record, clients, 2.0)  # warm-up (its rows are counted in the store, not in the figure)
        ids, lat, failed = drive(url, record, clients, seconds)
    finally:
        stop_server(proc)
    store = log_store_from_settings(s, load_contract())
    stored = set()
    for chunk in store.iter_predictions(None, None, with_labels=False):
        stored |= set(chunk["prediction_id"])
    store.dispose()
    lat.sort()
    return {
        "mode": mode,
        "requests_per_s": round(len(ids) / seconds, 1),
        "p50_ms": round(lat[len(lat) // 2] * 1e3, 2),
        "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 2),
        "answered": len(ids),
        "failed": failed,
        "lost": len(set(ids) - stored),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--port", type=int, default=18260)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    record = real_record()
    with tempfile.TemporaryDirectory(prefix="driftlight-bench-durable-") as tmp:
        rows = [run_mode(Path(tmp), mode, args.port, record, args.clients, args.seconds) for mode in ("memory", "local")]
    for r in rows:
        print(r)
    cost = 1 - rows[1]["requests_per_s"] / rows[0]["requests_per_s"]
    print(f"durable (local) mode costs {cost:.1%} of acknowledged requests/s at {args.clients} clients")


if __name__ == "__main__":
    main()
