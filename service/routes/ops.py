"""Operations: /health, /ready, /model, /contract, /status, /metrics."""

from datetime import datetime
from pathlib import PurePath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from data_contracts.request_model import json_schema
from service.context import ServiceContext
from service.errors import ErrorOut, error_response, item, public_reason
from service.lifecycle import FALLBACK_VERSION
from service.routes.admin import is_admin
from service.routes.predict import not_ready


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def status_body(latest: dict[str, Any], *, paths: bool = True) -> dict[str, Any]:
    """The latest run as GET /status shows it; without `paths`, report files by name only."""
    reports = latest["summary"].get("reports", {})
    if not paths:
        reports = {k: PurePath(str(v)).name for k, v in reports.items()}
    return {
        "status": latest["status"],
        "raw_status": latest["raw_status"],
        "reasons": latest["reasons"],
        "finished_at": latest["finished_at"].isoformat(),
        "window": [_iso(latest["window_start"]), _iso(latest["window_end"])],
        "window_by": latest["window_by"],
        "model_version": latest["model_version"],
        "rows": latest["rows"],
        "reports": reports,
        "drill": latest.get("drill"),
        # Red on broken data: why no retrain was asked (fix the feed first; monitoring.policy.retrain_hold).
        "retrain_withheld": latest["summary"].get("retrain_withheld"),
    }


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["ops"])
    holder, contract, metrics = ctx.holder, ctx.contract, ctx.metrics

    @r.get("/health")
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @r.get("/ready", responses={503: {"model": ErrorOut}})
    async def ready(request: Request) -> Response:
        """Readiness and what serves: 200 with `served_by` model or fallback; `status` degraded
        (with the reasons) when the fallback serves or the log store is unreachable (rows wait in
        memory and the spool); 503 when nothing can serve, or when the spool disk is full (fail
        closed: take this worker out of rotation before memory rows are at risk)."""
        model, fb = holder.model, holder.fallback
        pending = ctx.log.pending() if ctx.log is not None else 0
        health = getattr(ctx.log, "health", None)
        log_problem = health() if callable(health) else None
        disk_full = getattr(ctx.log, "disk_full", None)
        if callable(disk_full) and disk_full():
            return error_response(
                503,
                "log_spool_full",
                "the prediction log's spool disk is full: free space in DRIFTLIGHT_HOME/spool",
                [item("log", "unavailable", "a writable spool folder", None, log_problem or "disk full")],
            )
        if model is not None:
            body: dict[str, Any] = {
                "status": "degraded" if log_problem else "ready",
                "model_name": model.name,
                "model_version": model.version,
                "served_by": "model",
                "shadow_version": holder.shadow.version if holder.shadow else None,
                "log_pending": pending,
                "log": log_problem,
            }
            if holder.fleet is not None:
                f = holder.fleet
                body["fleet"] = {"name": f.spec.name, "segment_champions": f.expected, "loaded": len(f.models)}
            return JSONResponse(body)
        if fb is None:
            return not_ready(ctx)
        body = {
            "status": "degraded",
            "model_name": holder.model_name,
            "model_version": FALLBACK_VERSION,
            "served_by": "fallback",
            "fallback_source": fb.source,
            "reason": holder.load_error if is_admin(ctx, request) else public_reason(holder.load_error),
            "log_pending": pending,
            "log": log_problem,
        }
        return JSONResponse(body)

    @r.get("/model", responses={503: {"model": ErrorOut}})
    async def model_info() -> Response:
        """Name, version, alias, training window, validation metrics and contract version."""
        model = holder.model
        if model is None:
            return not_ready(ctx)
        return JSONResponse({**model.describe(contract), "reloads": holder.reloads})

    @r.get("/contract")
    async def contract_schema() -> dict[str, Any]:
        """The JSON Schema of one record, derived from the contract."""
        return json_schema(contract)

    @r.get("/status")
    async def status(request: Request) -> Response:
        """The latest monitor verdict (green / yellow / red) with its reasons, from the run store.

        Report files are named without their folder unless the admin token is sent."""
        try:
            latest = await run_in_threadpool(ctx.run_store().latest)
            drill = await run_in_threadpool(lambda: ctx.run_store().latest(drill=True))
        except Exception as exc:  # the store is down: say so, do not fail
            return JSONResponse({"status": "unknown", "reason": f"run store unavailable: {type(exc).__name__}"}, status_code=503)
        if latest is None:
            return JSONResponse({"status": "unknown", "reason": "no monitor run yet: run `driftlight monitor`"})
        body = status_body(latest, paths=is_admin(ctx, request))
        if drill is not None and drill["finished_at"] > latest["finished_at"]:
            # shown beside the light, never as it: a drill's colour is the drill's
            body["latest_drill"] = {k: status_body(drill)[k] for k in ("drill", "status", "finished_at", "window")}
        return JSONResponse(body)

    @r.get(
        "/metrics",
        include_in_schema=True,
        response_class=Response,
        responses={200: {"description": "Prometheus text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prom() -> Response:
        """Prometheus exposition (all workers aggregated in multiprocess mode)."""
        if ctx.log is not None:
            metrics.set_pending(ctx.log.pending())
        data, ctype = metrics.exposition()
        return Response(data, media_type=ctype)

    return r
