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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHORT_TRAIN = ["train", "--from", "2013-01-01", "--to", "2013-01-28", "--validation-days", "7"]
MLFLOW_CHATTER = re.compile(r"^(\S+ \S+ INFO |Successfully registered model|Created version)", re.M)


def start(args: list[str], home: Path, **env: str) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DRIFTLIGHT_LOG_LEVEL", "MLFLOW_LOGGING_LEVEL")}
    return subprocess.Popen(
        [sys.executable, "-m", "driftlight.cli", *args, "--home", str(home)],
        cwd=ROOT,
        env={**base, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished(proc: subprocess.Popen[str]) -> subprocess.CompletedProcess[str]:
    try:
        out, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()  # this test's own child, by its handle
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def cli(args: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return finished(start(args, home, **env))


def test_train_writes_no_library_info_to_stderr_unless_asked(tmp_path: Path) -> None:
    # Two trainings, each in its own home: side by side (one per core), not one after the other.
    quiet_proc, loud_proc = start(SHORT_TRAIN, tmp_path / "quiet"), start(["-v", *SHORT_TRAIN], tmp_path / "loud")
    try:
        quiet, loud = finished(quiet_proc), finished(loud_proc)
    finally:
        for proc in (quiet_proc, loud_proc):
            if proc.poll() is None:  # a timeout above: stop the other one too, by its handle
                proc.kill()
                proc.communicate()
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
