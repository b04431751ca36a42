"""`driftlight demo`: train -> serve (a real uvicorn process) -> replay -> stop -> account.

It runs in its own folder (default `.driftlight/demo`), which it empties first so that every
figure it prints belongs to this run: a marker file guards against emptying anything else.
The closing check is the promise of the prediction log: rows served = rows logged and labels
accepted = labels stored, after the server was stopped with SIGTERM mid-life.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from core.registry import required_alias
from core.server_process import CLEAN_EXIT, start_server, stop_server, wait_ready

if TYPE_CHECKING:
    from core.logstore import LogStore
    from core.registry import Registry
    from core.settings import Settings
    from data_contracts.contract import Contract

MARKER = ".driftlight-demo"


def prepare_home(home: Path) -> None:
    if home.exists():
        if not (home / MARKER).exists() and any(home.iterdir()):
            raise RuntimeError(f"{home} is not empty and is not a demo folder: choose another --home")
        shutil.rmtree(home)
    home.mkdir(parents=True)
    (home / MARKER).write_text("created by driftlight demo; emptied by the next demo run\n")


def run_demo(settings: Settings, start: date, end: date, echo: Callable[[str], None] = print) -> dict[str, Any]:
    from core.logstore import log_store_from_settings
    from core.registry import registry_from_settings
    from data_contracts.contract import contract_path, load_contract
    from data_contracts.windows import select_window
    from drills.replay import replay_frame
    from training.data import load_flights
    from training.train import TrainConfig, train

    t_all = time.perf_counter()
    prepare_home(settings.home)
    # The demo's server polls the registry every second, so a promotion is served within ~1 s.
    settings = settings.model_copy(update={"reload_interval": 1.0})
    contract = load_contract()
    url = f"http://{settings.host}:{settings.port}"
    registry = registry_from_settings(settings)
    store = log_store_from_settings(settings, contract)

    echo("1/6 training on 2013-01-01..2013-03-31 (validation: the last 14 days) ...")
    result = train(
        contract,
        registry,
        TrainConfig(),
        model_name=settings.model_name,
        alias=settings.model_alias,
        contract_yaml=contract_path().read_text(encoding="utf-8"),
    )
    m, b = result.model_metrics, result.baseline_metrics
    echo(f"    v{result.version}: ROC AUC {m['roc_auc']:.3f} vs baseline {b['roc_auc']:.3f}; {result.reason}")

    echo(f"2/6 starting the API on {url} ...")
    proc = start_server(settings, settings.home / "server.log")
    replays = []
    try:
        ready_s = wait_ready(url, proc)
        echo(f"    ready in {ready_s:.1f} s")
        flights = load_flights()
        frame = select_window(flights, contract, start, end)
        echo(f"3/6 replaying {len(frame)} flights of {start}..{end} in batches, then their labels ...")
        res = replay_frame(url, frame, contract, batch_size=200, window=(start.isoformat(), end.isoformat()))
        singles = frame.tail(300)
        echo(f"    and {len(singles)} single-record /predict calls for latency ...")
        lat = replay_frame(url, singles, contract, batch_size=1, send_labels=False)
        control, summer = monitor_traffic(contract, flights, registry, settings)
        echo(
            f"    and, for the monitor and the retrain, {len(control)} flights of the held-out control days"
            f" and {len(summer)} of June 3 - July 7 ..."
        )
        replays = [replay_frame(url, f, contract, batch_size=500) for f in (control, summer)]
        wait_logged(store, res.served + lat.served + sum(r.served for r in replays))

        echo("4/6 monitoring three windows of the log ...")
        verdicts = monitor_windows(settings, start, end, echo)

        echo(
            "5/6 retrain: a challenger on June's labelled traffic, gated on July 1-7"
            " (red asks by itself; yellow notifies the owner) ..."
        )
        cycle = retrain_cycle(settings, contract, registry, store, url, flights, echo)
        replays.append(cycle.pop("replay"))
    finally:
        echo("6/6 stopping the server (SIGTERM: the log is flushed) ...")
        code = stop_server(proc)

    logged, labelled = store.count_predictions(), store.count_labels()
    store.dispose()
    served = res.served + lat.served + sum(e.served for e in replays)
    labels_sent = res.labels_sent + sum(e.labels_sent for e in replays)
    labels_accepted = res.labels_accepted + sum(e.labels_accepted for e in replays)
    failed = res.failed_requests + lat.failed_requests + sum(e.failed_requests for e in replays)
    lat_ms = np.asarray(lat.latencies_ms)
    summary = {
        "ok": served == logged and labels_accepted == labelled == labels_sent and not failed and code in CLEAN_EXIT,
        "model": {"version": result.version, "validation": m, "baseline": b, "champion": result.promoted},
        "replay_window": [start.isoformat(), end.isoformat()],
        "rows_sent": res.sent + lat.sent + sum(e.sent for e in replays),
        "rows_served": served,
        "rows_logged": logged,
        "labels_sent": labels_sent,
        "labels_stored": labelled,
        "failed_requests": failed,
        "cancelled_unlabelled": res.unlabelled,
        "predict_p50_ms": float(np.percentile(lat_ms, 50)) if lat_ms.size else None,
        "predict_p99_ms": float(np.percentile(lat_ms, 99)) if lat_ms.size else None,
        "server_exit_code": code,
        "verdicts": verdicts,
        "retrain": cycle,
        "seconds": round(time.perf_counter() - t_all, 1),
        "home": str(settings.home),
        "page": f"{url}/",
        "serve_command": serve_command(settings),
    }
    after = cycle.get("after") or {}
    echo(
        "\nSummary\n"
        f"  model v{result.version}        ROC AUC {m['roc_auc']:.3f}  PR AUC {m['pr_auc']:.3f}  Brier {m['brier']:.3f}"
        f"  (baseline {b['roc_auc']:.3f} / {b['pr_auc']:.3f} / {b['brier']:.3f})\n"
        f"  rows served / logged  {served} / {logged}\n"
        f"  labels sent / stored  {labels_sent} / {labelled}   (cancelled flights have no label)\n"
        f"  /predict over HTTP    p50 {summary['predict_p50_ms']:.2f} ms, p99 {summary['predict_p99_ms']:.2f} ms"
        " (client side, sequential)\n"
        + "".join(f"  monitor {w:<22} {v['status'].upper():<6} {'; '.join(v['top'][:2]) or '-'}\n" for w, v in verdicts.items())
        + f"  retrain               {cycle['status']}: v{cycle.get('challenger')} vs v{cycle.get('champion')}"
        f" on July 1-7: ROC AUC {cycle['challenger_auc']:.3f} vs {cycle['champion_auc']:.3f}\n"
        + (
            f"  July 8-14, served by v{after['served_by']}: ROC AUC {after['served_auc']:.3f};"
            f" v{cycle.get('champion')} on the same flights {after['old_auc']:.3f}\n"
            if after
            else ""
        )
        + f"  took {summary['seconds']} s; stores, reports and server log in {settings.home}\n"
        f"  the page            {url}/  (the light, its reasons, every field over the three windows, the promotion)\n"
        f"                      serve it: {summary['serve_command']}   (or run the demo with --keep-serving)\n"
        f"  {'OK: nothing lost' if summary['ok'] else 'MISMATCH: see above'}"
    )
    return summary


def serve_command(settings: Settings) -> str:
    """The command that serves the demo's stores (and so its page) again after the demo stopped."""
    return f"driftlight serve --home {settings.home} --port {settings.port}"


