"""A command's stderr is driftlight's own words and real warnings: the libraries' INFO lines (MLflow's
store set-up, "Successfully registered model", "Created version") only with `-v` or
DRIFTLIGHT_LOG_LEVEL=INFO. A cron mail used to open with them.

Real processes (`python -m driftlight.cli`): MLflow configures its logging when first imported, which
an in-process runner would have done long before the command starts.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHORT_TRAIN = ["train", "--from", "2013-01-01", "--to", "2013-01-28", "--validation-days", "7"]
TIMEOUT_S = 600
MLFLOW_CHATTER = re.compile(r"^(\S+ \S+ INFO |Successfully registered model|Created version)", re.M)


def start(args: list[str], home: Path, **env: str) -> subprocess.Popen[str]:
    """The command in its own process; its stdout and stderr go to files beside `home` (a pipe
    nobody reads while the other process is awaited could fill and stall it)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DRIFTLIGHT_LOG_LEVEL", "MLFLOW_LOGGING_LEVEL")}
    home.parent.mkdir(parents=True, exist_ok=True)
    with open(home.with_suffix(".out"), "w") as out, open(home.with_suffix(".err"), "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "driftlight.cli", *args, "--home", str(home)],
            cwd=ROOT,
            env={**base, "PYTHONPATH": str(ROOT), **env},
            stdout=out,
            stderr=err,
            text=True,
        )


def finished(proc: subprocess.Popen[str], home: Path, deadline: float) -> subprocess.CompletedProcess[str]:
    """Wait for `proc` until `deadline` (time.monotonic()); its output from the files `start` opened."""
    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    out, err = (home.with_suffix(s).read_text() for s in (".out", ".err"))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = start(args, home, **env)
    try:
        return finished(proc, home, time.monotonic() + TIMEOUT_S)
    finally:
        stop(proc)


def stop(proc: subprocess.Popen[str]) -> None:
    """Stop this test's own child, by its handle, if it still runs (a timeout or an error above)."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_train_writes_no_library_info_to_stderr_unless_asked(tmp_path: Path) -> None:
    # Two trainings, each in its own home: side by side (one per core), not one after the other,
    # within one deadline.
    homes = {"quiet": tmp_path / "quiet", "loud": tmp_path / "loud"}
    procs: dict[str, subprocess.Popen[str]] = {}
    try:
        procs["quiet"] = start(SHORT_TRAIN, homes["quiet"])
        procs["loud"] = start(["-v", *SHORT_TRAIN], homes["loud"])
        deadline = time.monotonic() + TIMEOUT_S
        quiet, loud = (finished(procs[k], homes[k], deadline) for k in ("quiet", "loud"))
    finally:
        for proc in procs.values():
            stop(proc)
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert "flights-late v1 trained on 2013-01-01..2013-01-28" in quiet.stdout  # driftlight's own lines stay
    assert not MLFLOW_CHATTER.search(quiet.stderr), quiet.stderr[-2000:]
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert re.search(r"^\S+ \S+ INFO mlflow\.", loud.stderr, re.M), loud.stderr[-2000:]
    assert "Created version '1' of model 'flights-late'" in loud.stderr


def test_the_setting_brings_them_back_too_and_a_bad_level_is_named(tmp_path: Path) -> None:
    assert not MLFLOW_CHATTER.search(cli(["models"], tmp_path / "a").stderr)  # a fresh MLflow store: set-up lines
    info = cli(["models"], tmp_path / "b", DRIFTLIGHT_LOG_LEVEL="info")
    assert info.returncode == 0 and "INFO mlflow.store.db.utils: Creating initial MLflow database tables" in info.stderr
    bad = cli(["models"], tmp_path / "c", DRIFTLIGHT_LOG_LEVEL="chatty")
    assert bad.returncode == 2 and "invalid setting DRIFTLIGHT_LOG_LEVEL" in bad.stderr, bad.stderr
