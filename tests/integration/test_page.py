"""The status page, its reports and /docs: served by a real uvicorn over real 2013 traffic.

A model trained the default way serves held-out control days (green) and July 1-3 with a dead
pressure feed (red: the data is broken; the summer heat alone would be yellow); the monitor judges
both. The page must say what /status says (colour, word, reasons,
in order), link each run's reports over HTTP without showing a file-system path, refuse paths
outside the reports folder, and keep working with no network. The browser tests drive Debian's
Chromium through Playwright (.ci/run installs both); they skip with the reason when it is absent.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

from core.monitor_job import Monitor
from core.reports import POLICY_VS_EVIDENTLY, prune_reports, report_stem, unique_stem, verdict_header
from data_contracts.windows import on_days, select_window
from drills.replay import replay_frame
from service.app import create_app

CHROMIUM = os.environ.get("DRIFTLIGHT_CHROMIUM", "/usr/bin/chromium")
RED_RGB = "rgb(207, 34, 46)"
GREEN_RGB = "rgb(26, 127, 55)"


@dataclass
class Site:
    settings: Any
    url: str
    app: Any
    server: Any
    thread: threading.Thread

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

    def send(self, contract: Any, frame: Any) -> None:
        res = replay_frame(self.url, frame, contract, batch_size=500)
        assert res.rejected == 0 and res.failed_requests == 0, res.errors
        assert self.app.state.ctx.log.flush(10.0)

    def judge(self, first: date, last: date, *, html: bool = False) -> Any:
        return Monitor(self.settings).run_days(first, last, html=html)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_site(trained: Any, home: Path) -> Site:
    """The app under a real uvicorn (in a thread, on a free port): the browser needs an HTTP URL."""
    settings, _ = trained
    s = settings.model_copy(
        update={
            "home": home,
            "tracking_uri": settings.resolved_tracking_uri,
            "artifact_root": settings.resolved_artifact_root,
            "log_store_url": None,  # the default under `home`, where `driftlight runs --home` looks
        }
    )
    return serve(create_app(s), s)


def serve(app: Any, s: Any) -> Site:
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not server.started:
        assert thread.is_alive() and time.monotonic() - t0 < 60, "uvicorn did not start"
        time.sleep(0.05)
    return Site(s, f"http://127.0.0.1:{port}", app, server, thread)


@pytest.fixture(scope="module")
def traffic(contract, flights, bundle):
    """(control days: no drift; July 1-3 with a dead pressure feed: the summer's heat, which alone is
    only yellow (the world moved), and a broken sensor, which is red)."""
    fit = select_window(flights, contract, date(2013, 1, 1), date(2013, 3, 17))
    control = on_days(contract, fit, bundle.metadata["monitoring"]["control_days"]).sample(2500, random_state=3)
    july = select_window(flights, contract, date(2013, 7, 1), date(2013, 7, 3))
    return control.sort_values("time_hour"), july.assign(pressure=np.nan)


@pytest.fixture(scope="module")
def site(trained, contract, traffic, tmp_path_factory) -> Iterator[Site]:
    """A site judged twice: green control days (with Evidently's HTML report), then red July."""
    s = start_site(trained, tmp_path_factory.mktemp("page"))
    try:
        s.send(contract, traffic[0])
        green = s.judge(date(2013, 1, 1), date(2013, 3, 17), html=True)
        assert green.verdict.status == "green", [r.message for r in green.verdict.reasons]
        s.send(contract, traffic[1])
        assert s.judge(date(2013, 7, 1), date(2013, 7, 3)).verdict.status == "red"
        yield s
    finally:
        s.stop()


def page_light(html: str) -> tuple[str, list[tuple[str, str]]]:
    """(data-status of the light, [(signal, feature)] of its reasons in order) from the page's HTML."""
    status = re.search(r'<section id="light"[^>]*data-status="([a-z_]+)"', html)
    assert status, "the page has no light"
    reasons = re.findall(r'<li class="reason[^"]*" data-signal="([^"]*)" data-feature="([^"]*)"', html)
    return status.group(1), reasons


def status_light(body: dict) -> tuple[str, list[tuple[str, str]]]:
    return body["status"], [(r["signal"], r["feature"] or "") for r in body["reasons"]]


# -- without a browser ---------------------------------------------------------------------------
def test_page_says_what_status_says_and_links_reports_over_http(site):
    html = site.get("/").text
    status = site.get("/status").json()
    assert page_light(html) == status_light(status)
    assert status["status"] == "red" and ">RED<" in html
    assert any(f == "temp" for _, f in page_light(html)[1])
    # Every monitored field is listed with a trend, and the history shows both windows.
    assert 'data-field="temp"' in html and 'data-field="probability"' in html and '<svg class="spark"' in html
    assert html.count('<tr class="run" data-status="green"') == 1 and html.count('<tr class="run" data-status="red"') == 1
    # No file-system path of the site reaches the page; reports are linked under /reports/.
    assert str(site.settings.home) not in html
    links = re.findall(r'href="(/reports/[^"]+)"', html)
    assert any(link.endswith(".html") for link in links) and any(link.endswith(".json") for link in links)
    for link in links:
        assert site.get(link).status_code == 200


def test_reports_are_named_by_window_and_status_and_headed_by_the_verdict(site):
    green = site.get("/").text
    html_link = next(link for link in re.findall(r'href="(/reports/[^"]+\.html)"', green))
    assert re.fullmatch(r"/reports/monitor-20130101T0500-20130318T0400-green-\d{8}T\d{6}\.html", html_link), html_link
    report = site.get(html_link)
    assert report.headers["content-type"].startswith("text/html")
    head = report.text[: report.text.index("driftlight-verdict") + 4000]
    assert "GREEN" in head and "No threshold breached" in head and "Evidently" in head
    assert re.search(r"tests flag \d+% of the columns", head)  # Evidently's own count, beside our verdict
    # The verdict comes before Evidently's own content (its widgets mount on root_metric_* divs).
    assert report.text.index("driftlight-verdict") < report.text.index('id="root_metric_')


@pytest.mark.parametrize(
    "name", ["../predictions.db", "..%2Fpredictions.db", "%2e%2e%2fmlflow.db", "x.db", "monitor-nope.html", ".hidden.html"]
)
def test_report_route_refuses_anything_but_a_report_in_the_folder(site, name):
    r = site.get(f"/reports/{name}")
    assert r.status_code in (404, 422), (name, r.status_code)
    if r.status_code == 422:
        assert r.json()["detail"][0]["field"].endswith("name")


def test_bad_page_parameter_names_the_field(site):
    r = site.get("/?runs=1")
    assert r.status_code == 422 and r.json()["detail"][0]["field"].endswith("runs")


def test_docs_need_no_network(site):
    html = site.get("/docs").text
    srcs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert srcs and all(s.startswith("/") for s in srcs), srcs
    for s in srcs:
        assert site.get(s).status_code == 200, s
    assert site.get("/openapi.json").json()["info"]["title"] == "driftlight"
    assert "/" not in site.get("/openapi.json").json()["paths"]  # the HTML page is not an API operation


def test_driftlight_runs_lists_the_history(site):
    from typer.testing import CliRunner

    from driftlight.cli import app

    res = CliRunner().invoke(app, ["runs", "--home", str(site.settings.home), "--json", "--url", site.url])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["status"] for r in rows] == ["red", "green"]
    assert rows[0]["top_reason"] and not rows[0]["drill"] and rows[0]["window_label"] == "2013-07-01 – 2013-07-03"
    assert httpx.get(rows[1]["report_url"], timeout=30).status_code == 200
    text = CliRunner().invoke(app, ["runs", "--home", str(site.settings.home), "--url", site.url]).output
    assert "RED" in text and "GREEN" in text and "/reports/monitor-" in text


