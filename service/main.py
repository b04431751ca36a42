"""Entry point for uvicorn worker processes: `uvicorn service.main:app_from_env --factory`.

Each worker builds its own settings from the environment (`DRIFTLIGHT_*`) here, at the edge;
`driftlight serve` sets that environment from its options before starting the workers.
"""

from fastapi import FastAPI

from core.settings import Settings
from service import limits
from service.app import create_app


def app_from_env() -> FastAPI:
    settings = Settings()
    limits.configure(settings)
    return create_app(settings)
