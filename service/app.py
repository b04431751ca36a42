"""The FastAPI app factory: `create_app(settings, registry=…, prediction_log=…)`.

(No `from __future__ import annotations` here: FastAPI must see the request models, which are
built from the contract inside the factory, as real objects, not as strings.)

Routes are thin: validate (the pydantic model derived from the contract), call the model, enqueue
the log row, shape the response. The model and the log writer are created in the lifespan, never
at import. Collaborators are injectable (a registry fake and a log fake in unit tests); the route
functions close over the app-scoped objects instead of resolving `Depends` on every request,
because the single-record path is measured in microseconds.
"""

import hmac
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from time import perf_counter
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.registry import Registry
from core.settings import Settings
from data_contracts.contract import REJECTED_RECORDS, Contract, load_contract
from data_contracts.request_model import json_schema, request_model
from features.pipeline import build_features
from service import errors
from service.ids import is_ours, new_id
from service.lifecycle import FALLBACK_VERSION, ModelHolder, Reloader, ShadowScorer
from service.metrics import ServiceMetrics, multiprocess_dir
from service.model import frame_from_records

log = logging.getLogger("driftlight.service")

ENDPOINTS = (
    "/predict",
    "/predict/batch",
    "/feedback",
    "/feedback/batch",
    "/health",
    "/ready",
    "/model",
    "/metrics",
    "/contract",
    "/status",
    "/admin/reload",
    "/admin/promote",
    "/admin/rollback",
)
PREDICT_ENDPOINTS = ("/predict", "/predict/batch")


# -- response and request models (OpenAPI) ---------------------------------------------------------
class PredictionOut(BaseModel):
    prediction_id: str = Field(description="Quote it in /feedback when the true outcome is known")
    probability: float = Field(description="P(arrival delay > 15 min)")
    late: bool = Field(description="probability >= the model's threshold")
    threshold: float
    model_name: str
    model_version: str
    served_by: str = Field(description="model, or fallback (the non-ML baseline) when the model is unavailable")
    warnings: list[str] = Field(description="e.g. a category the contract or the model has not seen")


class BatchOut(BaseModel):
    model_name: str
    model_version: str
    threshold: float
    predictions: list[PredictionOut]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: Annotated[str, Field(strict=True, min_length=1, max_length=64, description="from /predict")]
    label: Annotated[int, Field(strict=True, ge=0, le=1, description="1 = arrived > 15 min late, 0 = not")]


class FeedbackOut(BaseModel):
    accepted: int
    status: str = "accepted"


class ErrorItem(BaseModel):
    field: str
    kind: str
    expected: str
    received: Any = None
    message: str


class ErrorOut(BaseModel):
    error: str
    message: str
    detail: list[ErrorItem]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed JSON"},
    404: {"model": ErrorOut, "description": "Unknown prediction id"},
    413: {"model": ErrorOut, "description": "Batch larger than the configured maximum"},
    415: {"model": ErrorOut, "description": "Body is not application/json"},
    422: {"model": ErrorOut, "description": "A field breaks the contract"},
    503: {"model": ErrorOut, "description": "No model loaded"},
}


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$", description="a registered version")]
    force: bool = Field(False, description="skip the challenger gate (recorded)")
    reason: Annotated[str, Field(max_length=500)] = ""


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=500)] = ""


