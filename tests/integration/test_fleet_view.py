"""The fleet on /metrics and on the status page: the latest fleet run from the run store, read once
per TTL, as gauges with bounded labels and as an escaped HTML section.

The run is recorded through the real `FleetRunStore` (SQLite) from `ModelVerdict` objects, as
`driftlight fleet monitor` records it; the app is the real one with a fleet file and an empty
registry (the fallback serves: the fleet view does not need a model). Every figure asserted below
is read back from the exposition text or the HTML, and compared with what was recorded.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.fleet import FleetRunStore
from core.registry import InMemoryRegistry
from core.settings import Settings
from data_contracts.fleet import default_fleet_path
from monitoring.fleet import ModelVerdict
from monitoring.policy import Reason
from service.app import create_app
from service.fleet_view import FleetRunCache, queue_figures
from service.metrics import FLEET_TOP

HOSTILE = "<script>alert(1)</script>"


def verdicts() -> list[dict[str, Any]]:
    """Worst first, as judge_fleet orders them: 2 red, 3 yellow, 12 green, 2 not_enough_data."""
    red = Reason("missing_rate_increase", "pressure", 1.0, 0.2, "critical", "pressure missing 100 %", "data_broken")
    warm = Reason("psi", "temp", 0.6, 0.25, "warning", f"temp moved {HOSTILE}", "world_moved")
    out = []
    spec = [("red", 2), ("yellow", 3), ("green", 12), ("not_enough_data", 2)]
    i = 0
    for status, n in spec:
        for _ in range(n):
            i += 1
            seg = f"EWR-X{i:02d}"
            reasons = (red,) if status == "red" else (warm,) if status == "yellow" else ()
            rows = 0 if status == "not_enough_data" else 900 - 10 * i
            loss = 0.05 if status == "red" else 0.01 if status == "yellow" else 0.0
            out.append(
                ModelVerdict(
                    f"flights-late--{seg}",
                    "3",
                    seg,
                    status,
                    rows,
                    1 if rows else 0,
                    rows // 2,
                    reasons,
                    (),
                    None,
                    loss,
                    rows * loss,
                ).as_dict()
            )
    return out


def record(url: str, queue: dict[str, Any] | None = None) -> str:
    v = verdicts()
    counts = dict(Counter(x["status"] for x in v))
    summary = {"counts": counts, "models": len(v), "tests": 300, "discoveries": 9, "fdr": 0.01, "rows_read": 12345}
    if queue is not None:
        summary["queue"] = queue
    store = FleetRunStore(url)
    try:
        return store.record("routes", "2013-03-16", "local", summary, v)
    finally:
        store.dispose()


@pytest.fixture()
def fleet_client(tmp_path):
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    settings = Settings(home=tmp_path, fleet_file=default_fleet_path(), reload_interval=0, log_store_url=url)
    with TestClient(create_app(settings, registry=InMemoryRegistry())) as client:
        yield client, url


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label pairs: value} of one metric in a text exposition."""
    out = {}
    for m in re.finditer(rf"^{name}(?:\{{(.*?)\}})? (\S+)$", text, re.M):
        labels = tuple(sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1) or "")))
        out[labels] = float(m.group(2))
    return out


def test_metrics_before_any_fleet_run_say_so(fleet_client) -> None:
    client, _ = fleet_client
    text = client.get("/metrics").text
    assert samples(text, "driftlight_fleet_run_present") == {(): 0.0}
    assert samples(text, "driftlight_fleet_run_store_up") == {(): 1.0}
    assert "driftlight_fleet_models" not in text
    page = client.get("/").text
    assert 'id="fleet-none"' in page and "driftlight fleet monitor" in page


def test_metrics_export_the_latest_fleet_run_with_bounded_labels(fleet_client) -> None:
    client, url = fleet_client
    record(url, queue={"items": [{"model": "flights-late--EWR-X01"}, {"model": "flights-late--EWR-X02"}], "decisions": [
        {"model": "flights-late--EWR-X01", "outcome": "promoted"},
        {"model": "flights-late--EWR-X02", "outcome": "refused"},
        {"model": "flights-late--EWR-X03", "outcome": "refused"},
    ]})  # fmt: skip
    client.app.state.ctx.fleet_runs.invalidate()  # type: ignore[attr-defined]  # the start-up read is cached
    text = client.get("/metrics").text
    colours = samples(text, "driftlight_fleet_models")
    assert colours == {
        (("colour", "red"),): 2.0,
        (("colour", "yellow"),): 3.0,
        (("colour", "green"),): 12.0,
        (("colour", "not_enough_data"),): 2.0,
    }
    assert samples(text, "driftlight_fleet_not_enough_data_models") == {(): 2.0}
    assert samples(text, "driftlight_fleet_run_present") == {(): 1.0}
    age = samples(text, "driftlight_fleet_run_age_seconds")[()]
    assert 0 <= age < 60
    ts = samples(text, "driftlight_fleet_run_timestamp_seconds")[()]
    assert abs(ts - datetime.now(UTC).timestamp()) < 60
    impact = samples(text, "driftlight_fleet_worst_model_impact")
    assert len(impact) == FLEET_TOP < len(verdicts())  # bounded: only the worst FLEET_TOP models
    ranks = sorted((int(dict(k)["rank"]), dict(k)["model"], dict(k)["colour"], v) for k, v in impact.items())
    expected = [(i + 1, v["name"], v["status"], v["impact"]) for i, v in enumerate(verdicts()[:FLEET_TOP])]
    assert [r[:3] for r in ranks] == [e[:3] for e in expected]
    assert [r[3] for r in ranks] == pytest.approx([e[3] for e in expected])
    sev = {dict(k)["rank"]: v for k, v in samples(text, "driftlight_fleet_worst_model_severity").items()}
    assert sev["1"] == 2.0 and sev["3"] == 1.0 and sev["6"] == 0.0
    assert samples(text, "driftlight_fleet_retrain_queue_length") == {(): 2.0}
    assert samples(text, "driftlight_fleet_retrain_decisions") == {
        (("outcome", "promoted"),): 1.0,
        (("outcome", "refused"),): 2.0,
    }


