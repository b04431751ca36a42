"""`driftlight fleet …`: train, monitor and inspect a fleet of models (one per segment + global).

A thin typer sub-app (registered in driftlight.cli); each command builds the one `Settings`,
reads the fleet file (`--fleet`, else `DRIFTLIGHT_FLEET_FILE`, else the packaged routes fleet)
and calls one function.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from core.exit_codes import ExitCode
from core.settings import Settings
from driftlight.options import settings_from_options as _settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A fleet of models: one per segment plus a global one.")

HomeOpt = Annotated[Path | None, typer.Option("--home", help="folder for the embedded stores (DRIFTLIGHT_HOME)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
BudgetOpt = Annotated[
    int | None, typer.Option("--budget", min=0, help="retrains per cycle (default DRIFTLIGHT_FLEET_RETRAIN_BUDGET, 3)")
]
FleetOpt = Annotated[
    Path | None, typer.Option("--fleet", help="fleet file (default DRIFTLIGHT_FLEET_FILE, else the packaged one)")
]


def _spec(settings: Settings, path: Path | None) -> Any:
    from data_contracts.contract import load_contract
    from data_contracts.fleet import load_fleet

    try:
        return load_fleet(path or settings.fleet_file, load_contract())
    except (OSError, ValueError) as exc:
        typer.echo(f"fleet file: {exc}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None


@app.command()
def train(
    workers: Annotated[int, typer.Option(help="worker processes that fit segment models")] = 2,
    limit: Annotated[int | None, typer.Option(help="only the N largest segments (a quick try)")] = None,
    fleet: FleetOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Train and register one model per segment and the global model, in parallel."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from core.registry import registry_from_settings
    from data_contracts.contract import load_contract
    from training.fleet import train_fleet

    settings = _settings(home=home)
    settings.home.mkdir(parents=True, exist_ok=True)
    spec = _spec(settings, fleet)
    registry = registry_from_settings(settings)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), disable=as_json, transient=False
    ) as bar:
        task = bar.add_task(f"fleet {spec.name}: segments", total=None)

        def step(out: Any) -> None:
            bar.update(task, advance=1, description=f"fleet {spec.name}: {out.segment:<9} {out.status}")

        result = train_fleet(load_contract(), registry, spec, workers=workers, limit=limit, on_progress=step)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2, default=str))
        return
    g = result.global_model
    trained = [s for s in result.segments if s["status"] == "trained"]
    lines = [
        f"fleet {result.fleet}: {result.models_registered} models registered ({len(trained)} segments + global) "
        f"in {result.seconds} s with {result.workers} workers",
        f"  {result.beat_baseline} of {len(trained)} segment models beat their baseline and serve their segment "
        f"(alias {spec.alias})",
        f"  global {g['name']} v{g['version']}: ROC AUC {g['roc_auc']:.3f} vs baseline {g['baseline_roc_auc']:.3f}; "
        f"serves every other segment ({len(result.fell_back)} listed below + any segment not seen in training)",
        "  fell back to the global model:",
        *[f"    {s:<9} {why}" for s, why in sorted(result.fell_back.items())],
    ]
    typer.echo("\n".join(lines))


def _print_run(doc: dict[str, Any], top: int) -> str:
    s = doc["summary"]
    c = s["counts"]
    lines = [
        f"fleet {doc['fleet']} on {doc['day']} ({doc.get('engine', 'local')}): {s['models']} models — "
        f"red {c['red']}, yellow {c['yellow']}, green {c['green']}, not_enough_data {c['not_enough_data']}",
        f"  budget: {s['discoveries']} discoveries among {s['tests']} tests at FDR {s['fdr']}",
        "  worst first (impact = rows x estimated ROC AUC loss):",
    ]
    for v in doc["verdicts"][:top]:
        why = v["reasons"][0]["message"] if v["reasons"] else (v["notes"][0] if v["notes"] else "")
        lines.append(
            f"    {v['status']:<15} {v['segment']:<9} {v['rows']:>6} rows/{v['days']}d  impact {v['impact']:8.2f}  {why}"
        )
    shadowed = [v for v in doc["verdicts"] if v.get("shadow")]
    if shadowed:
        from monitoring.shadow import describe

        lines.append(f"  champion vs challenger in shadow ({len(shadowed)} models, the run's whole window):")
        lines += [f"    {v['segment']:<9} v{v['version']} vs {describe(v['shadow'])}" for v in shadowed]
    return "\n".join(lines)


@app.command()
def monitor(
    day: Annotated[str, typer.Option("--day", help="last local day of the windows (YYYY-MM-DD)")],
    engine: Annotated[str, typer.Option(help="local (pandas, one pass) or spark")] = "local",
    master: Annotated[str, typer.Option(help="Spark master URL (--engine spark): local[2], spark://host:7077, ...")] = "local[2]",
    by: Annotated[str, typer.Option(help="which clock cuts the days: event_time or served_at")] = "event_time",
    top: Annotated[int, typer.Option(help="verdicts to print")] = 15,
    retrain_: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="then run one retrain cycle (the queue's K best red models; see `fleet retrain`) and exit with its code",
        ),
    ] = False,
    budget: BudgetOpt = None,
    fleet: FleetOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Judge every fleet model's window from one pass over the log; record one fleet run."""
    from datetime import date

    from core.fleet import FleetRunStore, load_refs
    from core.fleet_monitor import run_fleet
    from core.logstore import log_store_from_settings
    from core.registry import registry_from_settings
    from data_contracts.contract import load_contract
    from monitoring.policy import load_policy

    if engine not in ("local", "spark"):
        typer.echo(f"--engine: expected local or spark, got {engine!r}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    if by not in ("event_time", "served_at"):
        typer.echo(f"--by: expected event_time or served_at, got {by!r}", err=True)
        raise typer.Exit(ExitCode.USAGE)
    try:
        d = date.fromisoformat(day)
    except ValueError:
        typer.echo(f"--day: expected a date YYYY-MM-DD, got {day!r}", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    settings = _settings(home=home)
    spec = _spec(settings, fleet)
    contract = load_contract()
    try:
        refs = load_refs(registry_from_settings(settings), spec, settings.home / "fleet-cache", contract)
    except LookupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(ExitCode.FAILED) from None
    store = log_store_from_settings(settings, contract)
    counter = None
    session = None
    if engine == "spark":
        from core.spark_engine import SparkCounter, spark_session

        session = spark_session(master)
        counter = SparkCounter(session, settings.resolved_log_store_url, refs, contract, by=by)  # type: ignore[arg-type]
    try:
        res = run_fleet(
            refs=refs, spec=spec, policy=load_policy(), store=store, day=d, timezone=contract.timezone, by=by,  # type: ignore[arg-type]
            engine=engine, counter=counter, runs=FleetRunStore(settings.resolved_log_store_url),
            reports_dir=settings.home / "reports",
        )  # fmt: skip
    finally:
        if session is not None:
            from core.spark_engine import stop_session

            stop_session(session)
    doc = res.as_dict()
    text = _print_run(doc, top) + f"\n  read {res.rows_read} rows; count {res.seconds['count']} s, judge {res.seconds['judge']} s"
    code = ExitCode.OK  # the light is not an exit code; a retrain cycle's outcome is
    if retrain_:
        cycle = _cycle(settings, spec, budget=budget, dry_run=False, as_json=as_json)
        doc = {**doc, "retrain_cycle": cycle}
        text += "\n" + _print_cycle(cycle)
        code = cycle_exit(cycle)
    _out(doc, as_json, text)
    if code != ExitCode.OK:
        raise typer.Exit(code)


@app.command()
def status(
    top: Annotated[int, typer.Option(help="verdicts to print")] = 15,
    fleet: FleetOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The latest fleet run: counts by colour and the worst models first."""
    from core.fleet import FleetRunStore

    settings = _settings(home=home)
    spec = _spec(settings, fleet)
    latest = FleetRunStore(settings.resolved_log_store_url).latest(spec.name)
    if latest is None:
        typer.echo("no fleet run yet: run `driftlight fleet monitor --day YYYY-MM-DD`", err=True)
        raise typer.Exit(ExitCode.FAILED)
    from core.fleet_queue import queue_summary

    queue = queue_summary(settings.resolved_log_store_url, spec.name)
    doc = {**latest, "day": latest["window_end"], "summary": latest["summary"]}
    text = _print_run(doc, top) + f"\n  run {latest['run_id']} finished {latest['finished_at']}\n" + _print_queue(queue)
    _out({**latest, "retrain_queue": queue}, as_json, text)


def _print_queue(q: dict[str, Any]) -> str:
    st = q["states"]
    lines = [
        f"retrain queue: {len(q['items'])} models — "
        + ", ".join(f"{k} {v}" for k, v in st.items())
        + " (ranked by expected gain x traffic = window rows x ROC AUC loss)"
    ]
    for i in q["items"]:
        lines.append(
            f"  {i['rank']:>3}. {i['segment']:<9} {i['colour']:<6} v{i['version'] or '-':<4}"
            f" gain x traffic {i['gain_x_traffic']:8.2f}"
            f"  {i['state']:<10} {i['reason'][:110]}"
        )
    c = q["last_cycle"]
    if c is not None:
        acts = [d for d in c["decisions"] if d["action"] in ("promoted", "refused", "over_budget", "retraining")]
        lines.append(f"  last cycle {c['at']} on run {c['run_id']} (window {c['window_end']}), budget {c['budget']}:")
        lines += [f"    {d['action']:<11} {d['segment']:<9} {d['reason'][:120]}" for d in acts] or ["    nothing to retrain"]
    return "\n".join(lines)


def _print_cycle(c: dict[str, Any]) -> str:
    head = (
        f"retrain cycle{' (dry run)' if c['dry_run'] else ''} on run {c['run_id']} (window {c['window_end']}), "
        f"budget {c['budget']}: promoted {c['promoted']}, refused {c['refused']} in {c['seconds']} s"
    )
    return "\n".join([head, *[f"  {d['action']:<11} {d['segment']:<9} {d['reason'][:140]}" for d in c["decisions"]]])


def cycle_exit(cycle: dict[str, Any]) -> ExitCode:
    """A retrain cycle's exit code (README "Exit codes"): 1 if a model's retrain crashed, else 4 if a
    retrained model was refused (the gate, too few labels), else 0 (all promoted, or none was due;
    a model over the budget stays queued and is not a refusal)."""
    if cycle.get("failed"):
        return ExitCode.FAILED
    return ExitCode.REFUSED if cycle["refused"] else ExitCode.OK


def _cycle(settings: Settings, spec: Any, *, budget: int | None, dry_run: bool, as_json: bool) -> dict[str, Any]:
    from core.fleet import FleetRunStore
    from core.fleet_queue import QueueStore
    from core.logstore import log_store_from_settings
    from core.registry import registry_from_settings
    from core.runs import RunStore
    from data_contracts.contract import load_contract
    from monitoring.policy import load_policy
    from training.fleet_retrain import FleetRetrainConfig, run_cycle
    from training.gate import GateConfig

    contract = load_contract()
    url = settings.resolved_log_store_url
    latest = FleetRunStore(url).latest(spec.name)
    if latest is None:
        typer.echo("no fleet run yet: run `driftlight fleet monitor --day YYYY-MM-DD` first", err=True)
        raise typer.Exit(ExitCode.FAILED)
    policy = load_policy()
    res = run_cycle(
        contract, registry_from_settings(settings), log_store_from_settings(settings, contract), RunStore(url),
        QueueStore(url), spec, latest, FleetRetrainConfig.from_settings(settings, budget=budget),
        GateConfig.from_settings(settings),
        dry_run=dry_run, owner=policy.owner, webhook_url=policy.webhook_url,
        retrain_when_data_broken=policy.retrain_when_data_broken,
        echo=(lambda m: None) if as_json else (lambda m: typer.echo(m, err=True)),
    )  # fmt: skip
    return res.as_dict()


@app.command()
def retrain(
    budget: BudgetOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what the cycle would do; change nothing")] = False,
    fleet: FleetOpt = None,
    home: HomeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One retrain cycle on the latest fleet run: queue red models, notify yellow owners, retrain the
    K best (expected gain x traffic) through the gate, promote the winners.

    Exits 0 when every retrained model was promoted (or none was due), 4 when one was refused, 1 when
    one's retrain crashed (its champion unchanged); the JSON says which.
    """
    settings = _settings(home=home)
    spec = _spec(settings, fleet)
    cycle = _cycle(settings, spec, budget=budget, dry_run=dry_run, as_json=as_json)
    _out(cycle, as_json, _print_cycle(cycle))
    if (code := cycle_exit(cycle)) != ExitCode.OK:
        raise typer.Exit(code)


def _out(data: Any, as_json: bool, text: str) -> None:
    typer.echo(json.dumps(data, indent=2, default=str) if as_json else text)
