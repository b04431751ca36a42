"""The exit codes of every `driftlight` command: one table for whoever scripts it (cron, CI, Airflow).

The CLI exits with these; the admin endpoints read them back from the `driftlight promote|rollback`
they run (service/routes/admin.py: `REFUSED` is a 409 with the gate's reasons). README "Exit codes"
prints the same table, and tests/integration/test_exit_codes.py holds each code to a real command.

A monitor's light is not an exit code: green, yellow and red all exit 0 (the verdict is the
output, and `--json` carries it). `3` predates this table (README "Installing" promised it for a
missing extra) and keeps its meaning.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    """Done: trained, promoted, rolled back, judged (any colour), or nothing to do (no pending
    retrain request, in cooldown, `--if-missing` with a champion, `--dry-run`)."""
    FAILED = 1
    """The command ran and failed: the data breaks the contract, a retrain crashed, a replay lost
    requests, a drill was not caught. The champion is unchanged."""
    USAGE = 2
    """Bad usage or configuration, refused before any work: an option or DRIFTLIGHT_* setting, an
    unknown version or drill, a store that cannot be opened (typer's own usage errors are 2 too)."""
    MISSING_EXTRA = 3
    """This install lacks the extra the command needs (`pip install 'driftlight[monitor]'`)."""
    REFUSED = 4
    """No challenger was promoted: the gate refused it, or it could not be trained or judged (too
    few labels, a broken contract). The champion is unchanged; the reasons are in the output."""


def help_table() -> str:
    """The codes as one line each, for `driftlight --help`."""
    words = {
        ExitCode.OK: "success, or nothing to do (any light: a red verdict is not a failure)",
        ExitCode.FAILED: "failure (the champion is unchanged)",
        ExitCode.USAGE: "bad usage or configuration",
        ExitCode.MISSING_EXTRA: "this install lacks the extra the command needs",
        ExitCode.REFUSED: "refused: the challenger was not promoted (gate, too few labels)",
    }
    return "Exit codes: " + "; ".join(f"{int(c)} {w}" for c, w in words.items()) + "."