def test_report_retention_keeps_the_newest_runs(tmp_path):
    for i, stem in enumerate(["monitor-a", "monitor-b", "monitor-c"]):
        for suffix in (".json", ".html"):
            p = tmp_path / f"{stem}{suffix}"
            p.write_text("{}")
            os.utime(p, (1000 + i, 1000 + i))
    (tmp_path / "notes.json").write_text("{}")  # not a report: never touched
    deleted = prune_reports(tmp_path, keep=2)
    assert sorted(p.name for p in deleted) == ["monitor-a.html", "monitor-a.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "monitor-b.html", "monitor-b.json", "monitor-c.html", "monitor-c.json", "notes.json",
    ]  # fmt: skip
    assert prune_reports(tmp_path, keep=0) == []


def test_report_names_and_header():
    lo, hi = datetime(2013, 7, 1, 4, tzinfo=UTC), datetime(2013, 7, 8, 4, tzinfo=UTC)
    stem = report_stem((lo, hi), "red", datetime(2026, 11, 30, 19, 0, 5, tzinfo=UTC))
    assert stem == "monitor-20130701T0400-20130708T0400-red-20261130T190005"
    header = verdict_header(
        status="red",
        window=(lo, hi),
        by="event_time",
        rows=6192,
        reasons=[{"severity": "critical", "message": "psi of temp = 16.06 > critical threshold 1 <b>"}],
        evidently_share=0.4667,
    )
    assert "RED" in header and "6192 rows" in header and "&lt;b&gt;" in header and "47%" in header
    assert "Evidently's, not driftlight's policy" in POLICY_VS_EVIDENTLY


