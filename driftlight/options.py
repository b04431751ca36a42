"""What every CLI command shares: the settings built from its options, with errors that name the variable."""

from __future__ import annotations

from typing import Any

import typer

from core.exit_codes import ExitCode
from core.settings import Settings


def settings_from_options(**overrides: Any) -> Settings:
    """The one `Settings` of a CLI process: the environment, overridden by the options that were given."""
    from pydantic import ValidationError

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "settings"
            typer.echo(f"invalid setting DRIFTLIGHT_{name.upper()}: {err['msg']} (got {err.get('input')!r})", err=True)
        raise typer.Exit(ExitCode.USAGE) from None
