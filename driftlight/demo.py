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

    echo("1/5 training on 2013-01-01..2013-03-31 (validation: the last 14 days) ...")
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

    echo(f"2/5 starting the API on {url} ...")
    proc = start_server(settings, settings.home / "server.log")
    try:
        ready_s = wait_ready(url, proc)
        echo(f"    ready in {ready_s:.1f} s")
        flights = load_flights()
        frame = select_window(flights, contract, start, end)
        echo(f"3/5 replaying {len(frame)} flights of {start}..{end} in batches, then their labels ...")
        res = replay_frame(url, frame, contract, batch_size=200, window=(start.isoformat(), end.isoformat()))
        singles = frame.tail(300)
        echo(f"    and {len(singles)} single-record /predict calls for latency ...")
        lat = replay_frame(url, singles, contract, batch_size=1, send_labels=False)
        control, summer = monitor_traffic(contract, flights, registry_from_settings(settings), settings)
        echo(f"    and, for the monitor, {len(control)} flights of the held-out control days and {len(summer)} of July 1-7 ...")
        extra = [replay_frame(url, f, contract, batch_size=500) for f in (control, summer)]
    finally:
        echo("4/5 stopping the server (SIGTERM: the log is flushed) ...")
        code = stop_server(proc)

    echo("5/5 monitoring three windows of the log ...")
    verdicts = monitor_windows(settings, start, end, echo)

    store = LogStore(
        settings.resolved_log_store_url, contract, [str(n) for n in build_features(contract).get_feature_names_out()]
    )
    logged, labelled = store.count_predictions(), store.count_labels()
    store.dispose()
    served = res.served + lat.served + sum(e.served for e in extra)
    labels_sent = res.labels_sent + sum(e.labels_sent for e in extra)
    labels_accepted = res.labels_accepted + sum(e.labels_accepted for e in extra)
    lat_ms = np.asarray(lat.latencies_ms)
    summary = {
        "ok": served == logged and labels_accepted == labelled == labels_sent and not res.failed_requests and code in CLEAN_EXIT,
        "model": {"version": result.version, "validation": m, "baseline": b, "champion": result.promoted},
        "replay_window": [start.isoformat(), end.isoformat()],
        "rows_sent": res.sent + lat.sent,
        "rows_served": served,
        "rows_logged": logged,
        "labels_sent": labels_sent,
        "labels_stored": labelled,
        "cancelled_unlabelled": res.unlabelled,
        "predict_p50_ms": float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
        "predict_p99_ms": float(np.percentile(lat_ms, 99)) if lat_ms.size else None,
        "server_exit_code": code,
        "verdicts": verdicts,
        "seconds": round(time.perf_counter() - t_all, 1),
        "home": str(settings.home),
    }
    echo(
        "\nSummary\n"
        f"  model v{result.version}        ROC AUC {m['roc_auc']:.3f}  PR AUC {m['pr_auc']:.3f}  Brier {m['brier']:.3f}"
        f"  (baseline {b['roc_auc']:.3f} / {b['pr_auc']:.3f} / {b['brier']:.3f})\n"
        f"  rows served / logged  {served} / {logged}\n"
        f"  labels sent / stored  {labels_sent} / {labelled}   (cancelled flights have no label)\n"
        f"  /predict over HTTP    p50 {summary['predict_p50_ms']:.2f} ms, p99 {summary['predict_p99_ms']:.2f} ms"
        " (client side, sequential)\n"
        + "".join(f"  monitor {w:<22} {v['status'].upper():<6} {'; '.join(v['top'][:2]) or '-'}\n" for w, v in verdicts.items())
        + f"  took {summary['seconds']} s; stores, reports and server log in {settings.home}\n"
        f"  {'OK: nothing lost' if summary['ok'] else 'MISMATCH: see above'}"
    )
    return summary


def monitor_traffic(contract: Any, flights: Any, registry: Any, settings: Any) -> tuple[Any, Any]:
    """A sample of the held-out control days (no drift) and the first week of July (seasonal drift)."""
    from training.data import select_window
    from training.reference import on_days

    version = registry.alias_version(settings.model_name, settings.model_alias)
    md = registry.load(settings.model_name, version).metadata
    fit_end = date.fromisoformat(md["fit_window"]["end"])
    fit = select_window(flights, contract, date.fromisoformat(md["fit_window"]["start"]), fit_end)
    control = on_days(contract, fit, md["monitoring"]["control_days"]).sample(3000, random_state=0).sort_values("time_hour")
    return control, select_window(flights, contract, date(2013, 7, 1), date(2013, 7, 7))


def monitor_windows(settings: Any, start: date, end: date, echo: Callable[[str], None]) -> dict[str, Any]:
    """Judge the control days, the replayed slice and July 1-7; print each verdict."""
    from driftlight.monitor_job import Monitor

    mon = Monitor(settings)
    fit = mon.ctx.metadata["fit_window"]
    windows = {
        "control days (Jan-Mar)": (date.fromisoformat(fit["start"]), date.fromisoformat(fit["end"])),
        f"replayed {start:%b %d}-{end:%d}": (start, end),
        "July 1-7": (date(2013, 7, 1), date(2013, 7, 7)),
    }
    out: dict[str, Any] = {}
    for name, (lo, hi) in windows.items():
        r = mon.run_days(lo, hi, html=True)
        top = [x.message for x in r.verdict.top_reasons(3)]
        out[name] = {
            "status": r.verdict.status,
            "rows": r.rows,
            "top": top,
            "reports": dict(r.reports),
            "auc": r.performance.roc_auc,
        }
        echo(f"    {name}: {r.verdict.status.upper()} ({r.rows} rows, realised AUC {r.performance.roc_auc:.3f})")
        for t in top:
            echo(f"      - {t}")
        for path in r.reports.values():
            echo(f"      report: {path}")
    return out