def test_unique_stem(tmp_path):
    (tmp_path / "monitor-x.json").write_text("{}")
    assert unique_stem(tmp_path, "monitor-x") == "monitor-x-2"
    assert unique_stem(tmp_path, "monitor-y") == "monitor-y"


# -- in a real browser -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium under Playwright (headless, offline: its own browser download is never used)."""
    # Skipped on a machine without them; under CI (.ci/run installs both) their absence is a failure.
    missing = pytest.fail if os.environ.get("CI") else pytest.skip
    if not Path(CHROMIUM).exists():
        missing(f"no Chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright is not installed: pip install playwright (pinned in pyproject's dev extra)")
    from scripts.screenshot import OFFLINE_ARGS

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=list(OFFLINE_ARGS))
        yield b
        b.close()


class Watched:
    """A page whose console errors, page errors and requests off the machine are recorded."""

    def __init__(self, browser: Any) -> None:
        self.errors: list[str] = []
        self.left: list[str] = []
        self.ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        self.ctx.route("**/*", self._guard)
        self.page = self.ctx.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _guard(self, route: Any) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:  # no network: anything that would leave the machine fails, and is recorded
            self.left.append(route.request.url)
            route.abort()

    def close(self) -> None:
        self.ctx.close()


@pytest.mark.browser
def test_in_a_browser_the_light_matches_status_for_green_then_red(browser, trained, contract, traffic, tmp_path):
    s = start_site(trained, tmp_path)
    w = Watched(browser)
    try:
        for frame, (first, last), word, rgb in (
            (traffic[0], (date(2013, 1, 1), date(2013, 3, 17)), "GREEN", GREEN_RGB),
            (traffic[1], (date(2013, 7, 1), date(2013, 7, 3)), "RED", RED_RGB),
        ):
            s.send(contract, frame)
            s.judge(first, last)
            status = s.get("/status").json()
            w.page.goto(s.url + "/", wait_until="load")
            light = w.page.locator("#light")
            assert light.get_attribute("data-status") == status["status"] == word.lower()
            assert w.page.locator("#light .word").inner_text().startswith(word)
            assert w.page.locator("#light .word").evaluate("e => getComputedStyle(e).color") == rgb
            assert w.page.locator("#light .dot").evaluate("e => getComputedStyle(e).backgroundColor") == rgb
            shown = [
                (li.get_attribute("data-signal"), li.get_attribute("data-feature"))
                for li in w.page.locator("#reasons li.reason").all()
            ]
            assert shown == [(r["signal"], r["feature"] or "") for r in status["reasons"]]
            texts = w.page.locator("#reasons li.reason .msg").all_inner_texts()
            assert texts == [r["message"] for r in status["reasons"]]
        # Clicking a field opens its chart (a <details>: works with JavaScript off too).
        temp = w.page.locator("details.field[data-field='temp']")
        assert not temp.locator("svg.chart").first.is_visible()
        temp.locator("summary").click()
        assert temp.get_attribute("open") is not None
        chart = temp.locator("svg.chart").first
        assert chart.is_visible() and chart.locator("rect.band-red").count() == 1
        assert chart.locator("circle").count() == 2  # one point per run: control days, July
        assert w.errors == [] and w.left == []
    finally:
        w.close()
        s.stop()