def keep_serving(settings: Settings, echo: Callable[[str], None] = print) -> int:
    """Serve the demo's stores again until Ctrl-C, so its page can be opened; the exit code of the server."""
    url = f"http://{settings.host}:{settings.port}"
    proc = start_server(settings, settings.home / "server.log")
    try:
        wait_ready(url, proc)
        echo(f"\nserving the demo again: open {url}/ (Ctrl-C stops it)")
        return proc.wait()
    except KeyboardInterrupt:
        return stop_server(proc)
    finally:
        if proc.poll() is None:
            stop_server(proc)


def wait_logged(store: LogStore, rows: int, timeout: float = 60.0) -> None:
    """The writer commits in the background: wait until the log holds every served row."""
    t0 = time.perf_counter()
    while store.count_predictions() < rows and time.perf_counter() - t0 < timeout:
        time.sleep(0.2)


def retrain_cycle(
    settings: Settings,
    contract: Contract,
    registry: Registry,
    store: LogStore,
    url: str,
    flights: Any,
    echo: Callable[[str], None],
) -> dict[str, Any]:
    """Consume the retrain requests (a red window's, or the owner's after a yellow one); if promoted, show
    the new version serving July 8-14."""

    from sklearn.metrics import roc_auc_score

    from core.runs import RunStore
    from data_contracts.windows import select_window
    from drills.replay import replay_frame
    from training.data import contract_frame
    from training.retrain import handle_pending_with_settings

    runs = RunStore(settings.resolved_log_store_url)
    old = required_alias(registry, settings.model_name, settings.model_alias)
    if not runs.pending_retrains():
        # July is a moved world: yellow notifies the owner, only red asks for a retrain by itself.
        # The demo plays the owner who, notified, asks for one: the same gate decides.
        latest = runs.latest() or {}
        echo(
            f"    July 1-7 was {str(latest.get('status', '?')).upper()}: the owner is notified; the demo plays the owner and asks"
        )
        runs.request_retrain(latest.get("run_id", ""), old, [{"message": "requested by the owner after a yellow light"}])
    out = handle_pending_with_settings(settings, contract, registry, store, runs)
    cycle: dict[str, Any] = {
        "status": out.status,
        "champion": old,
        "challenger": out.challenger_version,
        "reasons": out.reasons,
        "windows": out.windows,
        "rows": out.rows,
        "champion_auc": out.holdout_auc("champion"),
        "challenger_auc": out.holdout_auc("challenger"),
    }
    echo(
        f"    {out.status.upper()}: challenger v{out.challenger_version} vs champion v{old}, holdout {out.windows.get('holdout')}"
    )
    for r in out.reasons[-6:]:
        echo(f"      - {r}")
    week = select_window(flights, contract, date(2013, 7, 8), date(2013, 7, 14))
    if out.status == "promoted":
        t0 = time.perf_counter()
        while (
            time.perf_counter() - t0 < 30 and httpx.get(f"{url}/model", timeout=5).json().get("version") != out.challenger_version
        ):
            time.sleep(0.2)
        echo(f"    the API swapped to v{out.challenger_version} in {time.perf_counter() - t0:.1f} s (alias poll, no restart)")
    echo(f"    replaying July 8-14 ({len(week)} flights) through the API ...")
    rep = replay_frame(url, week, contract, batch_size=500)
    labelled = week[week["late"].notna()]
    y = labelled["late"].astype(int).to_numpy()
    old_bundle = registry.load(settings.model_name, old)
    old_auc = float(roc_auc_score(y, old_bundle.pipeline.predict_proba(contract_frame(contract, labelled))[:, 1]))
    now = required_alias(registry, settings.model_name, settings.model_alias)
    new_auc = float(
        roc_auc_score(y, registry.load(settings.model_name, now).pipeline.predict_proba(contract_frame(contract, labelled))[:, 1])
    )
    cycle["after"] = {"served_by": now, "versions_in_responses": dict(rep.versions), "served_auc": new_auc, "old_auc": old_auc}
    echo(f"    July 8-14 served by v{now}: ROC AUC {new_auc:.3f} (the previous champion v{old} would have scored {old_auc:.3f})")
    cycle["replay"] = rep
    return cycle


