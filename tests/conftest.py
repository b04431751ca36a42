"""Shared fixtures. Tests are an entry point: they set the process switches MLflow reads at import."""

from __future__ import annotations

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path

import pytest

from tests.rows import GOOD_RECORD

FOLDER_MARKERS = ("unit", "data", "model", "integration", "drills", "spark")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test by the folder it lives in (tests/unit -> @pytest.mark.unit, ...)."""
    for item in items:
        parts = Path(str(item.fspath)).parts
        for name in FOLDER_MARKERS:
            if name in parts:
                item.add_marker(getattr(pytest.mark, name))


@pytest.fixture(scope="session")
def contract():
    from data_contracts.contract import load_contract

    return load_contract()


@pytest.fixture(scope="session")
def flights():
    from training.data import load_flights

    return load_flights()


@pytest.fixture(scope="session")
def trained(tmp_path_factory, contract):
    """A model trained the default way into a throwaway home (MLflow on SQLite): (settings, result)."""
    from core.registry import registry_from_settings
    from core.settings import Settings
    from data_contracts.contract import contract_path
    from training.train import TrainConfig, train

    home = tmp_path_factory.mktemp("home")
    settings = Settings(home=home)
    result = train(contract, registry_from_settings(settings), TrainConfig(), contract_yaml=contract_path().read_text())
    return settings, result


@pytest.fixture(scope="session")
def bundle(trained):
    from core.registry import registry_from_settings

    settings, result = trained
    return registry_from_settings(settings).load(settings.model_name, result.version)


@pytest.fixture
def good_record(good_record_base) -> dict:
    return dict(good_record_base)


@pytest.fixture(scope="session")
def good_record_base() -> dict:
    """A valid record (contract fields, JSON form); tests get a fresh copy via `good_record`."""
    return dict(GOOD_RECORD)
