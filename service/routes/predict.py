"""POST /predict and /predict/batch: validate (contract model), score, log, answer.

(No `from __future__ import annotations`: FastAPI must see the request models, which are built
from the contract at start, as real objects.)
"""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from service.context import ServiceContext
from service.errors import ERROR_RESPONSES, error_response, item
from service.schemas import BatchOut, PredictionOut, batch_models
from service.scoring import answer, score


def not_ready(ctx: ServiceContext) -> JSONResponse:
    """503: nothing can serve (no model loaded and the fallback disabled, or not loaded yet)."""
    disabled = ctx.settings.fallback == "none"
    message = "no model is loaded and the fallback is disabled" if disabled else "no model is loaded"
    return error_response(
        503, "no_model", message, [item("model", "unavailable", "a champion model", None, ctx.holder.load_error or "")]
    )


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["predict"])
    Record: Any = ctx.record_model
    BatchIn, _ = batch_models(ctx.record_model, ctx.settings.max_batch)

    @r.post("/predict", response_model=PredictionOut, responses=ERROR_RESPONSES)
    async def predict(record: Record) -> Response:
        """Score one flight (contract fields). The prediction is logged off the request path.

        If the model is unavailable or raises, the non-ML fallback answers (`served_by`)."""
        recs = [record.__dict__]
        scored = score(ctx, recs)
        if scored is None:
            return not_ready(ctx)
        return JSONResponse(answer(ctx, recs, scored)[0])

    @r.post("/predict/batch", response_model=BatchOut, responses=ERROR_RESPONSES)
    async def predict_batch(batch: BatchIn) -> Response:  # type: ignore[valid-type]
        """Score up to `max_batch` flights in one call (about 250x cheaper per row than one by one)."""
        recs = [rec.__dict__ for rec in batch.records]  # type: ignore[attr-defined]
        scored = score(ctx, recs)
        if scored is None:
            return not_ready(ctx)
        body = {"model_name": ctx.holder.model_name, "model_version": scored.version, "threshold": scored.threshold}
        return JSONResponse({**body, "predictions": answer(ctx, recs, scored)})

    return r