@pytest.mark.browser
def test_in_a_browser_docs_render_offline(browser, site):
    w = Watched(browser)
    try:
        w.page.goto(site.url + "/docs", wait_until="load")
        w.page.locator(".swagger-ui .info .title").wait_for(timeout=20_000)
        assert "driftlight" in w.page.locator(".swagger-ui .info .title").inner_text()
        assert w.page.locator(".opblock").count() >= 8  # the operations are listed
        assert w.errors == [] and w.left == [], (w.errors, w.left)
        # And the page itself, without JavaScript: the light and the reasons are server-rendered.
        nojs = browser.new_context(java_script_enabled=False)
        try:
            p = nojs.new_page()
            p.goto(site.url + "/", wait_until="load")
            assert p.locator("#light .word").inner_text().startswith("RED")
            assert p.locator("#reasons li.reason").count() == len(site.get("/status").json()["reasons"])
        finally:
            nojs.close()
    finally:
        w.close()


@pytest.mark.browser
def test_in_a_browser_the_fleet_section_renders_and_can_be_shot(browser, tmp_path):
    """A fleet configured and a fleet run recorded: the section shows the counts by colour, every judged
    model worst first with its colour, the not_enough_data list, offline, and a screenshot is taken."""
    from core.registry import InMemoryRegistry
    from core.settings import Settings
    from data_contracts.fleet import default_fleet_path
    from tests.integration.test_fleet_view import record, verdicts

    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    record(url)
    s = Settings(home=tmp_path, fleet_file=default_fleet_path(), reload_interval=0, log_store_url=url)
    site = serve(create_app(s, registry=InMemoryRegistry()), s)
    w = Watched(browser)
    try:
        w.page.goto(site.url + "/", wait_until="load")
        fleet = w.page.locator("#fleet")
        assert fleet.is_visible()
        shown = {li.get_attribute("data-colour"): li.locator("b").inner_text() for li in fleet.locator("li.fc").all()}
        assert shown == {"red": "2", "yellow": "3", "green": "12", "not_enough_data": "2"}
        rows = fleet.locator("tr.fm")
        judged = [v for v in verdicts() if v["status"] != "not_enough_data"]
        assert rows.count() == len(judged)
        assert [r.get_attribute("data-model") for r in rows.all()] == [v["name"] for v in judged]
        pill = rows.first.locator(".pill")
        assert pill.inner_text() == "RED" and pill.evaluate("e => getComputedStyle(e).backgroundColor") == RED_RGB
        assert fleet.locator("#fleet-ned li").all_inner_texts() == [v["name"] for v in verdicts()[-2:]]
        assert "ago" in fleet.locator("#fleet-age").inner_text()
        shot = tmp_path / "fleet.png"
        fleet.screenshot(path=str(shot))
        png = shot.read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert width > 600 and height > 300, (width, height)
        assert w.errors == [] and w.left == [], (w.errors, w.left)
    finally:
        w.close()
        site.stop()


LOOPBACK = re.compile(r'inet_addr\("127\.|inet_pton\(AF_INET6, "::1"|"::ffff:127\.')
STRACE_CONNECT = re.compile(r"^\d+\s+connect\(\d+<(\w+):.*?(sa_family=AF_INET6?, .*)$")
STRACE_SEND = re.compile(r"^\d+\s+(?:sendto|sendmsg|sendmmsg)\(.*?(sa_family=AF_INET6?, .*)$")