def test_queue_gauges_read_zero_without_a_queue(fleet_client) -> None:
    client, url = fleet_client
    record(url)
    client.app.state.ctx.fleet_runs.invalidate()  # type: ignore[attr-defined]
    text = client.get("/metrics").text
    assert samples(text, "driftlight_fleet_retrain_queue_length") == {(): 0.0}
    assert samples(text, "driftlight_fleet_retrain_decisions") == {}
    assert queue_figures({"queue": {"length": 4, "decisions": [{"state": "refused"}]}}) == (4, {"refused": 1})
    assert queue_figures(None) == (0, {}) and queue_figures({"queue": "garbage"}) == (0, {})


def test_queue_gauges_read_the_real_retrain_queue(fleet_client) -> None:
    """The queue `driftlight fleet retrain` keeps beside the runs (core.fleet_queue) is what the
    gauges show: models waiting (queued or retraining, not the refused or promoted ones) and the
    last cycle's decisions by action."""
    from core.fleet_queue import Decision, QueueItem, QueueStore

    client, url = fleet_client
    record(url)
    q = QueueStore(url)
    try:
        for name, state in (("EWR-X01", "queued"), ("EWR-X02", "retraining"), ("EWR-X03", "refused"), ("EWR-X04", "promoted")):
            q.put("routes", QueueItem(f"flights-late--{name}", name, "red", "1", 0.05, 100, 5.0, state, "red"))
        q.record_cycle("routes", None, "2013-03-16", 2, [
            Decision("flights-late--EWR-X04", "EWR-X04", "promoted", "won the gate"),
            Decision("flights-late--EWR-X03", "EWR-X03", "refused", "lost the gate"),
            Decision("flights-late--EWR-X01", "EWR-X01", "over_budget", "budget 2 spent"),
        ])  # fmt: skip
    finally:
        q.dispose()
    client.app.state.ctx.fleet_runs.invalidate()  # type: ignore[attr-defined]
    text = client.get("/metrics").text
    assert samples(text, "driftlight_fleet_retrain_queue_length") == {(): 2.0}
    assert samples(text, "driftlight_fleet_retrain_decisions") == {
        (("outcome", "promoted"),): 1.0,
        (("outcome", "refused"),): 1.0,
        (("outcome", "over_budget"),): 1.0,
    }


def test_page_shows_the_fleet_worst_first_and_escaped(fleet_client) -> None:
    client, url = fleet_client
    record(url)
    client.app.state.ctx.fleet_runs.invalidate()  # type: ignore[attr-defined]
    html = client.get("/").text
    section = html[html.index('<section id="fleet"') :]
    section = section[: section.index("</section>")]
    shown = re.findall(r'<tr class="fm" data-status="([a-z_]+)" data-model="([^"]+)"', section)
    judged = [(v["status"], v["name"]) for v in verdicts() if v["status"] != "not_enough_data"]
    assert shown == judged  # every judged model, worst first, in the recorded order
    for colour, n in (("red", 2), ("yellow", 3), ("green", 12), ("not_enough_data", 2)):
        assert re.search(rf'data-colour="{colour}"[^>]*><b>{n}</b>', section), colour
    ned = re.search(r'<ul class="ned" id="fleet-ned">(.*?)</ul>', section)
    assert ned and re.findall(r"<li>(.*?)</li>", ned.group(1)) == [v["name"] for v in verdicts()[-2:]]
    assert HOSTILE not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in section
    assert "pressure: more of it is missing than in training" in section
    assert re.search(r"\(<b>\d+ s ago</b>\)", section) and "12345 rows read" in section


def test_page_without_a_fleet_has_no_fleet_section(tmp_path) -> None:
    with TestClient(create_app(Settings(home=tmp_path), registry=InMemoryRegistry())) as client:
        assert 'id="fleet"' not in client.get("/").text
        assert "driftlight_fleet_" not in client.get("/metrics").text


def test_the_cache_reads_the_store_once_per_ttl_under_a_scrape_storm() -> None:
    now = [0.0]
    calls = []

    def reader() -> dict[str, Any]:
        calls.append(1)
        return {"n": len(calls)}

    cache = FleetRunCache(reader, ttl_s=15, clock=lambda: now[0])
    threads = [threading.Thread(target=cache.get) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    now[0] = 14.9
    assert cache.get() == ({"n": 1}, None) and len(calls) == 1
    now[0] = 15.0
    assert cache.get() == ({"n": 2}, None) and len(calls) == 2


def test_a_store_failure_keeps_the_last_run_and_says_so() -> None:
    now = [0.0]
    state = {"fail": False}

    def reader() -> dict[str, Any]:
        if state["fail"]:
            raise ConnectionError("down")
        return {"ok": True}

    cache = FleetRunCache(reader, ttl_s=1, clock=lambda: now[0])
    assert cache.get() == ({"ok": True}, None)
    state["fail"], now[0] = True, 5.0
    assert cache.get() == ({"ok": True}, "fleet run store unavailable: ConnectionError")


def test_age_in_words() -> None:
    from service.page import _age

    assert [_age(s) for s in (5, 600, 3 * 3600, 3 * 86400)] == ["5 s", "10 min", "3.0 h", "3.0 days"]
