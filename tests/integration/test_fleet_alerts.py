"""The fleet's Prometheus alerts (deploy/prometheus/alerts.yml, group driftlight-fleet) fire when
they should and stay quiet when they should not: `promtool test rules` on synthetic series of the
fleet gauges (service/metrics.py). Skips without promtool (apt-get install prometheus)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"
DAY = 24 * 3600


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.skip("promtool missing: apt-get install -y --no-install-recommends prometheus")
    return exe


def runs(first: float, every_h: int, n: int, step_h: int = 1) -> str:
    """The run timestamp as scraped hourly: a new fleet run every `every_h` hours."""
    vals = [first + (h // every_h) * every_h * 3600 for h in range(0, n, step_h)]
    return " ".join(f"{v:.0f}" for v in vals)


def check(
    tmp_path: Path, series: list[dict[str, str]], alerts: list[dict], interval: str = "1h"
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of the real rules (their annotations left out: this is about when they
    fire; test_compose_files checks every alert has a summary and description)."""
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for g in rules["groups"]:
        for r in g["rules"]:
            r.pop("annotations", None)
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules, sort_keys=False), encoding="utf-8")
    doc = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [{"interval": interval, "input_series": series, "alert_rule_test": alerts}],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return subprocess.run(
        [promtool(), "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_fleet_rules_are_valid() -> None:
    r = subprocess.run([promtool(), "check", "rules", str(ALERTS)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    groups = {g["name"]: g for g in yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]}
    names = {rule["alert"] for rule in groups["driftlight-fleet"]["rules"]}
    assert {"DriftlightFleetRedTwoRuns", "DriftlightFleetRetrainRefused"} <= names


def test_red_on_two_runs_in_a_row_fires_and_red_on_one_run_does_not(tmp_path: Path) -> None:
    inst = '{instance="api:8000", job="driftlight-api"}'
    red = '{colour="red", instance="api:8000", job="driftlight-api"}'
    ts = runs(1_700_000_000, 24, 60)
    series = [
        # red on the run at hour 0 and on the run at hour 24; green from the run at hour 48
        {"series": f"driftlight_fleet_models{red}", "values": "2x47 0x12"},
        {"series": f"driftlight_fleet_run_timestamp_seconds{inst}", "values": ts},
    ]
    fired = [{"exp_labels": {"severity": "critical", "instance": "api:8000", "colour": "red", "job": "driftlight-api"}}]
    alerts = [
        {"eval_time": "20h", "alertname": "DriftlightFleetRedTwoRuns", "exp_alerts": []},  # one run only
        {"eval_time": "30h", "alertname": "DriftlightFleetRedTwoRuns", "exp_alerts": fired},  # the second run is red too
        {"eval_time": "50h", "alertname": "DriftlightFleetRedTwoRuns", "exp_alerts": []},  # green again
    ]
    r = check(tmp_path, series, alerts)
    assert r.returncode == 0, r.stdout + r.stderr


def test_red_on_alternate_runs_is_not_two_in_a_row(tmp_path: Path) -> None:
    inst = '{instance="api:8000", job="driftlight-api"}'
    red = '{colour="red", instance="api:8000", job="driftlight-api"}'
    series = [
        {"series": f"driftlight_fleet_models{red}", "values": "1x23 0x23 1x23"},  # red, green, red
        {"series": f"driftlight_fleet_run_timestamp_seconds{inst}", "values": runs(1_700_000_000, 24, 72)},
    ]
    alerts = [{"eval_time": f"{h}h", "alertname": "DriftlightFleetRedTwoRuns", "exp_alerts": []} for h in (20, 30, 50, 60, 70)]
    r = check(tmp_path, series, alerts)
    assert r.returncode == 0, r.stdout + r.stderr


def test_refused_retrains_alert_while_the_last_cycle_says_so(tmp_path: Path) -> None:
    refused = '{outcome="refused", instance="api:8000", job="driftlight-api"}'
    series = [{"series": f"driftlight_fleet_retrain_decisions{refused}", "values": "0x3 2x3 0x3"}]
    labels = {"outcome": "refused", "instance": "api:8000", "job": "driftlight-api", "severity": "warning"}
    alerts = [
        {"eval_time": "1h", "alertname": "DriftlightFleetRetrainRefused", "exp_alerts": []},
        {"eval_time": "5h", "alertname": "DriftlightFleetRetrainRefused", "exp_alerts": [{"exp_labels": labels}]},
        {"eval_time": "8h", "alertname": "DriftlightFleetRetrainRefused", "exp_alerts": []},
    ]
    r = check(tmp_path, series, alerts)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_fleet_run_older_than_a_day_alerts_after_ten_minutes(tmp_path: Path) -> None:
    age = '{instance="api:8000", job="driftlight-api"}'
    series = [{"series": f"driftlight_fleet_run_age_seconds{age}", "values": "93000+300x12"}]  # 25.8h, +5 min a scrape
    labels = {"instance": "api:8000", "job": "driftlight-api", "severity": "warning"}
    alerts = [
        {"eval_time": "10m", "alertname": "DriftlightFleetRunStale", "exp_alerts": []},  # 26.0h: not yet over
        {"eval_time": "20m", "alertname": "DriftlightFleetRunStale", "exp_alerts": []},  # over for 5 min: pending
        {"eval_time": "30m", "alertname": "DriftlightFleetRunStale", "exp_alerts": [{"exp_labels": labels}]},
    ]
    r = check(tmp_path, series, alerts, interval="5m")
    assert r.returncode == 0, r.stdout + r.stderr
