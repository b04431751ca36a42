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

from core.settings import Settings

app = typer.Typer(add_completion=False, no_args_is_help=True, help="A fleet of models: one per segment plus a global one.")

HomeOpt = Annotated[Path | None, typer.Option("--home", help="folder for the embedded stores (DRIFTLIGHT_HOME)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]
FleetOpt = Annotated[
    Path | None, typer.Option("--fleet", help="fleet file (default DRIFTLIGHT_FLEET_FILE, else the packaged one)")
]


def _settings(**overrides: Any) -> Settings:
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            typer.echo(f"invalid setting DRIFTLIGHT_{name.upper()}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(2) from None


def _spec(settings: Settings, path: Path | None) -> Any:
    from data_contracts.contract import load_contract
    from data_contracts.fleet import load_fleet

    try:
        return load_fleet(path or settings.fleet_file, load_contract())
    except (OSError, ValueError) as exc:
        typer.echo(f"fleet file: {exc}", err=True)
        raise typer.Exit(2) from None


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
