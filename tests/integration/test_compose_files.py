"""The deployment files agree with the schemas, the tools and the code they deploy.

- docker-compose.yml is valid against the Compose specification (check-jsonschema's vendored schema),
- Prometheus accepts its config and alert rules (promtool),
- every driftlight command in compose names a real CLI command with options it accepts,
- no secret has a working default,
- every metric the Grafana dashboard and the alerts query is one the service or the monitor exports.

Each check has a negative control, so a check that cannot fail is caught.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROM_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
PROM_ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "driftlight.json"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDER = ROOT / "deploy" / "grafana" / "provisioning" / "dashboards" / "driftlight.yml"

SECRETS = ("POSTGRES_PASSWORD", "DRIFTLIGHT_ID_SECRET", "DRIFTLIGHT_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD")
METRIC_RE = re.compile(r"\bdriftlight_[A-Za-z0-9_:]*")
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


# -- a. the Compose specification ---------------------------------------------------------------


def check_jsonschema() -> str:
    exe = shutil.which("check-jsonschema") or str(Path(sys.executable).parent / "check-jsonschema")
    if not Path(exe).exists():
        pytest.fail("check-jsonschema is missing: it is in the dev extra (pip install -c requirements.lock -e '.[dev]')")
    return exe


def compose_schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_compose_file_matches_the_compose_spec():
    r = compose_schema_check(COMPOSE)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize(
    "spoil",
    [
        lambda doc: doc["services"]["api"]["depends_on"]["trainer"].update(condition="service_sometimes"),
        lambda doc: doc["services"]["api"].update(retsart="always"),
        lambda doc: doc.update(deployment={"replicas": 2}),
    ],
    ids=["bad-depends-on-condition", "misspelt-service-key", "unknown-top-level-key"],
)
def test_compose_schema_check_rejects_an_invalid_file(tmp_path, spoil):
    doc = load_compose()
    spoil(doc)
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    r = compose_schema_check(bad)
    assert r.returncode != 0, "the schema check accepted an invalid compose file"


def test_compose_has_no_version_key_and_the_documented_start_order():
    doc = load_compose()
    assert "version" not in doc
    services = doc["services"]

    def condition(service: str, dep: str) -> str:
        return services[service]["depends_on"][dep]["condition"]

    assert condition("mlflow", "postgres") == "service_healthy"
    assert condition("trainer", "mlflow") == "service_healthy"
    assert condition("api", "trainer") == "service_completed_successfully"
    assert condition("monitor", "api") == "service_healthy"
    assert condition("replayer", "api") == "service_healthy"
    assert services["trainer"]["restart"] == "no"
    assert services["drill"]["profiles"] == ["tools"]
    for name in ("postgres", "mlflow", "api"):
        assert "healthcheck" in services[name] and not services[name]["healthcheck"].get("disable"), name
    assert "/ready" in " ".join(services["api"]["healthcheck"]["test"])


# -- b. promtool ------------------------------------------------------------------------------------


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("promtool missing in CI: apt-get install -y --no-install-recommends prometheus")
        pytest.skip("promtool missing: apt-get install -y --no-install-recommends prometheus")
    return exe


@pytest.mark.parametrize(("what", "path"), [("config", PROM_CONFIG), ("rules", PROM_ALERTS)])
def test_promtool_accepts_the_prometheus_files(what, path):
    r = subprocess.run([promtool(), "check", what, str(path)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_rejects_a_broken_rule(tmp_path):
    exe = promtool()
    doc = yaml.safe_load(PROM_ALERTS.read_text(encoding="utf-8"))
    doc["groups"][0]["rules"][0]["expr"] = "driftlight_monitor_status =="
    bad = tmp_path / "alerts.yml"
    bad.write_text(yaml.safe_dump(doc), encoding="utf-8")
    r = subprocess.run([exe, "check", "rules", str(bad)], capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode != 0


def test_every_alert_has_severity_summary_and_description():
    doc = yaml.safe_load(PROM_ALERTS.read_text(encoding="utf-8"))
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {
        "DriftlightYellow",
        "DriftlightRed",
        "DriftlightApiDown",
        "DriftlightMonitorDown",
        "DriftlightMonitorStale",
        "DriftlightContractViolationBurst",
        "DriftlightLogBacklog",
        "DriftlightNoModel",
    } <= names
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]
    jobs = {sc["job_name"] for sc in yaml.safe_load(PROM_CONFIG.read_text(encoding="utf-8"))["scrape_configs"]}
    for rule in rules:
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, (rule["alert"], job)


# -- c. compose commands against the real CLI --------------------------------------------------------


def driftlight_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Services running the image built from ./Dockerfile."""
    return {name: svc for name, svc in doc["services"].items() if "build" in svc or "driftlight" in str(svc.get("image", ""))}


def argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: entrypoint + command, as a list of words."""
    words: list[str] = []
    for key in ("entrypoint", "command"):
        value = service.get(key)
        if value is None:
            continue
        words += shlex.split(value) if isinstance(value, str) else [str(v) for v in value]
    return words


def cli_commands() -> tuple[set[str], Any]:
    """The driftlight app's command names, and its click group (built by typer)."""
    import typer.main

    import driftlight.cli

    names = {c.name or c.callback.__name__.replace("_", "-") for c in driftlight.cli.app.registered_commands}
    names |= {g.name for g in driftlight.cli.app.registered_groups if g.name}  # sub-apps (`driftlight fleet ...`)
    group = typer.main.get_command(driftlight.cli.app)
    assert names == set(group.commands), (names, set(group.commands))
    return names, group


def mlflow_cli() -> Any:
    from mlflow.cli import cli

    return cli


def option_names(command: Any) -> set[str]:
    out: set[str] = set()
    for param in command.params:
        out.update(param.opts)
        out.update(param.secondary_opts)
    return out


SPARK_CLASSES = {"org.apache.spark.deploy.master.Master", "org.apache.spark.deploy.worker.Worker"}


def spark_services(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in doc["services"].items() if "spark" in (svc.get("profiles") or [])}


def spark_class_problems(name: str, words: list[str]) -> list[str]:
    """A `spark-class CLASS ...` command: a standalone daemon class that the pinned pyspark wheel
    (the one the spark image installs) really ships, and a master URL a worker can reach."""
    import zipfile

    if len(words) < 2 or words[1] not in SPARK_CLASSES:
        return [f"{name}: spark-class must run one of {sorted(SPARK_CLASSES)}, got {words[1:2]}"]
    try:
        import pyspark
    except ImportError:  # the class check needs the wheel; the rest still runs
        return []
    jar = next((Path(pyspark.__file__).parent / "jars").glob("spark-core_*.jar"))
    with zipfile.ZipFile(jar) as z:
        if words[1].replace(".", "/") + ".class" not in z.namelist():
            return [f"{name}: {words[1]} is not in {jar.name}"]
    if words[1].endswith("Worker") and not any(w.startswith("spark://spark-master:") for w in words):
        return [f"{name}: a worker needs the master URL spark://spark-master:PORT"]
    return []


def command_problems(doc: dict[str, Any]) -> list[str]:
    """Every way a driftlight-image service's command disagrees with the CLI it calls."""
    import click
    import typer

    parse_errors = (click.ClickException, typer.TyperException)  # typer >= 0.2x ships its own click
    names, group = cli_commands()
    problems: list[str] = []
    for name, service in driftlight_services(doc).items():
        words = argv(service)
        if words[:1] == ["spark-class"] and name in spark_services(doc):
            problems += spark_class_problems(name, words)
            continue
        if not words or words[0] not in ("driftlight", "mlflow"):
            problems.append(f"{name}: command must start with driftlight or mlflow, got {words[:1]}")
            continue
        if len(words) < 2:
            problems.append(f"{name}: no subcommand in {words}")
            continue
        program, sub, args = words[0], words[1], words[2:]
        if program == "driftlight":
            if sub not in names:
                problems.append(f"{name}: `driftlight {sub}` is not a command (the CLI has {sorted(names)})")
                continue
            command = group.commands[sub]
            while hasattr(command, "commands"):  # a sub-app (typer ships its own click): `driftlight fleet monitor ...`
                if not args or args[0] not in command.commands:
                    what = f"`driftlight {sub} {' '.join(args[:1])}`"
                    problems.append(f"{name}: {what} is not a command of {sorted(command.commands)}")
                    break
                command = command.commands[args[0]]
                sub, args = f"{sub} {args[0]}", args[1:]
            if hasattr(command, "commands"):
                continue
        else:
            cli = mlflow_cli()
            if sub not in cli.commands:
                problems.append(f"{name}: `mlflow {sub}` is not a command")
                continue
            command = cli.commands[sub]
        accepted = option_names(command)
        unknown = [w.split("=", 1)[0] for w in args if w.startswith("--") and w.split("=", 1)[0] not in accepted]
        for opt in unknown:
            problems.append(f"{name}: `{program} {sub}` has no option {opt}")
        if unknown:
            continue
        try:  # parse without running: catches bad values (a word where a number goes) and missing values
            command.make_context(f"{program} {sub}", list(args))
        except parse_errors as exc:
            problems.append(f"{name}: `{program} {sub} {' '.join(args)}` does not parse: {exc.format_message()}")
    return problems


