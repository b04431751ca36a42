"""The compose stack, run as local processes: the very commands docker-compose.yml gives its services.

Each service's `command` (the drill's `entrypoint`) and `environment` are read from docker-compose.yml and
translated only as far as running outside containers needs (see `translate`): secrets get test values,
container host names become 127.0.0.1 with free ports, volumes become folders under tmp_path, and the
monitor loops every 2 s instead of 60 s. Then: MLflow server on the local PostgreSQL -> the trainer
(one-shot) -> the api (2 workers) -> the monitor loop, with a real Prometheus scraping the api and the
monitor under the job names and alert rules of deploy/prometheus. A heat-wave drill is run through the
api, and Prometheus's own HTTP API must show the drift: the monitor's status going to red, the temp PSI,
the predictions counted, and the alert rules loaded (DriftlightRed firing).

A compose command that does not exist or does not start fails here, quickly, naming the service.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import reachable_admin
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROM_DIR = ROOT / "deploy" / "prometheus"
PROMETHEUS = "/usr/bin/prometheus"

# Test values for the secrets compose requires (`${VAR:?...}`). POSTGRES_PASSWORD ends up unused: the
# whole PostgreSQL URL is rewritten to the local server (trust auth, user postgres).
TEST_VARS = {
    "POSTGRES_PASSWORD": "unused-locally",
    "DRIFTLIGHT_ID_SECRET": "stack-test-id-secret-0123456789abcdef",
    "DRIFTLIGHT_ADMIN_TOKEN": "stack-test-admin-token-0123456789",
    "GRAFANA_ADMIN_PASSWORD": "unused-locally",
}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[?-])([^}]*))?\}")
PG_URL = re.compile(r"postgresql\+psycopg://[^@/\s]+@postgres:5432/(\w+)")
CONTAINER_HOST = re.compile(r"\b(postgres|mlflow|api|monitor|prometheus|grafana):\d+")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@dataclass
class Local:
    """Where the stack lives on this machine: ports for the compose host:port pairs, databases, folders."""

    tmp: Path
    databases: dict[str, str]  # compose database name -> local test database
    ports: dict[str, int] = field(default_factory=dict)  # "mlflow:5000" -> free local port

    def __post_init__(self) -> None:
        for hostport in ("mlflow:5000", "api:8000", "monitor:9108", "localhost:9090"):
            self.ports.setdefault(hostport, free_port())

    def port(self, hostport: str) -> int:
        return self.ports[hostport]

    def url(self, hostport: str) -> str:
        return f"http://127.0.0.1:{self.ports[hostport]}"


def interpolate(value: str) -> str:
    """Compose's `${VAR}`, `${VAR:-default}`, `${VAR:?message}` with TEST_VARS as the environment."""

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        if name in TEST_VARS:
            return TEST_VARS[name]
        if op in (":-", "-"):
            return arg
        raise KeyError(f"compose needs ${{{name}}} ({arg or 'no default'}); add a test value to TEST_VARS")

    return INTERPOLATION.sub(sub, value)


