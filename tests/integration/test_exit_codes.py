"""README "Exit codes", each from a real command (typer's CliRunner, in process, on a throwaway home).

Before the table a refused `driftlight promote` exited 3, the code a missing extra exits with, and a
refused `driftlight retrain` exited 0 like a promotion: a cron job could tell neither apart. Covered
elsewhere: 2 (tests/integration/test_cli.py), 3 (tests/unit/test_install_split.py), a `promote` the
gate refuses (tests/integration/test_closed_loop.py::test_gate_refuses_a_worse_challenger_and_the_champion_stays).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from core.exit_codes import ExitCode
from driftlight.cli import app

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_the_codes_are_distinct_and_the_readme_and_help_list_each() -> None:
    assert {c.name: int(c) for c in ExitCode} == {"OK": 0, "FAILED": 1, "USAGE": 2, "MISSING_EXTRA": 3, "REFUSED": 4}
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("### Exit codes", 1)[1].split("\n### ", 1)[0]
    assert re.findall(r"^\| `(\d)` \|", section, flags=re.M) == ["0", "1", "2", "3", "4"]
    r = runner.invoke(app, ["--help"])
    text = " ".join(re.sub(r"[│╭╮╰╯─]", " ", r.output).split())  # rich wraps the epilog
    assert r.exit_code == 0 and "Exit codes: 0 success" in text and "3 this install lacks the extra" in text
    assert "4 refused: the challenger was not promoted" in text


def test_retrain_on_a_home_without_labels_is_refused_with_4(tmp_path: Path) -> None:
    r = runner.invoke(app, ["retrain", "--home", str(tmp_path), "--json"])
    assert r.exit_code == ExitCode.REFUSED == 4, r.output
    out = json.loads(r.stdout)
    assert out["status"] == "refused" and out["reasons"][0].startswith("no labelled predictions in the log yet")


def test_retrain_pending_with_no_request_is_nothing_to_do_and_0(tmp_path: Path) -> None:
    r = runner.invoke(app, ["retrain", "--pending", "--home", str(tmp_path), "--json"])
    assert r.exit_code == ExitCode.OK == 0, r.output
    assert json.loads(r.stdout)["status"] == "nothing_to_do"


def test_a_retrain_that_crashes_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: Any, **kw: Any) -> None:
        raise MemoryError("the fit ran out of memory")

    monkeypatch.setattr("training.retrain.retrain", crash)
    r = runner.invoke(app, ["retrain", "--home", str(tmp_path)])
    assert r.exit_code == ExitCode.FAILED == 1, r.output
    assert "retrain failed: MemoryError" in r.output and "the champion is unchanged" in r.output


def red(segment: str, impact: float) -> dict[str, Any]:
    return {
        "name": f"flights-late--{segment}", "version": "1", "segment": segment, "status": "red", "rows": 100,
        "auc_loss": impact / 100, "impact": impact, "reasons": [{"message": "ROC AUC fell"}],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("outcomes", "code"),
    [
        ({"A": "promoted", "B": "promoted"}, ExitCode.OK),
        ({"A": "promoted", "B": "refused"}, ExitCode.REFUSED),
        ({"A": "refused", "B": "crash"}, ExitCode.FAILED),
    ],
)
def test_fleet_retrain_exits_with_its_cycles_outcome(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, outcomes: dict[str, str], code: ExitCode
) -> None:
    """The real `driftlight fleet retrain` on a home holding one fleet run with two red routes; only
    the per-route fit and gate (`retrain_segment`) is replaced by the outcome under test."""
    from core.fleet import FleetRunStore
    from core.settings import Settings
    from training.fleet_retrain import SegmentRetrain

    FleetRunStore(Settings(home=tmp_path).resolved_log_store_url).record(
        "routes", "2013-05-31", "local", {}, [red("A", 9.0), red("B", 5.0)]
    )

    def fake(*args: Any, model_name: str, **kw: Any) -> SegmentRetrain:
        outcome = outcomes[model_name.rsplit("--", 1)[1]]
        if outcome == "crash":
            raise RuntimeError("the worker died")
        return SegmentRetrain(model_name, outcome, [f"test: {outcome}"], "1", "2" if outcome == "promoted" else None)

    monkeypatch.setattr("training.fleet_retrain.retrain_segment", fake)
    dry = runner.invoke(app, ["fleet", "retrain", "--dry-run", "--budget", "2", "--home", str(tmp_path), "--json"])
    assert dry.exit_code == ExitCode.OK, dry.output  # a plan is not an outcome
    r = runner.invoke(app, ["fleet", "retrain", "--budget", "2", "--home", str(tmp_path), "--json"])
    assert r.exit_code == code, r.output
    cycle = json.loads(r.stdout)
    decided = sorted(d["action"] for d in cycle["decisions"] if d["action"] not in ("queued", "notified"))
    assert decided == sorted("refused" if o == "crash" else o for o in outcomes.values())
    assert cycle["failed"] == list(outcomes.values()).count("crash")