def test_every_compose_command_is_a_real_cli_command_with_real_options():
    doc = load_compose()
    services = driftlight_services(doc)
    assert {"mlflow", "trainer", "api", "monitor", "replayer", "drill"} <= set(services)
    problems = command_problems(doc)
    assert not problems, "\n".join(problems)


def test_the_command_check_rejects_made_up_commands_and_options():
    doc = load_compose()
    names, _ = cli_commands()
    assert "fly-to-the-moon" not in names
    doc["services"]["api"]["command"] = ["driftlight", "fly-to-the-moon"]
    doc["services"]["trainer"]["command"] = ["driftlight", "serve", "--warp-speed", "9"]
    doc["services"]["mlflow"]["command"] = ["mlflow", "server", "--no-such-flag"]
    doc["services"]["replayer"]["command"] = ["python", "-m", "http.server"]
    problems = "\n".join(command_problems(doc))
    assert "`driftlight fly-to-the-moon` is not a command" in problems
    assert "`driftlight serve` has no option --warp-speed" in problems
    assert "`mlflow server` has no option --no-such-flag" in problems
    assert "replayer: command must start with driftlight or mlflow" in problems
    doc["services"]["fleet-monitor"]["entrypoint"] = ["driftlight", "fleet", "fly"]
    doc["services"]["spark-worker"]["command"] = ["spark-class", "org.apache.spark.deploy.Nothing"]
    problems = "\n".join(command_problems(doc))
    assert "fleet-monitor: `driftlight fleet fly` is not a command of" in problems
    assert "spark-worker: spark-class must run one of" in problems
    doc["services"]["fleet-monitor"]["entrypoint"] = ["driftlight", "fleet", "monitor", "--engine-speed", "9"]
    assert "fleet-monitor: `driftlight fleet monitor` has no option --engine-speed" in "\n".join(command_problems(doc))


def test_spark_profile_runs_the_fleet_monitor_on_its_own_master():
    """Profile "spark": master + worker from one image that pins the project's pyspark, and the fleet
    monitor (the driver) pointed at that master; the default `docker compose up` starts none of them."""
    doc = load_compose()
    spark = spark_services(doc)
    assert set(spark) == {"spark-master", "spark-worker", "fleet-monitor"}
    assert all(svc["profiles"] == ["spark"] for svc in spark.values())
    master = argv(spark["spark-master"])
    port = master[master.index("--port") + 1]
    monitor = argv(spark["fleet-monitor"])
    assert monitor[:3] == ["driftlight", "fleet", "monitor"]
    assert monitor[monitor.index("--engine") + 1] == "spark"
    assert monitor[monitor.index("--master") + 1] == f"spark://spark-master:{port}"
    assert f"spark://spark-master:{port}" in argv(spark["spark-worker"])
    assert spark["spark-worker"]["depends_on"]["spark-master"]["condition"] == "service_healthy"
    assert {svc["build"]["dockerfile"] for svc in spark.values()} == {"deploy/spark/Dockerfile"}
    dockerfile = (ROOT / "deploy" / "spark" / "Dockerfile").read_text(encoding="utf-8")
    lock = re.search(r"^pyspark==(\S+)$", (ROOT / "requirements.lock").read_text(encoding="utf-8"), re.M)
    assert lock and f'"pyspark=={lock.group(1)}"' in dockerfile and f"__version__ == '{lock.group(1)}'" in dockerfile
    assert re.search(r"^FROM eclipse-temurin:17[\w.-]+-jre", dockerfile, re.M)  # pinned Java 17, not :latest
    base = spark["spark-master"]["build"]["additional_contexts"]["driftlight-base"]
    assert base.startswith("service:")
    # the driver runs `driftlight fleet monitor`, which needs the [monitor] extra: the full image, not the api's [serve] one
    assert load_compose()["services"][base.removeprefix("service:")]["build"]["target"] == "full", base
    assert "FROM driftlight-base" in dockerfile


def test_the_command_check_rejects_a_bad_option_value():
    doc = load_compose()
    doc["services"]["api"]["command"] = ["driftlight", "serve", "--port", "eighty"]
    assert any("does not parse" in p and p.startswith("api:") for p in command_problems(doc))


