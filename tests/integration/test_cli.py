"""The CLI as a person meets it: readable failures, machine-readable success."""

from __future__ import annotations

import json
from datetime import date

import pytest
from typer.testing import CliRunner

from core.registry import InMemoryRegistry
from driftlight.cli import app
from training.train import TrainConfig, train

runner = CliRunner()


def test_every_command_has_help():
    for cmd in ("train", "serve", "replay", "monitor", "demo", "retrain", "promote", "rollback", "models", "drill"):
        r = runner.invoke(app, [cmd, "--help"])
        assert r.exit_code == 0, (cmd, r.output)
        assert cmd == "serve" or "--json" in r.output, cmd


def test_bad_setting_names_the_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTLIGHT_PORT", "eighty")
    r = runner.invoke(app, ["serve", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "DRIFTLIGHT_PORT" in r.output and "eighty" in r.output


def test_prod_profile_refuses_the_dev_secret(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTLIGHT_PROFILE", "prod")
    r = runner.invoke(app, ["serve", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "DRIFTLIGHT_ID_SECRET" in r.output


def test_bad_dates_are_explained(tmp_path):
    r = runner.invoke(app, ["train", "--from", "2013-13-01", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "--from: expected a date YYYY-MM-DD" in r.output
    r = runner.invoke(app, ["train", "--from", "2013-03-01", "--to", "2013-01-01", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "before --from" in r.output


def test_train_json_on_a_short_window(tmp_path):
    r = runner.invoke(
        app, ["train", "--from", "2013-01-01", "--to", "2013-01-28", "--validation-days", "7", "--home", str(tmp_path), "--json"]
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)  # --json: stdout is exactly one JSON document (logs go to stderr)
    assert out["version"] == "1" and out["window"] == ["2013-01-01", "2013-01-28"]
    assert out["model_metrics"]["roc_auc"] > 0.5


def test_contract_failure_stops_training_with_a_readable_summary(contract, flights):
    from data_contracts.batch import ContractViolation

    frame = flights.copy()
    jan = frame["time_hour"] < "2013-01-10"
    frame.loc[jan & (frame.index % 50 == 0), "temp"] = 451.0  # Fahrenheit 451: out of the contract's range
    frame.loc[frame.index[:3], "origin"] = "BOS"
    registry = InMemoryRegistry()
    with pytest.raises(ContractViolation) as exc:
        train(contract, registry, TrainConfig(end=date(2013, 1, 31), validation_days=7), frame=frame)
    text = str(exc.value)
    assert "temp: expected values between -40.0 and 130.0" in text and "451.0" in text
    assert "origin: expected values in the contract's 3 categories" in text
    assert registry.versions("flights-late") == []  # nothing registered


def test_drill_list_and_unknown_drill():
    r = runner.invoke(app, ["drill", "--list", "--json"])
    assert r.exit_code == 0 and {d["name"] for d in json.loads(r.output)} >= {"no-drift", "schema-change", "gradual-drift"}
    r = runner.invoke(app, ["drill", "no-such-drill"])
    assert r.exit_code == 2 and "unknown drill" in r.output


def test_rollback_without_a_previous_champion_is_explained(tmp_path):
    r = runner.invoke(app, ["rollback", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "nothing to roll back to" in r.output
    r = runner.invoke(app, ["promote", "7", "--home", str(tmp_path)])
    assert r.exit_code == 2 and "not registered" in r.output