def translate(service: str, compose: dict[str, Any], local: Local) -> tuple[list[str], dict[str, str]]:
    """The argv and environment of compose service `service` as a local process.

    The only changes from docker-compose.yml: interpolation with TEST_VARS; the PostgreSQL URL -> the local
    server's test database; container host:port -> 127.0.0.1:free port (`--host 0.0.0.0` -> 127.0.0.1);
    volumes (/mlartifacts, /data, /tmp/prom, prometheus' /etc/prometheus and /prometheus) -> tmp folders;
    and the monitor's `--every 60s` -> `--every 2s`.
    """
    spec = compose["services"][service]
    svc_tmp = local.tmp / service
    ports = {f"{hp.split(':')[1]}": p for hp, p in local.ports.items()}  # "8000" -> local port of api:8000

    def value(v: Any) -> str:
        s = interpolate(str(v))
        if s.startswith("--") and "=" in s:  # --flag=value (prometheus' flags)
            flag, rest = s.split("=", 1)
            return f"{flag}={value(rest)}"
        s = PG_URL.sub(lambda m: f"postgresql+psycopg://postgres@127.0.0.1:5432/{local.databases[m.group(1)]}", s)
        for hostport, port in local.ports.items():
            s = s.replace(f"//{hostport}", f"//127.0.0.1:{port}")
        if s == "0.0.0.0":
            s = "127.0.0.1"
        for volume, path in (
            ("/mlartifacts", local.tmp / "mlartifacts"),  # the mlflow server's artifact store
            ("/data", svc_tmp / "data"),  # each container has its own /data (DRIFTLIGHT_HOME)
            ("/tmp/prom", svc_tmp / "prom"),  # the api's prometheus_client multiprocess folder
            ("/etc/prometheus/prometheus.yml", local.tmp / "prometheus" / "prometheus.yml"),  # the generated config
            ("/prometheus", local.tmp / "prometheus" / "tsdb"),
        ):
            if s == volume or s.startswith(volume + "/"):
                return str(path) + s[len(volume) :]
        return s

    words = [*(spec.get("entrypoint") or []), *(spec.get("command") or [])]
    argv = [value(w) for w in words]
    for i in range(1, len(argv)):
        if argv[i - 1] in ("--port", "--metrics-port") and argv[i] in ports:
            argv[i] = str(ports[argv[i]])
        if argv[i - 1] == "--every" and service == "monitor":
            # The loop period is the only behavioural change: a run every 2 s instead of 60 s, so a test
            # sees the status move within seconds. Window, metrics port, --retrain, --no-html are as in compose.
            argv[i] = "2s"
    env = {k: value(v) for k, v in (spec.get("environment") or {}).items()}
    if "DRIFTLIGHT_PORT" in env:
        env["DRIFTLIGHT_PORT"] = str(ports[env["DRIFTLIGHT_PORT"]])

    if service == "prometheus":  # the image's entrypoint is the binary; the compose command holds only flags
        argv = [PROMETHEUS, *argv, f"--web.listen-address=127.0.0.1:{local.port('localhost:9090')}"]
    elif argv and argv[0] == "driftlight":
        argv = [sys.executable, "-m", "driftlight.cli", *argv[1:]]
    elif argv and argv[0] == "mlflow":
        argv = [sys.executable, "-m", "mlflow", *argv[1:]]
    else:
        raise ValueError(f"compose service {service!r}: no local translation for the command {argv[:1]}")
    left = [w for w in [*argv, *env.values()] if CONTAINER_HOST.search(w)]
    assert not left, f"compose service {service!r}: container host names left after translation: {left}"
    return argv, env


# -- processes ------------------------------------------------------------------------------------


class ServiceFailed(RuntimeError):
    pass


def tail(path: Path, n: int = 40) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(lines[-n:])


@dataclass
class Service:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path

    def failure(self, what: str) -> ServiceFailed:
        return ServiceFailed(
            f"compose service {self.name!r} {what}\n  argv: {self.argv}\n--- {self.log.name} (last lines) ---\n{tail(self.log)}"
        )


def process_env(translated: dict[str, str]) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DRIFTLIGHT_")}  # only compose's settings
    # PYTHONUNBUFFERED as the image's ENV has it, so the logs are complete when a test prints their tails
    return {**base, **translated, "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def start(service: str, compose: dict[str, Any], local: Local) -> Service:
    argv, env = translate(service, compose, local)
    log = local.tmp / f"{service}.log"
    (local.tmp / service).mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as fh:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            argv,
            env=process_env(env),
            cwd=local.tmp / service,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Service(service, argv, proc, log)


def wait_http(svc: Service, url: str, timeout: float) -> float:
    """Seconds until GET `url` answers 200; ServiceFailed naming the service if it exits or time runs out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        rc = svc.proc.poll()
        if rc is not None:
            raise svc.failure(f"exited with code {rc} before {url} answered 200")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise svc.failure(f"did not answer 200 at {url} within {timeout:.0f} s (still running)")


def start_and_wait(
    service: str, compose: dict[str, Any], local: Local, url: str, timeout: float, started: list[Service]
) -> Service:
    svc = start(service, compose, local)
    started.append(svc)  # torn down by the caller even if the wait fails
    wait_http(svc, url, timeout)
    return svc


def run_once(service: str, compose: dict[str, Any], local: Local, timeout: float, started: list[Service]) -> Service:
    """A one-shot service (trainer, drill): run to the end; ServiceFailed unless it exits 0."""
    svc = start(service, compose, local)
    started.append(svc)
    try:
        rc = svc.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise svc.failure(f"did not finish within {timeout:.0f} s") from None
    if rc != 0:
        raise svc.failure(f"exited with code {rc}")
    return svc


def stop(svc: Service, timeout: float = 30.0) -> None:
    """SIGTERM to the service's process group (uvicorn/gunicorn workers, the monitor's retrain child), then kill."""
    if svc.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(svc.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            svc.proc.wait(timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(svc.proc.pid, signal.SIGKILL)  # whatever of the group is left
    svc.proc.wait()


# -- PostgreSQL -----------------------------------------------------------------------------------


@pytest.fixture
def databases() -> Iterator[dict[str, str]]:
    """Two fresh databases on the local PostgreSQL, named like compose's (mlflow, driftlight); dropped afterwards."""
    import sqlalchemy as sa

    admin = reachable_admin()
    tag = uuid.uuid4().hex[:8]
    names = {"mlflow": f"driftlight_it_stack_mlflow_{tag}", "driftlight": f"driftlight_it_stack_log_{tag}"}
    try:
        with admin.connect() as c:
            for name in names.values():
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        yield names
    finally:
        with admin.connect() as c:
            for name in names.values():
                c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