def secret_problems(text: str) -> list[str]:
    problems = []
    for name in SECRETS:
        refs = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        if not refs:
            problems.append(f"{name} is never used")
        problems += [f"${{{name}{mod}}} must be ${{{name}:?message}}" for mod in refs if not mod.startswith(":?")]
        problems += [f"${name} is used without ${{{name}:?...}}" for _ in re.findall(r"\$" + name + r"\b", text)]
    return problems


def test_no_secret_has_a_default():
    assert secret_problems(COMPOSE.read_text(encoding="utf-8")) == []
    doc = load_compose()
    env = doc["x-driftlight-env"]
    assert env["DRIFTLIGHT_PROFILE"] == "prod" and env["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_the_secret_check_rejects_defaults():
    text = COMPOSE.read_text(encoding="utf-8")
    spoiled = text.replace("${POSTGRES_PASSWORD:?", "${POSTGRES_PASSWORD:-hunter2", 1) + "\n# $DRIFTLIGHT_ADMIN_TOKEN\n"
    problems = "\n".join(secret_problems(spoiled))
    assert "${POSTGRES_PASSWORD:-hunter2" in problems and "$DRIFTLIGHT_ADMIN_TOKEN is used without" in problems


def test_env_example_names_every_variable_compose_reads():
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*([A-Z_][A-Z0-9_]*)=", example, flags=re.M))
    assert used <= listed, sorted(used - listed)
    for name in SECRETS:
        # Empty: compose's ${NAME:?} refuses it, so `cp .env.example .env && docker compose up`
        # cannot start with a guessable secret (a placeholder such as change-me would pass ${:?}).
        assert re.search(rf"^{name}=$", example, flags=re.M), name
    assert "change-me" not in example


# -- d. dashboard and alerts against a live exposition ---------------------------------------------


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dash["uid"] == "driftlight" and dash["schemaVersion"] == 39
    exprs = []
    stack = list(dash["panels"])
    while stack:
        panel = stack.pop()
        stack += panel.get("panels", [])
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "prometheus", panel["title"]
            exprs.append(target["expr"])
    return exprs


def alert_exprs() -> list[str]:
    doc = yaml.safe_load(PROM_ALERTS.read_text(encoding="utf-8"))
    return [str(rule["expr"]) for group in doc["groups"] for rule in group["rules"]]


def used_metric_names(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC_RE.findall(e)}


def missing_metrics(used: set[str], exposition: str) -> set[str]:
    """Names in `used` that no family or sample of `exposition` provides."""
    from prometheus_client.parser import text_string_to_metric_families

    families: dict[str, str] = {}
    samples: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        families[family.name] = family.type
        samples.update(s.name for s in family.samples)
    live = samples | set(families)
    # A labelled metric with nothing observed yet still declares its family; its series are named so.
    live |= {f"{n}_total" for n, t in families.items() if t == "counter"}
    missing = set()
    for name in used:
        if name in live:
            continue
        base = next((name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if base is not None and families.get(base) == "histogram":
            continue
        missing.add(name)
    return missing


@pytest.fixture(scope="module")
def live_exposition(bundle, good_record_base, tmp_path_factory) -> str:
    """The api's /metrics after one good and one bad /predict, plus the monitor's gauges."""
    from fastapi.testclient import TestClient
    from prometheus_client import generate_latest

    from core.monitor_job import MonitorGauges
    from core.registry import InMemoryRegistry
    from core.settings import Settings
    from service.app import create_app

    home = tmp_path_factory.mktemp("compose-metrics")
    settings = Settings(home=home, log_store_url=f"sqlite:///{home / 'log.db'}")
    registry = InMemoryRegistry()
    version = registry.register(settings.model_name, bundle, params={}, metrics={}, artifacts={}).version
    registry.set_alias(settings.model_name, settings.model_alias, version)
    record = dict(good_record_base)
    with TestClient(create_app(settings, registry=registry)) as client:
        assert client.post("/predict", json=record).status_code == 200
        assert client.post("/predict", json={**record, "humid": 140.0}).status_code == 422
        api_text = client.get("/metrics").text

    # A fleet app with one recorded fleet run (and a retrain queue), for the fleet row's gauges.
    from core.fleet import FleetRunStore
    from data_contracts.fleet import default_fleet_path
    from monitoring.fleet import ModelVerdict

    fleet_url = f"sqlite:///{home / 'fleet.db'}"
    verdict = ModelVerdict("flights-late--EWR-ATL", "1", "EWR-ATL", "red", 900, 1, 400, (), (), 0.001, 0.05, 45.0).as_dict()
    queue = {"items": [{"model": verdict["name"]}], "decisions": [{"model": verdict["name"], "outcome": "refused"}]}
    store = FleetRunStore(fleet_url)
    store.record("routes", "2013-03-16", "local", {"counts": {"red": 1}, "queue": queue}, [verdict])
    store.dispose()
    fleet_settings = Settings(home=home, log_store_url=fleet_url, fleet_file=default_fleet_path(), reload_interval=0)
    with TestClient(create_app(fleet_settings, registry=InMemoryRegistry())) as client:
        fleet_text = client.get("/metrics").text
    api_text += "\n" + "\n".join(line for line in fleet_text.splitlines() if "driftlight_fleet_" in line)

    gauges = MonitorGauges()
    gauges.status.set(1)
    gauges.rows.set(1200)
    gauges.psi.labels("distance").set(0.3)
    gauges.missing.labels("wind_gust").set(0.05)
    gauges.reasons.labels("warning").set(2)
    monitor_text = generate_latest(gauges.registry).decode()
    return api_text + "\n" + monitor_text


def test_dashboard_has_the_promised_panels():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for p in dash["panels"] if p["type"] != "row"]
    assert {p["type"] for p in panels} <= {"timeseries", "stat", "table"}
    status = next(p for p in panels if p["type"] == "stat" and p["targets"][0]["expr"] == "driftlight_monitor_status")
    mapping = status["fieldConfig"]["defaults"]["mappings"][0]["options"]
    steps = status["fieldConfig"]["defaults"]["thresholds"]["steps"]
    colours = {k: v["color"] for k, v in mapping.items()}
    assert colours == {"-1": "blue", "0": "green", "1": "yellow", "2": "red"}
    assert [(s["value"], s["color"]) for s in steps] == [(None, "blue"), (0, "green"), (1, "yellow"), (2, "red")]
    exprs = " ".join(dashboard_exprs())
    for needed in (
        "driftlight_requests_total",
        "histogram_quantile(0.50",
        "histogram_quantile(0.95",
        "histogram_quantile(0.99",
        "driftlight_predictions_total",
        "driftlight_contract_violations_total",
        "driftlight_monitor_psi",
        "driftlight_model_info",
        "driftlight_log_pending_rows",
        "up{",
        "driftlight_fleet_models",
        "driftlight_fleet_worst_model_impact",
        "driftlight_fleet_retrain_queue_length",
        "driftlight_fleet_run_age_seconds",
    ):
        assert needed in exprs, needed
    # The fleet row: counts by colour over time, the worst models as a table, the queue.
    rows = [p for p in dash["panels"] if p["type"] == "row"]
    fleet_row = next(p for p in rows if p["title"] == "Fleet")
    below = [p for p in panels if p["gridPos"]["y"] > fleet_row["gridPos"]["y"]]
    assert {p["type"] for p in below} == {"stat", "timeseries", "table"}
    table = next(p for p in below if p["type"] == "table")
    assert table["targets"][0]["format"] == "table" and table["targets"][0].get("instant") is True
    assert all("driftlight_fleet_" in t["expr"] for p in below for t in p["targets"])
    ds = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]
    assert (ds["uid"], ds["url"]) == ("prometheus", "http://prometheus:9090")
    provider = yaml.safe_load(DASHBOARD_PROVIDER.read_text(encoding="utf-8"))["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_every_dashboard_and_alert_metric_is_exported(live_exposition):
    used = used_metric_names(dashboard_exprs() + alert_exprs())
    assert len(used) >= 15, sorted(used)
    missing = missing_metrics(used, live_exposition)
    assert not missing, f"queried but not exported: {sorted(missing)}"


def test_the_metric_check_reports_a_made_up_name(live_exposition):
    used = used_metric_names(["sum(rate(driftlight_made_up_total[5m])) + driftlight_requests_total"])
    assert missing_metrics(used, live_exposition) == {"driftlight_made_up_total"}
    # a histogram suffix on something that is not a histogram is not excused
    assert missing_metrics({"driftlight_model_loaded_bucket"}, live_exposition) == {"driftlight_model_loaded_bucket"}


def test_every_driftlight_variable_compose_sets_is_a_setting():
    """An unknown DRIFTLIGHT_* name would be ignored silently: each one compose sets must be a Settings field."""
    from core.settings import Settings

    doc = load_compose()
    fields = {f"DRIFTLIGHT_{name.upper()}" for name in Settings.model_fields}
    for name, service in driftlight_services(doc).items():
        env = service.get("environment") or {}
        unknown = sorted(k for k in env if k.startswith("DRIFTLIGHT_") and k not in fields)
        assert not unknown, (name, unknown)
    assert "DRIFTLIGHT_ADMIN_TOKEN" in doc["x-driftlight-env"]