def off_machine(trace: str) -> list[str]:
    """Attempts to reach another machine in an `strace -f -yy -e trace=connect,sendto,sendmsg,sendmmsg`
    log: a TCP connect or a datagram sent to a non-loopback address, or anything to port 53 (DNS).
    A UDP connect with nothing sent is a route lookup (Chromium's IPv6 probe of 2001:4860:4860::8888):
    no packet leaves, so it is not counted."""
    seen = []
    for line in trace.splitlines():
        if m := STRACE_CONNECT.match(line):
            if not LOOPBACK.search(m[2]) and (not m[1].startswith("UDP") or "htons(53)" in m[2]):
                seen.append(line)
        elif (m := STRACE_SEND.match(line)) and not LOOPBACK.search(m[1]):
            seen.append(line)
    return seen


def test_off_machine_reads_strace():
    trace = "\n".join(
        [
            "7 connect(21<UDPv6:[1]>, {sa_family=AF_INET6, sin6_port=htons(443), "
            'inet_pton(AF_INET6, "2001:4860:4860::8888", &a)}, 28) = 0',
            '7 connect(22<TCP:[2]>, {sa_family=AF_INET, sin_port=htons(8000), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
            "7 connect(23<UDP:[3]>, {sa_family=AF_INET, sin_port=htons(53), "
            'sin_addr=inet_addr("10.0.0.53")}, 16 <unfinished ...>',
            "8 connect(5<TCPv6:[4]>, {sa_family=AF_INET6, sin6_port=htons(443), "
            'inet_pton(AF_INET6, "2a00::1", &a)}, 28) = -1 EINPROGRESS',
            '9 sendto(4<UDP:[5]>, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(123), sin_addr=inet_addr("10.0.0.9")}, 16) = 1',
            '9 sendto(6<UDP:[6]>, "x", 1, 0, {sa_family=AF_INET, sin_port=htons(9), sin_addr=inet_addr("127.0.0.1")}, 16) = 1',
            '9 connect(7<UNIX:[7]>, {sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}, 110) = -1 ENOENT',
        ]
    )
    assert [line.split()[1][:10] for line in off_machine(trace)] == ["connect(23", "connect(5<", "sendto(4<U"]


