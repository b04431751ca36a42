"""Every drill in the catalogue, through the real API and monitor, meets its expectation.

The service runs in process over the session's trained champion, with its own log; each drill
replays its faulty traffic, sends labels where it needs them, and the monitor judges exactly that
traffic. The no-drift control also bounds the false-alarm rate over 20 independent windows.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from core.monitor_job import Monitor
from drills.calibrate import judge, log_frame
from drills.catalogue import BY_NAME, DRILLS
from drills.runner import control_traffic, run_drill
from service.app import create_app


@pytest.fixture(scope="module")
def live(trained, tmp_path_factory):
    settings, _ = trained
    home = tmp_path_factory.mktemp("drills")
    s = settings.model_copy(
        update={
            "home": home,
            "log_store_url": f"sqlite:///{home / 'log.db'}",
            "tracking_uri": settings.resolved_tracking_uri,
            "artifact_root": settings.resolved_artifact_root,
            "log_flush_interval": 0.05,
        }
    )
    with TestClient(create_app(s)) as client:
        yield client, Monitor(s)


def test_the_catalogue_covers_the_issue():
    wanted = {
        "no-drift", "heat-wave", "new-carrier", "unit-change", "missing-spike", "stuck-sensor", "utc-skew",
        "concept-drift", "label-drift", "schema-change", "gradual-drift", "outlier-burst", "outlier-hiding-shift",
    }  # fmt: skip
    assert wanted <= set(BY_NAME)
    for d in DRILLS:
        assert d.question and d.injects and d.response and d.phases


@pytest.mark.parametrize("name", [d.name for d in DRILLS])
def test_drill_meets_its_expectation(live, flights, name):
    client, monitor = live
    res = run_drill(BY_NAME[name], monitor=monitor, http=client, flights=flights, echo=lambda m: None)
    assert res.passed, "\n".join(res.timeline)
    drill = BY_NAME[name]
    for phase, got in zip(drill.phases, res.phases, strict=True):
        assert got.status in phase.expect
        if phase.rejected:
            assert got.rejected == got.sent > 0 and got.rows == 0
        else:
            assert got.rows == got.sent  # the monitor judged exactly the drill's traffic


def test_gradual_drift_warns_before_it_alarms_and_holds_red(live, flights):
    client, monitor = live
    res = run_drill(BY_NAME["gradual-drift"], monitor=monitor, http=client, flights=flights, seed=1, echo=lambda m: None)
    shown = [p.status for p in res.phases]
    assert shown.index("yellow") < shown.index("red")
    assert res.phases[-1].raw_status == "green" and res.phases[-1].status == "red"  # calm, but held


def test_no_drift_false_alarm_rate_is_bounded(live, flights, bundle, contract):
    """TARGETS: <= 5 % of no-drift windows non-green at 2,000 rows. 20 windows: at most 1."""
    _, monitor = live
    control = control_traffic(contract, flights, bundle.metadata)
    statuses = []
    for i in range(20):
        w = control.sample(2000, random_state=10_000 + i)
        verdict, _ = judge(monitor.ctx, contract, monitor.policy, log_frame(bundle, contract, w))
        statuses.append(verdict.status)
    assert sum(s != "green" for s in statuses) <= 1, statuses
