# syntax=docker/dockerfile:1
# One image for every driftlight process of docker-compose.yml: trainer, api, monitor, replayer,
# drill and the MLflow tracking server (mlflow is a dependency, psycopg included).
# Build: docker build -t driftlight:local .   Run: docker run --rm driftlight:local driftlight --help
FROM python:3.11-slim

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

# Dependencies and the package, pinned by the lock (pyproject's readme must be present to build).
COPY pyproject.toml requirements.lock README.md ./
COPY data_contracts ./data_contracts
COPY driftlight ./driftlight
COPY features ./features
COPY monitoring ./monitoring
COPY service ./service
COPY training ./training
COPY drills ./drills
COPY scripts ./scripts
# The smoke check (run from /, so the installed package is imported, not /app) fails the build
# when package data the processes need at run time (policy, contract) is missing from the install.
RUN pip install --no-cache-dir -c requirements.lock . \
 && rm -rf build ./*.egg-info \
 && cd / \
 && driftlight --help > /dev/null \
 && python -c "from monitoring.policy import load_policy; from data_contracts.contract import load_contract; load_policy(); load_contract()"

# Writable places, owned by the runtime user; named volumes mounted here inherit the ownership.
RUN mkdir -p /data /mlartifacts /tmp/prom \
 && chown -R driftlight:driftlight /data /mlartifacts /tmp/prom

USER driftlight

EXPOSE 8000 5000 9108

# The API's liveness; compose overrides it per service (mlflow, monitor) or disables it (one-shot jobs).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:8000/health', timeout=4)"]

CMD ["driftlight", "--help"]