class MetricsMiddleware:
    """Pure ASGI middleware: latency histogram and requests by outcome (cheaper than BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.hist = {e: metrics.latency.labels(e) for e in (*ENDPOINTS, "other")}
        self.counts = {
            (e, o): metrics.requests.labels(e, o) for e in (*ENDPOINTS, "other") for o in ("ok", "client_error", "server_error")
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        endpoint = path if path in self.hist else "other"
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        t0 = perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.hist[endpoint].observe(perf_counter() - t0)
            outcome = "ok" if status < 400 else "client_error" if status < 500 else "server_error"
            self.counts[(endpoint, outcome)].inc()


def _iso(ts: datetime | None) -> str | None:
    return ts.isoformat() if ts is not None else None


def create_app(
    settings: Settings,
    *,
    registry: Registry | None = None,
    prediction_log: Any | None = None,
    contract: Contract | None = None,
    metrics: ServiceMetrics | None = None,
) -> FastAPI:
    """Build the app. Unset collaborators are created from `settings` in the lifespan."""
    contract = contract or load_contract()
    metrics = metrics or ServiceMetrics()
    holder = ModelHolder(settings, metrics)
    Record = request_model(contract)
    feature_names = [str(n) for n in build_features(contract).get_feature_names_out()]
    ts_field = contract.timestamp_field
    key = settings.id_key
    flagged = {f.name: frozenset(f.categories) for f in contract.category_fields if f.unseen == "flag"}
    state: dict[str, Any] = {
        "log": prediction_log,
        "registry": registry,
        "runs": None,
        "violations": None,
        "reloader": None,
        "shadow": None,
    }

    BatchIn = create_model(
        "PredictBatchIn",
        __config__=ConfigDict(extra="forbid"),
        records=(Annotated[list[Record], Field(min_length=1, max_length=settings.max_batch)], ...),  # type: ignore[valid-type]
    )
    FeedbackBatchIn = create_model(
        "FeedbackBatchIn",
        __config__=ConfigDict(extra="forbid"),
        labels=(Annotated[list[FeedbackIn], Field(min_length=1, max_length=settings.max_batch)], ...),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from threadpoolctl import threadpool_limits

        # One OpenMP thread per worker: with default threads, single-row predict under contention
        # had a p99 of 1.2 s here (STACK.md); with one, 12 ms. Scale with workers, not threads.
        limiter = threadpool_limits(limits=1, user_api="openmp")
        if state["registry"] is None:
            from core.registry import registry_from_settings

            state["registry"] = registry_from_settings(settings)
        holder.start(state["registry"])
        state["reloader"] = Reloader(holder, state["registry"], settings.reload_interval)
        state["reloader"].start()
        if state["log"] is None:
            from core.logstore import LogStore
            from service.predlog import PredictionLog

            store = LogStore(settings.resolved_log_store_url, contract, feature_names)
            try:
                store.create_schema()
            except Exception as exc:  # store down at start: rows wait in memory / spool
                log.error("log store unavailable at start (%s); rows will wait and be retried", exc)
            state["log"] = PredictionLog(
                store,
                spool_dir=settings.spool_dir,
                batch_size=settings.log_batch_size,
                flush_interval=settings.log_flush_interval,
                max_memory_rows=settings.log_max_memory_rows,
                metrics=metrics,
            )
        state["log"].start()
        if state["violations"] is None:
            from core.runs import RunStore
            from service.violations import ViolationCounter

            if state["runs"] is None:
                state["runs"] = RunStore(settings.resolved_log_store_url)
            state["violations"] = ViolationCounter(state["runs"])
        state["violations"].start()
        if settings.shadow_alias:
            state["shadow"] = ShadowScorer(holder, state["runs"], list(contract.field_names), metrics)
            state["shadow"].start()
        try:
            yield
        finally:
            state["reloader"].stop()
            if state["shadow"] is not None:
                state["shadow"].stop()
            state["log"].stop()
            state["violations"].stop()
            limiter.restore_original_limits()
            if multiprocess_dir():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    app = FastAPI(
        title="driftlight",
        version="0.1.0",
        summary="Late-flight predictions on the 2013 New York flights, logged and monitored.",
        lifespan=lifespan,
    )
    app.state.holder = holder
    app.state.metrics = metrics
    app.state.settings = settings
    app.state.contract = contract
    app.state.runtime = state
    app.add_middleware(MetricsMiddleware, metrics=metrics)

    violation = metrics.violations

    def error(status: int, code: str, message: str, detail: list[dict[str, Any]]) -> JSONResponse:
        return JSONResponse(errors.body(code, message, detail), status_code=status)

    def not_ready() -> JSONResponse:
        return error(
            503,
            "no_model",
            "no model is loaded and the fallback is disabled" if settings.fallback == "none" else "no model is loaded",
            [
                {
                    "field": "model",
                    "kind": "unavailable",
                    "expected": "a champion model",
                    "received": None,
                    "message": holder.load_error or "",
                }
            ],
        )

    def warnings_for(rec: Mapping[str, Any]) -> list[str]:
        out: list[str] = []
        for name, known in flagged.items():
            value = rec[name]
            if value not in known:
                violation.labels(name, "unseen_category").inc()
                out.append(f"{name}={value!r} is not in the contract's known categories: served as unknown to the model")
        return out

    def log_row(
        pid: str, rec: Mapping[str, Any], p: float, late: bool, x: Any, warns: list[str], version: str, now: datetime
    ) -> None:
        state["log"].log_prediction(
            {
                "prediction_id": pid,
                "served_at": now,
                "event_time": rec[ts_field],
                "model_name": settings.model_name,
                "model_version": version,
                "probability": p,
                "late": int(late),
                "warnings": warns,
                "inputs": rec,
                # The fallback computes no features: their columns stay NULL for its rows.
                "features": dict(zip(feature_names, x.tolist(), strict=True)) if x is not None else None,
            }
        )

    def prediction_body(
        pid: str, p: float, late: bool, warns: list[str], version: str, threshold: float, served_by: str
    ) -> dict[str, Any]:
        """One prediction as the API returns it (PredictionOut), single or in a batch."""
        return {
            "prediction_id": pid,
            "probability": p,
            "late": late,
            "threshold": threshold,
            "model_name": settings.model_name,
            "model_version": version,
            "served_by": served_by,
            "warnings": warns,
        }

    def fallback_warning(why: str) -> str:
        fb = holder.fallback
        return f"served by the fallback ({fb.source if fb else '-'}): {why}"

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = errors.describe_errors(
            exc.errors(),
            contract,
            expected_for={
                "prediction_id": "an id returned by /predict",
                "label": "0 (not late) or 1 (late)",
                "records": f"a list of 1 to {settings.max_batch} records",
                "labels": f"a list of 1 to {settings.max_batch} labels",
            },
        )
        kinds = {d["kind"] for d in detail}
        ctype = request.headers.get("content-type", "")
        if "not_an_object" in kinds and not ctype.startswith("application/json"):
            return error(
                415,
                "unsupported_media_type",
                f"send the body as application/json (got content-type {ctype or 'none'!r})",
                [
                    {
                        "field": "content-type",
                        "kind": "bad_format",
                        "expected": "application/json",
                        "received": ctype or None,
                        "message": "wrong content type",
                    }
                ],
            )
        if request.url.path in PREDICT_ENDPOINTS:
            for d in detail:
                name = errors.metric_field(d["field"], contract)
                violation.labels(name, d["kind"]).inc()
                if state["violations"] is not None:  # kept for the monitor: rejected rows never reach the log
                    state["violations"].add(name, d["kind"])
            if state["violations"] is not None:  # the denominator: records refused, once each
                body = exc.body if isinstance(exc.body, dict) else {}
                records = body.get("records") if request.url.path == "/predict/batch" else None
                state["violations"].add(*REJECTED_RECORDS, len(records) if isinstance(records, list) and records else 1)
                state["violations"].add_event_hours(records if isinstance(records, list) else [body], contract.timestamp_field)
        if "invalid_json" in kinds:
            return error(400, "invalid_json", "the body is not valid JSON", detail)
        if "batch_size" in kinds and any(d["field"] in ("records", "labels") and d["received"] is not None for d in detail):
            too_many = any("at most" in d["message"] for d in detail)
            if too_many:
                return error(413, "batch_too_large", f"at most {settings.max_batch} items per batch", detail)
        fields = ", ".join(sorted({d["field"] for d in detail})[:10])
        return error(422, "contract_violation", f"invalid input in: {fields}", detail)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "http_error", str(exc.detail), [])

    @app.post("/predict", response_model=PredictionOut, responses=ERROR_RESPONSES, tags=["predict"])
    async def predict(record: Record) -> Response:  # type: ignore[valid-type]
        """Score one flight (contract fields). The prediction is logged off the request path.

        If the model is unavailable or raises, the non-ML fallback answers (`served_by`)."""
        model = holder.model  # read once: the whole request is served by this model
        rec = record.__dict__
        warns = warnings_for(rec)
        pid = new_id(key)
        why = holder.load_error or "no model"
        if model is not None:
            try:
                p, x = model.predict_record(rec)
            except Exception as exc:
                metrics.model_failures.inc()
                log.exception("model v%s failed on a record: serving the fallback", model.version)
                why = f"model v{model.version} failed: {type(exc).__name__}"
            else:
                late = p >= model.threshold
                log_row(pid, rec, p, late, x, warns, model.version, datetime.now(UTC))
                metrics.predictions.labels(model.version, "late" if late else "on_time", "model").inc()
                if state["shadow"] is not None:
                    state["shadow"].submit(pid, rec)
                return JSONResponse(prediction_body(pid, p, late, warns, model.version, model.threshold, "model"))
        fb = holder.fallback
        if fb is None:
            return not_ready()
        p = fb.predict_record(rec)
        late = p >= fb.threshold
        warns = [*warns, fallback_warning(why)]
        log_row(pid, rec, p, late, None, warns, FALLBACK_VERSION, datetime.now(UTC))
        metrics.predictions.labels(FALLBACK_VERSION, "late" if late else "on_time", "fallback").inc()
        return JSONResponse(prediction_body(pid, p, late, warns, FALLBACK_VERSION, fb.threshold, "fallback"))

    @app.post("/predict/batch", response_model=BatchOut, responses=ERROR_RESPONSES, tags=["predict"])
    async def predict_batch(batch: BatchIn) -> Response:  # type: ignore[valid-type]
        """Score up to `max_batch` flights in one call (about 250x cheaper per row than one by one)."""
        model = holder.model
        recs = [r.__dict__ for r in batch.records]  # type: ignore[attr-defined]
        frame = frame_from_records(recs, contract.field_names)
        why = holder.load_error or "no model"
        X: Any = None
        if model is not None:
            try:
                probs, X = model.predict_frame(frame)
                version, threshold, served_by, extra = model.version, model.threshold, "model", []
            except Exception as exc:
                metrics.model_failures.inc()
                log.exception("model v%s failed on a batch: serving the fallback", model.version)
                why, model = f"model v{model.version} failed: {type(exc).__name__}", None
        if model is None:
            fb = holder.fallback
            if fb is None:
                return not_ready()
            probs, version, threshold, served_by = fb.predict_frame(frame), FALLBACK_VERSION, fb.threshold, "fallback"
            extra = [fallback_warning(why)]
        now = datetime.now(UTC)
        out = []
        n_late = 0
        shadow = state["shadow"] if served_by == "model" else None
        for i, (rec, p) in enumerate(zip(recs, probs.tolist(), strict=True)):
            warns = [*warnings_for(rec), *extra]
            late = p >= threshold
            n_late += late
            pid = new_id(key)
            log_row(pid, rec, p, late, X[i] if X is not None else None, warns, version, now)
            if shadow is not None:
                shadow.submit(pid, rec)
            out.append(prediction_body(pid, p, late, warns, version, threshold, served_by))
        metrics.predictions.labels(version, "late", served_by).inc(n_late)
        metrics.predictions.labels(version, "on_time", served_by).inc(len(recs) - n_late)
        return JSONResponse(
            {"model_name": settings.model_name, "model_version": version, "threshold": threshold, "predictions": out}
        )

    def unknown_ids(ids: list[tuple[str, str]]) -> JSONResponse:
        return error(
            404,
            "unknown_prediction_id",
            "no prediction was issued with this id",
            [
                {
                    "field": f,
                    "kind": "unknown_id",
                    "expected": "an id returned by /predict",
                    "received": errors._received(v),
                    "message": "unknown prediction_id",
                }
                for f, v in ids
            ],
        )

    @app.post("/feedback", response_model=FeedbackOut, status_code=202, responses=ERROR_RESPONSES, tags=["feedback"])
    async def feedback(item: FeedbackIn) -> Response:
        """Record the true outcome of a prediction (idempotent; a later label corrects an earlier one)."""
        if not is_ours(item.prediction_id, key):
            return unknown_ids([("prediction_id", item.prediction_id)])
        state["log"].log_label({"prediction_id": item.prediction_id, "label": item.label, "received_at": datetime.now(UTC)})
        metrics.labels.inc()
        return JSONResponse({"accepted": 1, "status": "accepted"}, status_code=202)

    @app.post("/feedback/batch", response_model=FeedbackOut, status_code=202, responses=ERROR_RESPONSES, tags=["feedback"])
    async def feedback_batch(batch: FeedbackBatchIn) -> Response:  # type: ignore[valid-type]
        """Labels in bulk; all or nothing: one unknown id rejects the batch (and says which)."""
        items = batch.labels  # type: ignore[attr-defined]
        bad = [
            (f"labels[{i}].prediction_id", it.prediction_id) for i, it in enumerate(items) if not is_ours(it.prediction_id, key)
        ]
        if bad:
            return unknown_ids(bad)
        now = datetime.now(UTC)
        for it in items:
            state["log"].log_label({"prediction_id": it.prediction_id, "label": it.label, "received_at": now})
        metrics.labels.inc(len(items))
        return JSONResponse({"accepted": len(items), "status": "accepted"}, status_code=202)

    @app.get("/health", tags=["ops"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "alive"}

    @app.get("/ready", tags=["ops"], responses={503: {"model": ErrorOut}})
    async def ready() -> Response:
        """Readiness and what serves: 200 with `served_by` model or fallback (degraded, with the
        reason); 503 when nothing can serve (no model and the fallback disabled)."""
        model, fb = holder.model, holder.fallback
        pending = state["log"].pending() if state["log"] is not None else 0
        if model is not None:
            body = {
                "status": "ready",
                "model_name": model.name,
                "model_version": model.version,
                "served_by": "model",
                "shadow_version": holder.shadow.version if holder.shadow else None,
                "log_pending": pending,
            }
            return JSONResponse(body)
        if fb is None:
            return not_ready()
        body = {
            "status": "degraded",
            "model_name": settings.model_name,
            "model_version": FALLBACK_VERSION,
            "served_by": "fallback",
            "fallback_source": fb.source,
            "reason": holder.load_error,
            "log_pending": pending,
        }
        return JSONResponse(body)

    @app.get("/model", tags=["ops"], responses={503: {"model": ErrorOut}})
    async def model_info() -> Response:
        """Name, version, alias, training window, validation metrics and contract version."""
        model = holder.model
        if model is None:
            return not_ready()
        return JSONResponse({**model.describe(contract), "reloads": holder.reloads})

    # -- admin: token from settings; no token configured = disabled (403), never open ----------
    admin_token = settings.admin_token.get_secret_value().encode() if settings.admin_token else None

    def admin_denied(request: Request) -> JSONResponse | None:
        if admin_token is None:
            return error(
                403,
                "admin_disabled",
                "admin endpoints are disabled: set DRIFTLIGHT_ADMIN_TOKEN to enable them",
                [{"field": "authorization", "kind": "disabled", "expected": "admin endpoints enabled", "received": None,
                  "message": "no admin token is configured"}],
            )  # fmt: skip
        given = request.headers.get("authorization", "")
        token = given.removeprefix("Bearer ").encode() if given.startswith("Bearer ") else b""
        if not token or not hmac.compare_digest(token, admin_token):
            return error(
                401,
                "unauthorized",
                "send the admin token as 'Authorization: Bearer <token>'",
                [{"field": "authorization", "kind": "unauthorized", "expected": "Bearer <DRIFTLIGHT_ADMIN_TOKEN>",
                  "received": "Bearer ***" if token else (None if not given else "(not a bearer token)"),
                  "message": "missing or wrong admin token"}],
            )  # fmt: skip
        return None

    async def reload_now() -> dict[str, Any]:
        try:
            return await run_in_threadpool(holder.reload, state["registry"])
        except Exception as exc:
            metrics.reloads.labels("failed").inc()
            return {"changed": False, "error": f"{type(exc).__name__}: {exc}", "serving": holder.serving}

    @app.post("/admin/reload", tags=["admin"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
    async def admin_reload(request: Request) -> Response:
        """Check the alias now and swap to the version it points at (this worker; others poll)."""
        if (denied := admin_denied(request)) is not None:
            return denied
        out = await reload_now()
        return JSONResponse(out, status_code=200 if "error" not in out else 503)

    async def lifecycle_command(args: list[str]) -> JSONResponse:
        """Run `driftlight promote|rollback` in its own process (the gate reads the log and scores two
        models: kept off this worker), then reload here."""

        env = {**os.environ, **settings.as_env()}
        proc = await run_in_threadpool(
            subprocess.run,
            [sys.executable, "-m", "driftlight.cli", *args, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode not in (0, 3):  # 3 = refused by the gate
            return error(
                409,
                "lifecycle_refused",
                (proc.stderr.strip().splitlines() or ["failed"])[-1][:500],
                [{"field": args[0], "kind": "invalid_value", "expected": "a change the registry allows",
                  "received": " ".join(args[1:]) or None, "message": proc.stderr.strip()[-500:]}],
            )  # fmt: skip
        out = json.loads(proc.stdout)
        out["reload"] = await reload_now()
        return JSONResponse(out, status_code=200 if proc.returncode == 0 else 409)

    @app.post("/admin/promote", tags=["admin"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
    async def admin_promote(request: Request, body: PromoteIn) -> Response:
        """Promote a version through the challenger gate (409 with the reasons if refused), or force it."""
        if (denied := admin_denied(request)) is not None:
            return denied
        args = ["promote", body.version, *(["--force"] if body.force else []), "--reason", body.reason or "via /admin/promote"]
        return await lifecycle_command(args)

    @app.post("/admin/rollback", tags=["admin"], responses={401: {"model": ErrorOut}, 403: {"model": ErrorOut}})
    async def admin_rollback(request: Request, body: RollbackIn | None = None) -> Response:
        """Restore the previous champion and serve it."""
        if (denied := admin_denied(request)) is not None:
            return denied
        return await lifecycle_command(["rollback", "--reason", (body.reason if body else "") or "via /admin/rollback"])

    @app.get("/contract", tags=["ops"])
    async def contract_schema() -> dict[str, Any]:
        """The JSON Schema of one record, derived from the contract."""
        return json_schema(contract)

    @app.get("/status", tags=["ops"])
    async def status() -> Response:
        """The latest monitor verdict (green / yellow / red) with its reasons, from the run store."""
        if state.get("runs") is None:
            from core.runs import RunStore

            state["runs"] = RunStore(settings.resolved_log_store_url)
        try:
            latest = await run_in_threadpool(state["runs"].latest)
        except Exception as exc:  # the store is down: say so, do not fail
            return JSONResponse({"status": "unknown", "reason": f"run store unavailable: {type(exc).__name__}"}, status_code=503)
        if latest is None:
            return JSONResponse({"status": "unknown", "reason": "no monitor run yet: run `driftlight monitor`"})
        return JSONResponse(
            {
                "status": latest["status"],
                "raw_status": latest["raw_status"],
                "reasons": latest["reasons"],
                "finished_at": latest["finished_at"].isoformat(),
                "window": [_iso(latest["window_start"]), _iso(latest["window_end"])],
                "window_by": latest["window_by"],
                "model_version": latest["model_version"],
                "rows": latest["rows"],
                "reports": latest["summary"].get("reports", {}),
            }
        )

    @app.get("/metrics", tags=["ops"], include_in_schema=True)
    async def prom() -> Response:
        """Prometheus exposition (all workers aggregated in multiprocess mode)."""
        if state["log"] is not None:
            metrics.set_pending(state["log"].pending())
        data, ctype = metrics.exposition()
        return Response(data, media_type=ctype)

    return app
