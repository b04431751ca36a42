"""POST /predict and /predict/batch: validate (contract model), score, log, answer.

(No `from __future__ import annotations`: FastAPI must see the request models, which are built
from the contract at start, as real objects.)
"""

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response

from service.context import ServiceContext
from service.errors import ERROR_RESPONSES, ErrorOut, error_response, item, public_reason
from service.schemas import BatchOut, PredictionOut, batch_models
from service.scoring import answer, score


def not_ready(ctx: ServiceContext) -> JSONResponse:
    """503: nothing can serve (no model loaded and the fallback disabled, or not loaded yet)."""
    disabled = ctx.settings.fallback == "none"
    message = "no model is loaded and the fallback is disabled" if disabled else "no model is loaded"
    return error_response(
        503,
        "no_model",
        message,
        [item("model", "unavailable", "a champion model", None, public_reason(ctx.holder.load_error) or "")],
    )


DRILL_HEADER = "X-Driftlight-Drill"
DrillTag = Annotated[
    str | None,
    Header(
        alias=DRILL_HEADER,
        pattern=r"^[a-z0-9][a-z0-9-]{0,63}$",
        description="the name of the drill this traffic belongs to: served as usual, kept out of the real "
        "light, its hysteresis and retraining (DRIFTLIGHT_DRILLS; on in dev, off in prod)",
    ),
]


def drills_disabled(tag: str) -> JSONResponse:
    """403: drill traffic is not accepted by this service (it would hide from the real light)."""
    why = item(DRILL_HEADER, "disabled", "no drill header, or DRIFTLIGHT_DRILLS=true", tag, "drill traffic is disabled")
    return error_response(403, "drills_disabled", f"drills are disabled: set DRIFTLIGHT_DRILLS=true to run {tag!r}", [why])


PREDICT_RESPONSES = {**ERROR_RESPONSES, 403: {"model": ErrorOut, "description": "Drill traffic refused (DRIFTLIGHT_DRILLS)"}}


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["predict"])
    Record: Any = ctx.record_model
    BatchIn, _ = batch_models(ctx.record_model, ctx.settings.max_batch)
    drills = ctx.settings.drills_allowed

    @r.post("/predict", response_model=PredictionOut, responses=PREDICT_RESPONSES)
    async def predict(record: Record, drill: DrillTag = None) -> Response:
        """Score one flight (contract fields). The prediction is logged off the request path.

        If the model is unavailable or raises, the non-ML fallback answers (`served_by`)."""
        if drill is not None and not drills:
            return drills_disabled(drill)
        recs = [record.__dict__]
        scored = score(ctx, recs)
        if scored is None:
            return not_ready(ctx)
        body = answer(ctx, recs, scored, drill=drill is not None)[0]
        return await ctx.acknowledged() or JSONResponse(body)

    @r.post("/predict/batch", response_model=BatchOut, responses=PREDICT_RESPONSES)
    async def predict_batch(batch: BatchIn, drill: DrillTag = None) -> Response:  # type: ignore[valid-type]
        """Score up to `max_batch` flights in one call (about 250x cheaper per row than one by one)."""
        if drill is not None and not drills:
            return drills_disabled(drill)
        recs = [rec.__dict__ for rec in batch.records]  # type: ignore[attr-defined]
        scored = score(ctx, recs)
        if scored is None:
            return not_ready(ctx)
        body = {"model_name": ctx.holder.model_name, "model_version": scored.version, "threshold": scored.threshold}
        body["predictions"] = answer(ctx, recs, scored, drill=drill is not None)
        return await ctx.acknowledged() or JSONResponse(body)

    return r
