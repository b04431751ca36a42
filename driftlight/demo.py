"""`driftlight demo`: train -> serve (a real uvicorn process) -> replay -> stop -> account.

It runs in its own folder (default `.driftlight/demo`), which it empties first so that every
figure it prints belongs to this run: a marker file guards against emptying anything else.
The closing check is the promise of the prediction log: rows served = rows logged and labels
accepted = labels stored, after the server was stopped with SIGTERM mid-life.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import numpy as np

MARKER = ".driftlight-demo"


def prepare_home(home: Path) -> None:
    if home.exists():
        if not (home / MARKER).exists() and any(home.iterdir()):
            raise RuntimeError(f"{home} is not empty and is not a demo folder: choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("created by driftlight demo; emptied by the next demo run\n")


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> float:
    """Seconds until GET /ready answers 200; raises if the server dies or the time runs out."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/ready", timeout=1.0).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url}/ready did not answer 200 within {timeout} s")


def start_server(settings: Any, log_path: Path) -> subprocess.Popen[bytes]:
    from driftlight.cli import settings_env

    env = {**os.environ, **settings_env(settings), "OMP_NUM_THREADS": "1"}
    with open(log_path, "ab") as fh:
        return subprocess.Popen([sys.executable, "-m", "driftlight.cli", "serve"], env=env, stdout=fh, stderr=subprocess.STDOUT)


CLEAN_EXIT = (0, -signal.SIGTERM)  # uvicorn re-raises SIGTERM after a graceful shutdown


def stop_server(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> int:
    """SIGTERM, then wait for the graceful shutdown (which flushes the log); kill only on timeout."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def run_demo(settings: Any, start: date, end: date, echo: Callable[[str], None] = print) -> dict[str, Any]:
    from data_contracts.contract import contract_path, load_contract
    from driftlight.logstore import LogStore
    from driftlight.registry import registry_from_settings
    from driftlight.replay import replay_frame
    from features.pipeline import build_features
    from training.data import load_flights, select_window
    from training.train import TrainConfig, train

    t_all = time.perf_counter()
    prepare_home(settings.home)
    contract = load_contract()
    url = f"http://{settings.host}:{settings.port}"

    echo("1/4 training on 2013-01-01..2013-03-31 (validation: the last 14 days) ...")
    result = train(
        contract,
        registry_from_settings(settings),
        TrainConfig(),
        model_name=settings.model_name,
        alias=settings.model_alias,
        contract_yaml=contract_path().read_text(encoding="utf-8"),
    )
    m, b = result.model_metrics, result.baseline_metrics
    echo(f"    v{result.version}: ROC AUC {m['roc_auc']:.3f} vs baseline {b['roc_auc']:.3f}; {result.reason}")

    echo(f"2/4 starting the API on {url} ...")
    proc = start_server(settings, settings.home / "server.log")
    try:
        ready_s = wait_ready(url, proc)
        echo(f"    ready in {ready_s:.1f} s")
        frame = select_window(load_flights(), contract, start, end)
        echo(f"3/4 replaying {len(frame)} flights of {start}..{end} in batches, then their labels ...")
        res = replay_frame(url, frame, contract, batch_size=200, window=(start.isoformat(), end.isoformat()))
        singles = frame.tail(300)
        echo(f"    and {len(singles)} single-record /predict calls for latency ...")
        lat = replay_frame(url, singles, contract, batch_size=1, send_labels=False)
    finally:
        echo("4/4 stopping the server (SIGTERM: the log is flushed) ...")
        code = stop_server(proc)

    store = LogStore(
        settings.resolved_log_store_url, contract, [str(n) for n in build_features(contract).get_feature_names_out()]
    )
    logged, labelled = store.count_predictions(), store.count_labels()
    store.dispose()
    served = res.served + lat.served
    lat_ms = np.asarray(lat.latencies_ms)
    summary = {
        "ok": served == logged and res.labels_accepted == labelled and not res.failed_requests and code in CLEAN_EXIT,
        "model": {"version": result.version, "validation": m, "baseline": b, "champion": result.promoted},
        "replay_window": [start.isoformat(), end.isoformat()],
        "rows_sent": res.sent + lat.sent,
        "rows_served": served,
        "rows_logged": logged,
        "labels_sent": res.labels_sent,
        "labels_stored": labelled,
        "cancelled_unlabelled": res.unlabelled,
        "predict_p50_ms": float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
        "predict_p99_ms": float(np.percentile(lat_ms, 99)) if lat_ms.size else None,
        "server_exit_code": code,
        "seconds": round(time.perf_counter() - t_all, 1),
        "home": str(settings.home),
    }
    echo(
        "\nSummary\n"
        f"  model v{result.version}        ROC AUC {m['roc_auc']:.3f}  PR AUC {m['pr_auc']:.3f}  Brier {m['brier']:.3f}"
        f"  (baseline {b['roc_auc']:.3f} / {b['pr_auc']:.3f} / {b['brier']:.3f})\n"
        f"  rows served / logged  {served} / {logged}\n"
        f"  labels sent / stored  {res.labels_sent} / {labelled}   ({res.unlabelled} cancelled flights have no label)\n"
        f"  /predict over HTTP    p50 {summary['predict_p50_ms']:.2f} ms, p99 {summary['predict_p99_ms']:.2f} ms"
        " (client side, sequential)\n"
        f"  took {summary['seconds']} s; stores and server log in {settings.home}\n"
        f"  {'OK: nothing lost' if summary['ok'] else 'MISMATCH: see above'}"
    )
    return summary