# -- Prometheus -----------------------------------------------------------------------------------


def write_prometheus_config(local: Local) -> dict[str, str]:
    """deploy/prometheus/prometheus.yml with local targets and 1 s intervals, beside a copy of its rule files.

    Returns {compose host:port: job name} for the scrape targets.
    """
    folder = local.tmp / "prometheus"
    folder.mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text(encoding="utf-8"))
    config["global"]["scrape_interval"] = "1s"
    config["global"]["evaluation_interval"] = "1s"
    for rule_file in config.get("rule_files", []):
        shutil.copy(PROM_DIR / rule_file, folder / rule_file)
    jobs: dict[str, str] = {}
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
        for static in job.get("static_configs", []):
            targets = []
            for target in static["targets"]:
                jobs[target] = job["job_name"]
                targets.append(f"127.0.0.1:{local.port(target)}")
            static["targets"] = targets
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return jobs


def promql(base: str, query: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=5.0)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(base: str, query: str) -> float | None:
    """The value of a query with at most one series (None when it has none)."""
    result = promql(base, query)
    assert len(result) <= 1, f"{query}: expected at most one series, got {result}"
    return float(result[0]["value"][1]) if result else None


def wait_for(what: str, check: Any, timeout: float, logs: list[Service]) -> Any:
    """Poll `check()` until it returns something truthy; fail with the last value and the logs' tails."""
    t0 = time.monotonic()
    last: Any = None
    while time.monotonic() - t0 < timeout:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        else:
            if last:
                return last
        time.sleep(0.5)
    details = "\n".join(f"--- {s.name} (last lines) ---\n{tail(s.log, 15)}" for s in logs)
    pytest.fail(f"Prometheus did not show {what} within {timeout:.0f} s (last: {last!r})\n{details}")


# -- the tests ------------------------------------------------------------------------------------


