"""POST /predict and /predict/batch: validate (contract model), score, log, answer.

(No `from __future__ import annotations`: FastAPI must see the request models, which are built
from the contract at start, as real objects.)
"""

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response

from data_contracts.contract import REJECTED_RECORDS
from service.context import ServiceContext
from service.errors import (
    ERROR_RESPONSES,
    ErrorOut,
    SafeJSONResponse,
    describe_errors,
    error_response,
    item,
    metric_field,
    public_reason,
)
from service.schemas import BatchOut, InvalidRecord, PredictionOut, batch_models
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


def book_refused(ctx: ServiceContext, detail: Sequence[Mapping[str, Any]], records: list[Any], *, drill: bool) -> None:
    """Count refused records for the light (they never reach the log): per field and kind
    (Prometheus, and the violation store the monitor reads), the records once each, and the records
    by their own event hour (so a window judged by event time sees them). A drill's are kept apart."""
    for d in detail:
        name = metric_field(d["field"], ctx.contract)
        ctx.metrics.violations.labels(name, d["kind"]).inc()
        if ctx.violations is not None:
            ctx.violations.add(name, d["kind"], drill=drill)
    if ctx.violations is not None:
        ctx.violations.add(*REJECTED_RECORDS, len(records) or 1, drill=drill)
        ctx.violations.add_event_hours(records, ctx.contract.timestamp_field, drill=drill)


def record_errors(ctx: ServiceContext, bad: Sequence[tuple[int, InvalidRecord]]) -> list[dict[str, Any]]:
    """The error items of refused batch records, each with its index and a `records[i].field` path."""
    out = []
    for i, rec in bad:
        errs = [{**e, "loc": ("body", "records", i, *e.get("loc", ()))} for e in rec.errors]
        out += [{"index": i, **d} for d in describe_errors(errs, ctx.contract)]
    return out


def as_booked(ctx: ServiceContext, rec: Any) -> Any:
    """What the door books of a record: the raw input of a refused one; a valid one refused with its
    batch (atomic) as its event time in ISO form (its hour is booked like the others')."""
    if isinstance(rec, InvalidRecord):
        return rec.raw
    ts = ctx.contract.timestamp_field
    value = rec.__dict__.get(ts)
    return {ts: value.isoformat() if hasattr(value, "isoformat") else value}


ATOMIC_HELP = (
    "true: refuse the whole batch (422) when any record violates the contract (all or nothing); "
    "false (default): serve the valid records and report each refused one in `errors`"
)

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
    async def predict_batch(
        batch: BatchIn,  # type: ignore[valid-type]
        drill: DrillTag = None,
        atomic: Annotated[bool, Query(description=ATOMIC_HELP)] = False,
    ) -> Response:
        """Score up to `max_batch` flights in one call (about 250x cheaper per row than one by one).

        Per item by default: the valid records are scored and logged, each refused record is
        reported in `errors` (index, field, expected, received) and counted at the door for the
        monitor; 422 when no record is valid, or when any is invalid with `atomic=true`."""
        if drill is not None and not drills:
            return drills_disabled(drill)
        items = batch.records  # type: ignore[attr-defined]
        bad = [(i, rec) for i, rec in enumerate(items) if isinstance(rec, InvalidRecord)]
        if bad:
            refused = items if atomic or len(bad) == len(items) else [rec for _, rec in bad]
            detail = record_errors(ctx, bad)
            book_refused(ctx, detail, [as_booked(ctx, rec) for rec in refused], drill=drill is not None)
            if len(refused) == len(items):
                fields = ", ".join(sorted({d["field"] for d in detail})[:10])
                return error_response(422, "contract_violation", f"invalid input in: {fields}", detail)
        else:
            detail = []
        index = [i for i, rec in enumerate(items) if not isinstance(rec, InvalidRecord)]
        recs = [items[i].__dict__ for i in index]
        scored = score(ctx, recs)
        if scored is None:
            return not_ready(ctx)
        body: dict[str, Any] = {"model_name": ctx.holder.model_name, "model_version": scored.version}
        body["threshold"] = scored.threshold
        body["served"], body["refused"] = len(recs), len(bad)
        preds = answer(ctx, recs, scored, drill=drill is not None)
        body["predictions"] = [{"index": i, **p} for i, p in zip(index, preds, strict=True)]
        body["errors"] = detail  # echoes what the caller sent: rendered safely (a lone surrogate is escaped)
        return await ctx.acknowledged() or SafeJSONResponse(body)

    return r