def monitor_traffic(contract: Contract, flights: Any, registry: Registry, settings: Settings) -> tuple[Any, Any]:
    """A sample of the held-out control days (no drift) and June 3 - July 7 (seasonal drift)."""
    from data_contracts.windows import on_days, select_window

    version = required_alias(registry, settings.model_name, settings.model_alias)
    md = registry.load(settings.model_name, version).metadata
    fit_end = date.fromisoformat(md["fit_window"]["end"])
    fit = select_window(flights, contract, date.fromisoformat(md["fit_window"]["start"]), fit_end)
    control = on_days(contract, fit, md["monitoring"]["control_days"]).sample(3000, random_state=0).sort_values("time_hour")
    # June 3 - July 7: the July week the monitor judges, and the 28 labelled days before it that a
    # challenger trains on (retrain window = 28 days + a 7-day holdout).
    return control, select_window(flights, contract, date(2013, 6, 3), date(2013, 7, 7))


def monitor_windows(settings: Settings, start: date, end: date, echo: Callable[[str], None]) -> dict[str, Any]:
    """Judge the control days, the replayed slice and July 1-7; print each verdict."""
    from core.monitor_job import Monitor

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
        for path in r.reports.values():  # over HTTP, as the page links them (no file-system path)
            echo(f"      report: http://{settings.host}:{settings.port}/reports/{Path(path).name}")
    return out