@pytest.mark.browser
def test_the_browser_itself_sends_nothing_off_the_machine(tmp_path):
    """The route guard only sees the page's requests; Chromium's own (sign-in, updates) need the launch
    flags. `scripts.screenshot` shoots a live page under strace: no DNS query, no connection out."""
    import shutil
    import subprocess
    import sys

    from core.registry import InMemoryRegistry
    from core.settings import Settings

    strace = shutil.which("strace")
    if strace is None or not Path(CHROMIUM).exists():
        missing = pytest.fail if os.environ.get("CI") else pytest.skip  # .ci/run installs both
        missing("needs strace and Chromium (apt-get install strace chromium)")
    s = Settings(home=tmp_path, reload_interval=0)
    site = serve(create_app(s, registry=InMemoryRegistry()), s)
    log = tmp_path / "strace.log"
    code = "import sys, pathlib; from scripts.screenshot import shoot; print(shoot(sys.argv[1], pathlib.Path(sys.argv[2])))"
    try:
        cmd = [strace, "-f", "-qq", "-yy", "-e", "trace=connect,sendto,sendmsg,sendmmsg", "-o", str(log)]
        run = subprocess.run(
            [*cmd, sys.executable, "-c", code, site.url + "/", str(tmp_path / "page.png")],
            capture_output=True, text=True, timeout=180, cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
    finally:
        site.stop()
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip(f"strace cannot trace here: {run.stderr.strip()[:200]}")
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == "[]"  # the page asked for nothing off the machine
    trace = log.read_text()
    assert "127.0.0.1" in trace  # the trace did see the browser talk to the site
    assert off_machine(trace) == []


def test_a_capped_reason_names_the_threshold_it_crossed():
    """July's heat: 8 > the critical 5, held at warning (no harm). The page said "above the warning
    threshold 5" (the warning threshold is 3); it names the critical one and says it was held."""
    from monitoring.policy import load_policy
    from service.page import plain_reason

    capped = {
        "signal": "beyond_reference_rate_vs_null", "feature": "temp", "value": 8.0, "threshold": 5.0,
        "severity": "warning", "question": "world_moved",
        "message": "beyond_reference_rate_vs_null of temp = 8 > critical threshold 5 (...) (world moved; no evidence of harm)",
    }  # fmt: skip
    text = plain_reason(capped, load_policy())
    assert "above the critical threshold 5 (held at warning: the world moved, no evidence of harm)" in text
    plain = {**capped, "value": 3.5, "threshold": 3.0, "message": "... = 3.5 > warning threshold 3 (...)"}
    assert plain_reason(plain, load_policy()).endswith("above the warning threshold 3")


def test_fallback_periods_come_from_the_log(tmp_path):
    import sqlalchemy as sa

    from core.runs import RunStore

    url = f"sqlite:///{tmp_path / 'log.db'}"
    t = sa.Table("predictions", sa.MetaData(), sa.Column("served_at", sa.DateTime), sa.Column("model_version", sa.String))
    eng = sa.create_engine(url)
    t.metadata.create_all(eng)
    base = datetime(2026, 11, 30, 12, 0)
    rows = [(0, "fallback"), (60, "fallback"), (120, "1"), (200, "fallback"), (3600, "fallback"), (3700, "fallback")]
    with eng.begin() as c:
        c.execute(t.insert(), [{"served_at": base.replace(second=0) + timedelta(seconds=s), "model_version": v} for s, v in rows])
    spans = RunStore(url).fallback_spans(gap_s=300)
    assert [(s["start"], s["end"], s["rows"]) for s in spans] == [
        (base, base + timedelta(seconds=200), 3),
        (base + timedelta(seconds=3600), base + timedelta(seconds=3700), 2),
    ]
    late = RunStore(url).fallback_spans(since=(base + timedelta(seconds=1000)).replace(tzinfo=UTC))
    assert [s["rows"] for s in late] == [2]
    assert RunStore(f"sqlite:///{tmp_path / 'empty.db'}").fallback_spans() == []


def test_page_before_any_run_says_unknown_and_what_to_run(tmp_path):
    from fastapi.testclient import TestClient

    from core.registry import InMemoryRegistry
    from core.settings import Settings

    with TestClient(create_app(Settings(home=tmp_path), registry=InMemoryRegistry())) as client:
        r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert page_light(r.text) == ("unknown", []) and "driftlight monitor" in r.text
    assert 'Serving now: <b id="serving">fallback</b>' in r.text  # no champion: the fallback serves


def test_drill_runs_and_questions_are_shown_when_present():
    """The light is the newest REAL run (as /status): a newer drill run is listed, marked, never the light."""
    from monitoring.policy import load_policy
    from service.page import PageData, render_page

    reason = {"signal": "unseen_category_rate", "feature": "carrier", "value": 0.2, "threshold": 0.05}
    reason |= {"severity": "critical", "message": "unseen_category_rate of carrier = 0.2", "question": "data_broken"}
    run = {
        "run_id": "r1", "finished_at": datetime(2026, 11, 30, 12), "window_start": datetime(2013, 4, 1, 4),
        "window_end": datetime(2013, 4, 2, 4), "window_by": "event_time", "model_version": "1", "rows": 2000,
        "labelled": 0, "status": "red", "raw_status": "red", "reasons": [reason], "drill": None,
        "summary": {"signals": [{"signal": "unseen_category_rate", "feature": "carrier", "value": 0.2}]},
    }  # fmt: skip
    drill = {**run, "run_id": "r2", "finished_at": datetime(2026, 11, 30, 13), "status": "green", "raw_status": "green"}
    drill |= {"reasons": [], "drill": "no-drift", "summary": {"signals": []}}
    runs = [drill, run]  # newest first, as RunStore.history returns them
    html = render_page(PageData(runs=runs, policy=load_policy(), model_name="flights-late", timezone="America/New_York"))
    assert page_light(html) == ("red", [("unseen_category_rate", "carrier")])
    assert 'data-question="data_broken">Is the data broken?' in html
    assert '<span class="badge drill">drill</span>' in html and '<span class="badge drill">DRILL</span>' not in html
    assert "window 2013-04-01 (by event_time)" in html  # one local day
    assert "carrier: it carries categories the training data never had" in html
