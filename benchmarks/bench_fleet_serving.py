"""Serving a fleet vs serving one model: /predict p50, start-up and memory, in one run.

Needs a home where `driftlight fleet train` has run. The single-model server serves the fleet's
global model alone (`DRIFTLIGHT_MODEL_NAME=flights-late--global`, no fleet file): the same
booster type, so the ratio isolates the cost of routing and of holding the fleet. Servers are
started alternately (single, fleet, single, fleet) to spread the machine's load between them.

    python -m benchmarks.bench_fleet_serving --home .driftlight --port 18350 [--n 2000]

Reports per server: seconds to /ready, seconds until every segment champion is loaded (fleet),
RSS of the server process after the load, /predict p50 / p99 over `n` sequential requests of
real April flights (every route, so the fleet routes to ~60 different models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import httpx
import numpy as np

from benchmarks.run import load, start, stop
from data_contracts.contract import load_contract
from data_contracts.fleet import default_fleet_path
from data_contracts.windows import select_window
from drills.replay import to_record
from training.data import load_flights


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(home: Path, port: int, fleet: bool, bodies: list[bytes], n: int, log: Path) -> dict[str, float]:
    env = {**os.environ, "DRIFTLIGHT_HOME": str(home), "DRIFTLIGHT_PORT": str(port), "OMP_NUM_THREADS": "1",
           "DRIFTLIGHT_RELOAD_INTERVAL": "0", "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    env.pop("DRIFTLIGHT_FLEET_FILE", None)
    if fleet:
        env["DRIFTLIGHT_FLEET_FILE"] = str(default_fleet_path())
    else:
        env["DRIFTLIGHT_MODEL_NAME"] = "flights-late--global"
    t0 = time.perf_counter()
    proc = start([sys.executable, "-m", "driftlight.cli", "serve"], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 180:
                raise RuntimeError("server did not become ready")
            time.sleep(0.05)
        ready = time.perf_counter() - t0
        loaded = ready
        if fleet:
            while True:
                f = httpx.get(f"{url}/fleet", timeout=5).json()["serving"]
                if f["loaded_in_s"] is not None:
                    break
                time.sleep(0.2)
            loaded = time.perf_counter() - t0
            segments = f["loaded"]
        load(port, bodies[:200], 1, 200)  # warm-up
        res = load(port, bodies, 1, n)
        return {"ready_s": round(ready, 2), "all_loaded_s": round(loaded, 2), "rss_mb": round(rss_mb(proc.pid), 1),
                "p50_ms": round(res["p50_ms"], 3), "p99_ms": round(res["p99_ms"], 3), "errors": res["errors"],
                "segment_models_loaded": segments if fleet else 0}  # fmt: skip
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--port", type=int, default=18350)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    contract = load_contract()
    april = select_window(load_flights(), contract, date(2013, 4, 1), date(2013, 4, 30)).sample(a.n, random_state=0)
    bodies = [json.dumps(to_record(r, contract)).encode() for r in april.to_dict("records")]
    out: dict[str, list[dict[str, float]]] = {"single": [], "fleet": []}
    log = a.home / "bench-fleet-serving.log"
    for _ in range(a.rounds):
        for kind in ("single", "fleet"):
            out[kind].append(one(a.home, a.port, kind == "fleet", bodies, a.n, log))
            print(kind, out[kind][-1], flush=True)
    p50 = {k: float(np.median([r["p50_ms"] for r in v])) for k, v in out.items()}
    print(
        json.dumps({"runs": out, "p50_ms_median": p50, "fleet_over_single_p50": round(p50["fleet"] / p50["single"], 3)}, indent=2)
    )


if __name__ == "__main__":
    main()
