"""The FastAPI app factory: `create_app(settings, registry=…, prediction_log=…)`.

The factory builds one typed `ServiceContext` (service.context), includes one router per group
(service.routes: predict, feedback, ops, admin, pages), installs the error handlers and the metrics
middleware, and leaves every I/O to the lifespan. Collaborators are injectable: a registry fake and
a log fake in unit tests. The route list the metrics label by is read from the routers the app includes.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from core.registry import Registry
from core.settings import Settings
from data_contracts.contract import Contract, load_contract
from data_contracts.request_model import request_model
from features.pipeline import build_features
from service import handlers
from service.context import PredictionSink, ServiceContext
from service.fleet_view import FleetRunCache, store_reader
from service.lifecycle import ModelHolder
from service.limits import BodyLimitMiddleware
from service.metrics import ServiceMetrics
from service.middleware import MetricsMiddleware
from service.routes import admin, feedback, ops, pages, predict
from service.routes import fleet as fleet_routes


def api_paths(routers: list[APIRouter]) -> list[str]:
    """The paths the routers serve: the one list the metrics label requests by."""
    return [r.path for router in routers for r in router.routes if isinstance(r, APIRoute)]


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    prediction_log: PredictionSink | None = None,
    contract: Contract | None = None,
    metrics: ServiceMetrics | None = None,
) -> FastAPI:
    """Build the app. Unset collaborators are created from `settings` in the lifespan."""
    contract = contract or load_contract()
    metrics = metrics or ServiceMetrics()
    fleet = None
    if settings.fleet_file is not None:
        from data_contracts.fleet import load_fleet
        from service.fleet import FleetRouter

        fleet = FleetRouter(load_fleet(settings.fleet_file, contract), shadow_alias=settings.shadow_alias)
    ctx = ServiceContext(
        settings=settings,
        contract=contract,
        metrics=metrics,
        holder=ModelHolder(settings, metrics, fleet),
        record_model=request_model(contract),
        feature_names=[str(n) for n in build_features(contract).get_feature_names_out()],
        registry=registry,
        log=prediction_log,
    )
    if fleet is not None:  # the latest fleet run on /metrics and on the page, one cached read for both
        ctx.fleet_runs = FleetRunCache(store_reader(settings.resolved_log_store_url, fleet.spec.name))
        metrics.watch_fleet(ctx.fleet_runs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        # One OpenMP thread per worker: with default threads, single-row predict under contention
        # had a p99 of 1.2 s here (STACK.md); with one, 12 ms. Scale with workers, not threads.
        limiter = threadpool_limits(limits=1, user_api="openmp")
        ctx.start()
        try:
            yield
        finally:
            ctx.stop()
            limiter.restore_original_limits()

    app = FastAPI(
        title="driftlight",
        version="0.1.0",
        summary="Late-flight predictions on the 2013 New York flights, logged and monitored.",
        lifespan=lifespan,
        docs_url=None,  # /docs and /redoc come from service.routes.pages, with local assets (no CDN)
        redoc_url=None,
    )
    app.state.ctx = ctx
    routers = [
        predict.router(ctx),
        feedback.router(ctx),
        ops.router(ctx),
        admin.router(ctx),
        pages.router(ctx),
        fleet_routes.router(ctx),
    ]
    for r in routers:
        app.include_router(r)
    handlers.install(app, ctx, predict_paths=api_paths(routers[:1]))
    app.add_middleware(MetricsMiddleware, metrics=metrics, endpoints=api_paths(routers))
    # Outermost: a body over the limit is refused before any other work (service.limits).
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    return app
