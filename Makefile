# The few targets people type. `make demo` and `make test` set up the pinned environment first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

export MLFLOW_DISABLE_TELEMETRY = true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR = false
export GIT_PYTHON_REFRESH = quiet

.PHONY: setup demo test test-fast lint format bench snapshots clean

setup: $(STAMP)

# Exact versions: pyproject pins the direct dependencies, requirements.lock the whole resolved set.
$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[dev,spark]'
	touch $(STAMP)

demo: setup
	$(BIN)/driftlight demo

test: setup
	$(BIN)/pytest -q --durations=20

test-fast: setup
	$(BIN)/pytest -q -m "unit"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup
	$(BIN)/python -m benchmarks.run
	$(BIN)/python -m benchmarks.bench_monitor

# Regenerate the checked-in contract JSON Schema and OpenAPI document after a reviewed change.
snapshots: setup
	$(BIN)/python -m scripts.snapshots

clean:
	rm -rf .driftlight .pytest_cache .ruff_cache
