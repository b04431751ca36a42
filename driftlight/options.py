"""What every CLI command shares: the settings built from its options, with errors that name the
variable, and the libraries' log level those settings give the process."""

from __future__ import annotations

import logging
import os
from typing import Any

import typer

from core.exit_codes import ExitCode
from core.settings import Settings

# Libraries that log INFO lines a person running a command did not ask for (MLflow's store set-up and
# registrations, alembic's migrations, urllib3 / httpx requests, Spark's py4j gateway...). Each is set
# to `Settings.log_level` (WARNING by default): a cron mail or CI log then holds driftlight's own
# lines and real warnings only.
LIBRARY_LOGGERS = (
    "mlflow",
    "alembic",
    "sqlalchemy.engine",
    "urllib3",
    "httpx",
    "httpcore",
    "py4j",
    "great_expectations",
    "evidently",
    "matplotlib",
)


def settings_from_options(**overrides: Any) -> Settings:
    """The one `Settings` of a CLI process: the environment, overridden by the options that were given.

    Every command builds its settings here, so this is also where their `log_level` is applied to the
    libraries (`apply_log_level`)."""
    from pydantic import ValidationError

    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            typer.echo(f"invalid setting DRIFTLIGHT_{name.upper()}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
    apply_log_level(settings.log_level)
    return settings


def apply_log_level(level: str) -> None:
    """Set the libraries' loggers to `level` (a logging level name) in this process and its children.

    MLflow configures its own stderr handler when first imported, at MLFLOW_LOGGING_LEVEL: set here
    before any import of it (and inherited by `serve`'s workers and a spawned retrain); its prints
    around the logger follow the same level (core.registry.MlflowRegistry)."""
    os.environ["MLFLOW_LOGGING_LEVEL"] = level
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(level)
