"""The baseline endpoint for the serving benchmark: FastAPI + the same fitted sklearn Pipeline, nothing else.

No contract model, no log, no metrics: the JSON body is taken as a plain dict and scored with
`pipeline.predict_proba(pd.DataFrame([body]))`, the way a minimal service would do it.
Started by benchmarks/run.py as `uvicorn benchmarks.bare_app:app_from_env --factory`.
"""

from __future__ import annotations

import os

import pandas as pd
from fastapi import FastAPI, Request


def app_from_env() -> FastAPI:
    from core.registry import MlflowRegistry

    registry = MlflowRegistry(os.environ["BENCH_TRACKING_URI"], os.environ["BENCH_ARTIFACT_ROOT"])
    version = registry.alias_version("flights-late", "champion")
    pipeline = registry.load("flights-late", str(version)).pipeline
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, float]:
        body = await request.json()
        return {"probability": float(pipeline.predict_proba(pd.DataFrame([body]))[0, 1])}

    return app