def test_compose_stack_real_traffic_turns_prometheus_red_and_a_drill_does_not(databases, tmp_path):
    compose = load_compose()
    local = Local(tmp_path, databases)
    jobs = write_prometheus_config(local)
    api_job, monitor_job = jobs["api:8000"], jobs["monitor:9108"]
    prom = local.url("localhost:9090")
    started: list[Service] = []
    try:
        start_and_wait("mlflow", compose, local, f"{local.url('mlflow:5000')}/health", 90, started)
        run_once("trainer", compose, local, 240, started)
        start_and_wait("api", compose, local, f"{local.url('api:8000')}/ready", 120, started)
        start_and_wait("monitor", compose, local, f"{local.url('monitor:9108')}/metrics", 90, started)
        start_and_wait("prometheus", compose, local, f"{prom}/-/ready", 60, started)

        # both targets up, under the job names of deploy/prometheus/prometheus.yml
        for job in (api_job, monitor_job):
            wait_for(f'up{{job="{job}"}} == 1', lambda job=job: scalar(prom, f'up{{job="{job}"}}') == 1, 60, started)
        # before any traffic the monitor has judged a window, and it is not red (-1: not enough data)
        before = wait_for(
            "a driftlight_monitor_status sample before the drill",
            lambda: (v := scalar(prom, "driftlight_monitor_status")) is not None and (v,),
            60,
            started,
        )[0]
        assert before != 2, f"the monitor is already red before any traffic (status {before})"

        # A drill through the compose `drill` service: its traffic is tagged and kept out of the
        # real light (the monitor loop below never judges it), and the drill itself must pass.
        compose_drill = copy.deepcopy(compose)
        compose_drill["services"]["drill"]["command"] = ["heat-wave"]  # `docker compose run --rm drill heat-wave`
        drill = run_once("drill", compose_drill, local, 240, started)
        assert "--url" in drill.argv and local.url("api:8000") in drill.argv, drill.argv

        # Real traffic with broken data: 2,000 flights whose temperature a caller sends in °C.
        from data_contracts.contract import load_contract
        from data_contracts.windows import select_window
        from drills.replay import replay_frame
        from training.data import load_flights

        contract = load_contract()
        week = select_window(load_flights(), contract, date(2013, 3, 18), date(2013, 3, 24)).head(2000)
        celsius = week.assign(temp=((week["temp"] - 32.0) * 5.0 / 9.0).round(1))
        sent = replay_frame(local.url("api:8000"), celsius, contract, batch_size=250, send_labels=False)
        assert sent.served == 2000 and sent.failed_requests == 0, sent.errors[:3]

        status = wait_for("driftlight_monitor_status == 2", lambda: scalar(prom, "driftlight_monitor_status") == 2, 90, started)
        assert status
        critical = scalar(prom, 'driftlight_monitor_reasons{severity="critical"}')
        assert critical is not None and critical >= 1, f"critical reasons for temperature in °C: {critical}"
        predictions = scalar(prom, f'sum(driftlight_predictions_total{{job="{api_job}"}})')
        assert predictions is not None and predictions >= 4000, f"predictions counted by Prometheus: {predictions}"
        # The loop may first judge the window while the log writer is still committing the rows
        # (it turned red on 1,841 of them once): wait for a run that sees them all.
        rows = wait_for(
            "driftlight_monitor_rows >= 2000",
            lambda: (v := scalar(prom, f'driftlight_monitor_rows{{job="{monitor_job}"}}')) is not None and v >= 2000 and (v,),
            60,
            started,
        )[0]
        assert rows >= 2000, f"rows in the monitor's window: {rows}"
        # the status history Prometheus stored has both sides of the change
        low = scalar(prom, "min_over_time(driftlight_monitor_status[10m])")
        high = scalar(prom, "max_over_time(driftlight_monitor_status[10m])")
        assert low is not None and low < 2 and high == 2, f"status over the run: min {low}, max {high}"

        # the alert rules of deploy/prometheus/alerts.yml are loaded and evaluate against the real metrics
        alerts = yaml.safe_load((PROM_DIR / "alerts.yml").read_text(encoding="utf-8"))
        expected = {r["alert"] for g in alerts["groups"] for r in g["rules"]}
        groups = httpx.get(f"{prom}/api/v1/rules", timeout=5.0).json()["data"]["groups"]
        loaded = {r["name"]: r for g in groups for r in g["rules"]}
        assert expected <= set(loaded), f"alert rules missing in Prometheus: {expected - set(loaded)}"
        assert "DriftlightRed" in expected
        broken = {n: r.get("lastError") for n, r in loaded.items() if r.get("health") == "err"}
        assert not broken, f"alert rules failing to evaluate: {broken}"
        wait_for(
            "DriftlightRed firing",
            lambda: promql(prom, 'ALERTS{alertname="DriftlightRed", alertstate="firing"}'),
            30,
            started,
        )
    finally:
        for svc in reversed(started):
            stop(svc)


@pytest.mark.parametrize(
    ("service", "spoil", "code"),
    [
        ("api", lambda cmd: ["driftlight", "serv", *cmd[2:]], 2),  # a subcommand that does not exist
        ("api", lambda cmd: [*cmd[:-1], "0"], 2),  # `--workers 0`: the settings refuse to start
        ("trainer", lambda cmd: ["driftlight", "trian", *cmd[2:]], 2),  # the one-shot too
    ],
    ids=["api-unknown-subcommand", "api-workers-0", "trainer-unknown-subcommand"],
)
def test_a_compose_command_that_does_not_start_fails_fast_naming_the_service(tmp_path, service, spoil, code):
    compose = load_compose()
    command = compose["services"][service]["command"]
    if service == "api":
        assert command[-2] == "--workers", command  # the spoil edits the workers' value
    compose["services"][service]["command"] = spoil(command)
    local = Local(tmp_path, {"driftlight": "driftlight_it_unused", "mlflow": "driftlight_it_unused"})
    started: list[Service] = []
    t0 = time.monotonic()
    try:
        with pytest.raises(ServiceFailed) as err:
            if service == "trainer":
                run_once(service, compose, local, 60, started)
            else:
                start_and_wait(service, compose, local, f"{local.url('api:8000')}/ready", 60, started)
    finally:
        for svc in started:
            stop(svc)
    assert f"compose service {service!r} exited with code {code}" in str(err.value), str(err.value)
    assert time.monotonic() - t0 < 30, "a command that cannot start should be reported at once, not after a timeout"
