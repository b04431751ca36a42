"""A real `driftlight serve --workers 2` process, logging to the local PostgreSQL.

Shows, over real HTTP: a replay where the log store refuses connections for part of the run
still ends with served = logged and every label stored; Prometheus counters are summed across
both workers; and SIGTERM during traffic loses nothing that was answered.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import date

import httpx
import pytest

from core.logstore import LogStore
from core.server_process import CLEAN_EXIT, stop_server, wait_ready
from data_contracts.windows import select_window
from drills.replay import replay_frame
from features.pipeline import build_features
from tests.integration.conftest import pg_outage
from tests.ports import free_port


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            total += float(m.group(2))
    return total


@pytest.fixture
def server(trained, pg_url, tmp_path):
    settings, _ = trained
    s = settings.model_copy(
        update={
            "home": tmp_path,
            "tracking_uri": settings.resolved_tracking_uri,
            "artifact_root": settings.resolved_artifact_root,
            "log_store_url": pg_url,
            "port": free_port(),
            "workers": 2,
            "log_flush_interval": 0.1,
        }
    )
    env = {**os.environ, **s.as_env(), "OMP_NUM_THREADS": "1"}
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115 - held open for the server's lifetime
    proc = subprocess.Popen([sys.executable, "-m", "driftlight.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{s.port}"
    try:
        wait_ready(url, proc, timeout=120)
        yield url, proc, s
    finally:
        if proc.poll() is None:
            stop_server(proc)
        log.close()


def store_for(s, contract) -> LogStore:
    return LogStore(s.log_store_url, contract, [str(n) for n in build_features(contract).get_feature_names_out()])


def wait_pending_zero(url: str, timeout: float = 90.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if metric(httpx.get(f"{url}/metrics").text, "driftlight_log_pending_rows") == 0:
            return time.perf_counter() - t0
        time.sleep(0.25)
    raise TimeoutError("the log did not drain")


def test_store_outage_during_replay_loses_nothing(server, contract, flights):
    url, _, s = server
    day = select_window(flights, contract, date(2013, 4, 1), date(2013, 4, 2))
    first, second = day.iloc[:600], day.iloc[600:1200]
    a = replay_frame(url, first, contract, batch_size=50)
    with pg_outage(s.log_store_url):
        b = replay_frame(url, second, contract, batch_size=50)
        time.sleep(0.5)
        during = metric(httpx.get(f"{url}/metrics").text, "driftlight_log_pending_rows")
        assert during > 0, "rows should be waiting while the store refuses connections"
    wait_pending_zero(url)
    served = a.served + b.served
    assert served == 1200 and a.failed_requests == b.failed_requests == 0
    store = store_for(s, contract)
    ids = set()
    for chunk in store.iter_predictions(None, None):
        ids |= set(chunk["prediction_id"])
    assert ids == set(a.prediction_ids) | set(b.prediction_ids)
    assert store.count_labels() == a.labels_accepted + b.labels_accepted == a.labels_sent + b.labels_sent
    # counters are summed across the two workers (multiprocess mode): 24 batch calls in all
    text = httpx.get(f"{url}/metrics").text
    assert metric(text, "driftlight_requests_total", endpoint="/predict/batch", outcome="ok") == 24
    assert metric(text, "driftlight_predictions_total") == 1200
    assert metric(text, "driftlight_log_write_failures_total") > 0
    store.dispose()


def test_sigterm_during_traffic_loses_no_answered_prediction(server, contract, flights):
    url, proc, s = server
    rows = select_window(flights, contract, date(2013, 4, 3), date(2013, 4, 6)).iloc[:3000]
    results = {}

    def run() -> None:
        results["r"] = replay_frame(url, rows, contract, batch_size=10, timeout=10)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert proc.wait(60) in CLEAN_EXIT
    r = results["r"]
    assert 0 < r.served < 3000, "SIGTERM should land mid-replay"
    store = store_for(s, contract)
    ids = set()
    for chunk in store.iter_predictions(None, None):
        ids |= set(chunk["prediction_id"])
    assert set(r.prediction_ids) <= ids and len(ids) == r.served
    assert store.count_labels() == r.labels_accepted
    store.dispose()
