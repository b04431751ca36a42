"""GET /fleet: what the fleet serves (segment champions loaded) and its latest monitor run."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.context import ServiceContext


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["fleet"])
    store: list[Any] = []  # the fleet run store, opened on first use (not at import, not in the factory)

    def latest() -> dict[str, Any] | None:
        from core.fleet import FleetRunStore

        if not store:
            store.append(FleetRunStore(ctx.settings.resolved_log_store_url))
        fleet = ctx.holder.fleet
        return store[0].latest(fleet.spec.name if fleet is not None else None)

    @r.get("/fleet")
    async def fleet() -> Response:
        """The fleet served here (segment -> champion, loaded count) and the latest `driftlight fleet
        monitor` run: counts by colour and every model's verdict, worst first."""
        f = ctx.holder.fleet
        serving = f.describe() if f is not None else None
        try:
            run = await run_in_threadpool(latest)
        except Exception as exc:  # the store is down: say so, do not fail
            return JSONResponse(
                {"serving": serving, "latest_run": None, "reason": f"run store unavailable: {type(exc).__name__}"}, 503
            )
        if run is None:
            return JSONResponse(
                {"serving": serving, "latest_run": None, "reason": "no fleet run yet: run `driftlight fleet monitor`"}
            )
        return JSONResponse({"serving": serving, "latest_run": run})

    return r
