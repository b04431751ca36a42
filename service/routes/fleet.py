"""GET /fleet: what the fleet serves (segment champions loaded) and its latest monitor run."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from service.context import ServiceContext


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(tags=["fleet"])
    store: list[Any] = []  # the fleet run store, opened on first use (not at import, not in the factory)

    def latest() -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        from core.fleet import FleetRunStore
        from core.fleet_queue import QueueStore

        if not store:
            store.append(FleetRunStore(ctx.settings.resolved_log_store_url))
            store.append(QueueStore(ctx.settings.resolved_log_store_url))
        fleet = ctx.holder.fleet
        run = store[0].latest(fleet.spec.name if fleet is not None else None)
        name = fleet.spec.name if fleet is not None else (run or {}).get("fleet")
        return run, (store[1].summary(name) if name else None)

    @r.get("/fleet")
    async def fleet() -> Response:
        """The fleet served here (segment -> champion, loaded count), the latest `driftlight fleet
        monitor` run (counts by colour, every model's verdict, worst first) and the retrain queue
        (`retrain_queue`: ranked items with their state and reason, and the last cycle's decisions)."""
        f = ctx.holder.fleet
        serving = f.describe() if f is not None else None
        try:
            run, queue = await run_in_threadpool(latest)
        except Exception as exc:  # the store is down: say so, do not fail
            return JSONResponse(
                {"serving": serving, "latest_run": None, "reason": f"run store unavailable: {type(exc).__name__}"}, 503
            )
        if run is None:
            return JSONResponse(
                {"serving": serving, "latest_run": None, "retrain_queue": queue,
                 "reason": "no fleet run yet: run `driftlight fleet monitor`"}
            )  # fmt: skip
        return JSONResponse({"serving": serving, "latest_run": run, "retrain_queue": queue})

    return r
