"""POST /feedback and /feedback/batch: the delayed truth, joined to predictions by id."""

from datetime import UTC, datetime

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from core.ids import is_ours
from service.context import ServiceContext
from service.errors import ERROR_RESPONSES, error_response, received_value
from service.errors import item as error_item
from service.schemas import FeedbackIn, FeedbackOut, batch_models


def unknown_ids(ids: list[tuple[str, str]]) -> JSONResponse:
    """404 naming every id this service never issued."""
    detail = [
        error_item(f, "unknown_id", "an id returned by /predict", received_value(v), "unknown prediction_id") for f, v in ids
    ]
    return error_response(404, "unknown_prediction_id", "no prediction was issued with this id", detail)


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["feedback"])
    _, FeedbackBatchIn = batch_models(ctx.record_model, ctx.settings.max_batch)
    key = ctx.id_key

    async def store(items: list[FeedbackIn]) -> JSONResponse:
        assert ctx.log is not None, "the log writer is opened in start()"
        now = datetime.now(UTC)
        for it in items:
            ctx.log.log_label({"prediction_id": it.prediction_id, "label": it.label, "received_at": now})
        ctx.metrics.labels.inc(len(items))
        return await ctx.acknowledged() or JSONResponse({"accepted": len(items), "status": "accepted"}, status_code=202)

    @r.post("/feedback", response_model=FeedbackOut, status_code=202, responses=ERROR_RESPONSES)
    async def feedback(item: FeedbackIn) -> Response:
        """Record the true outcome of a prediction (idempotent; a later label corrects an earlier one)."""
        if not is_ours(item.prediction_id, key):
            return unknown_ids([("prediction_id", item.prediction_id)])
        return await store([item])

    @r.post("/feedback/batch", response_model=FeedbackOut, status_code=202, responses=ERROR_RESPONSES)
    async def feedback_batch(batch: FeedbackBatchIn) -> Response:  # type: ignore[valid-type]
        """Labels in bulk; all or nothing: one unknown id rejects the batch (and says which)."""
        items = batch.labels  # type: ignore[attr-defined]
        bad = [
            (f"labels[{i}].prediction_id", it.prediction_id) for i, it in enumerate(items) if not is_ours(it.prediction_id, key)
        ]
        if bad:
            return unknown_ids(bad)
        return await store(items)

    return r
