"""Fixtures for integration tests: a throwaway PostgreSQL database and a way to take it down."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _admin():
    import sqlalchemy as sa

    return sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")


def reachable_admin():  # type: ignore[no-untyped-def]
    """An AUTOCOMMIT engine on the local PostgreSQL, or skip the test with the reason."""
    import sqlalchemy as sa

    try:
        admin = _admin()
        with admin.connect() as c:
            c.execute(sa.text("select 1"))
    except Exception as exc:  # a user's machine without PostgreSQL
        pytest.skip(f"PostgreSQL is not reachable at 127.0.0.1:5432 ({type(exc).__name__}); .ci/run starts it")
    return admin


@pytest.fixture
def pg_url() -> Iterator[str]:
    """URL of a fresh database on the local PostgreSQL, dropped afterwards (skips if unreachable)."""
    import sqlalchemy as sa

    admin = reachable_admin()
    name = f"driftlight_it_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


@contextlib.contextmanager
def pg_outage(url: str) -> Iterator[None]:
    """The database refuses connections and loses its sessions until the block ends: a real outage."""
    import sqlalchemy as sa

    name = url.rsplit("/", 1)[1]
    admin = _admin()
    with admin.connect() as c:
        c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        c.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
    try:
        yield
    finally:
        with admin.connect() as c:
            c.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()


@pytest.fixture
def served(trained, tmp_path):
    """(settings, client): the trained model behind an in-process app with its own SQLite log."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings, _ = trained
    s = settings.model_copy(
        update={
            "log_store_url": f"sqlite:///{tmp_path / 'log.db'}",
            "home": tmp_path,
            "tracking_uri": settings.resolved_tracking_uri,
            "artifact_root": settings.resolved_artifact_root,
        }
    )
    with TestClient(create_app(s)) as client:
        yield s, client
