"""Pages a person opens: `GET /` (the light, its reasons, every field over time, the model's history,
the runs), `GET /reports/{name}` (a run's report over HTTP), and `/docs` + `/redoc` with their
assets served from the installed `fastapi-offline` package (no CDN: they work with no network).

HTML routes are left out of the OpenAPI document (include_in_schema=False). The stores are read in
a thread (they block); the HTML is built by service.page from what was read.
"""

from __future__ import annotations

import importlib.util
import time
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from service import errors
from service.context import ServiceContext
from service.fleet_view import fleet_figures
from service.lifecycle import FALLBACK_VERSION
from service.page import PageData, render_page, report_url_map

# A report name: letters, digits, dot, dash, underscore; .html or .json. No separator can pass.
REPORT_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.(html|json)$"
FALLBACK_DAYS = 30  # the page lists fallback periods of the last 30 days of serving
FALLBACK_TTL_S = 60.0
DOC_ASSETS = {"swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png"}


@cache
def doc_assets_dir() -> Path:
    """The folder of Swagger UI's and ReDoc's files inside the installed fastapi-offline package
    (found without importing it). Swagger UI 5 is needed: 4.x cannot render OpenAPI 3.1."""
    spec = importlib.util.find_spec("fastapi_offline")
    if spec is None or not spec.submodule_search_locations:
        raise LookupError("the fastapi-offline package is not installed: /docs has no assets")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def not_found(field: str, received: Any, message: str) -> Response:
    return errors.error_response(
        404, "not_found", message, [errors.item(field, "invalid_value", "an existing name", received, message)]
    )


def router(ctx: ServiceContext) -> APIRouter:
    r = APIRouter(include_in_schema=False)
    settings = ctx.settings
    reports_dir = settings.home / "reports"
    state: dict[str, Any] = {}

    def policy() -> Any:
        # Read on first use (never in the factory): the default policy file, as the monitor uses it.
        if "policy" not in state:
            from monitoring.policy import load_policy

            state["policy"] = load_policy()
        return state["policy"]

    def fallback_spans(store: Any) -> list[dict[str, Any]]:
        # A scan of the log's fallback rows (no index on model_version): bounded to the last
        # FALLBACK_DAYS of served_at and cached for FALLBACK_TTL_S, so page views do not repeat it.
        now = time.monotonic()
        if "spans" not in state or now - state["spans_at"] > FALLBACK_TTL_S:
            state["spans"] = store.fallback_spans(since=datetime.now(UTC) - timedelta(days=FALLBACK_DAYS))
            state["spans_at"] = now
        return list(state["spans"])

    def read(n_runs: int) -> PageData:
        problems: list[str] = []
        runs: list[dict[str, Any]] = []
        events: list[dict[str, Any]] = []
        spans: list[dict[str, Any]] = []
        store = ctx.run_store()
        try:
            runs = store.history(n_runs)
            events = [e for e in store.events() if e.get("model_name") in (None, settings.model_name)]
            spans = fallback_spans(store)
        except Exception as exc:  # the store is down: say so on the page, do not fail
            problems.append(f"run store unavailable: {type(exc).__name__}")
        versions: list[Any] = []
        if ctx.registry is not None:
            try:
                versions = ctx.registry.versions(settings.model_name)
            except Exception as exc:
                problems.append(f"registry unavailable: {type(exc).__name__}")
        fleet = None
        if ctx.fleet_runs is not None:
            fleet_run, fleet_error = ctx.fleet_runs.get()
            if fleet_error:
                problems.append(fleet_error)
            fleet = fleet_figures(fleet_run) if fleet_run else None
        model, fb = ctx.holder.model, ctx.holder.fallback
        serving = f"v{model.version}" if model is not None else (FALLBACK_VERSION if fb is not None else "nothing (503)")
        return PageData(
            runs=runs,
            policy=policy(),
            events=events,
            versions=versions,
            fallback_spans=spans,
            serving=serving,
            model_name=settings.model_name,
            timezone=ctx.contract.timezone,
            report_urls=report_url_map(runs, reports_dir),
            problems=problems,
            fleet=fleet,
            fleet_configured=ctx.fleet_runs is not None,
        )

    @r.get("/", response_class=HTMLResponse)
    async def page(
        runs: Annotated[int, Query(ge=2, le=500, description="how many recent runs the charts show")] = 30,
    ) -> Response:
        """The status page: server-rendered HTML, readable without JavaScript."""
        data = await run_in_threadpool(read, runs)
        return HTMLResponse(render_page(data), headers={"Cache-Control": "no-store"})

    @r.get("/reports/{name}")
    async def report_file(name: Annotated[str, PathParam(pattern=REPORT_NAME, description="a report's file name")]) -> Response:
        """One monitor report by file name (as the page links it); never a path outside the folder."""
        base = reports_dir.resolve()
        path = (base / name).resolve()
        if path.parent != base or not path.is_file():
            return not_found("name", name, f"no report named {name!r} (it may have been removed by the retention setting)")
        media = "text/html; charset=utf-8" if path.suffix == ".html" else "application/json"
        return FileResponse(path, media_type=media)

    @r.get("/docs")
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="driftlight - API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/docs-assets/favicon.png",
        )

    @r.get("/redoc")
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url="/openapi.json",
            title="driftlight - API",
            redoc_js_url="/docs-assets/redoc.standalone.js",
            redoc_favicon_url="/docs-assets/favicon.png",
            with_google_fonts=False,
        )

    @r.get("/docs-assets/{name}")
    async def doc_asset(name: str) -> Response:
        if name not in DOC_ASSETS:
            return not_found("name", name, f"no docs asset named {name!r}")
        return FileResponse(doc_assets_dir() / name, headers={"Cache-Control": "public, max-age=86400"})

    return r
