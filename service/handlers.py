"""Exception handlers: every refusal becomes the one error body (service.errors), and refused
prediction requests are counted for the monitor (they never reach the prediction log)."""

from collections.abc import Collection

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service import errors
from service.context import ServiceContext
from service.limits import too_large
from service.routes.predict import DRILL_HEADER, book_refused


def count_refused(ctx: ServiceContext, request: Request, exc: RequestValidationError, detail: list[dict]) -> None:
    """A request refused whole (its body is not a batch of records, or not a record): its records are
    counted once each (a refused batch counts all its records). A drill's refusals are kept apart."""
    drill = bool(request.headers.get(DRILL_HEADER)) and ctx.settings.drills_allowed
    body = exc.body if isinstance(exc.body, dict) else {}
    records = body.get("records") if request.url.path == "/predict/batch" else None
    book_refused(ctx, detail, records if isinstance(records, list) and records else [body], drill=drill)


def install(app: FastAPI, ctx: ServiceContext, predict_paths: Collection[str]) -> None:
    max_batch = ctx.settings.max_batch
    expected_for = {
        "prediction_id": "an id returned by /predict",
        "label": "0 (not late) or 1 (late)",
        "records": f"a list of 1 to {max_batch} records",
        "labels": f"a list of 1 to {max_batch} labels",
    }

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = errors.describe_errors(exc.errors(), ctx.contract, expected_for=expected_for)
        kinds = {d["kind"] for d in detail}
        ctype = request.headers.get("content-type", "")
        if "not_an_object" in kinds and not ctype.startswith("application/json"):
            wrong = errors.item("content-type", "bad_format", "application/json", ctype or None, "wrong content type")
            message = f"send the body as application/json (got content-type {ctype or 'none'!r})"
            return errors.error_response(415, "unsupported_media_type", message, [wrong])
        if request.url.path in predict_paths:
            count_refused(ctx, request, exc, detail)
        if "invalid_json" in kinds:
            return errors.error_response(400, "invalid_json", "the body is not valid JSON", detail)
        oversized = "batch_size" in kinds and any("at most" in d["message"] for d in detail)
        if oversized and any(d["field"] in ("records", "labels") and d["received"] is not None for d in detail):
            return errors.error_response(413, "batch_too_large", f"at most {max_batch} items per batch", detail)
        fields = ", ".join(sorted({d["field"] for d in detail})[:10])
        return errors.error_response(422, "contract_violation", f"invalid input in: {fields}", detail)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # Keep the exception's headers: a 405 must say which methods are allowed (Allow).
        if exc.status_code == 413:
            return too_large(ctx.settings.max_body_bytes)
        return errors.error_response(exc.status_code, "http_error", str(exc.detail), [], headers=exc.headers)
