"""Admin: /admin/reload, /admin/promote, /admin/rollback behind a bearer token.

No token configured = disabled (403), never open. The token is checked by the routes' own route
class *before the body is read*: an unauthenticated caller learns nothing from body validation (a
bad body without a token is a 401/403, not a 400/422), and no body is parsed for them. (A FastAPI
dependency would run only after the JSON body has been read and parsed.)
"""

import hmac
import json
import os
import subprocess
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

from core.exit_codes import ExitCode
from service.context import ServiceContext
from service.errors import ErrorOut, error_response, item
from service.schemas import PromoteIn, RollbackIn

ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {401: {"model": ErrorOut}, 403: {"model": ErrorOut}}


def token_check(token: bytes | None) -> Callable[[Request], JSONResponse | None]:
    """A function answering 403 (disabled) or 401 (missing / wrong token), or None to let it through."""

    def denied(request: Request) -> JSONResponse | None:
        if token is None:
            return error_response(
                403,
                "admin_disabled",
                "admin endpoints are disabled: set DRIFTLIGHT_ADMIN_TOKEN to enable them",
                [item("authorization", "disabled", "admin endpoints enabled", None, "no admin token is configured")],
            )
        given = request.headers.get("authorization", "")
        sent = given.removeprefix("Bearer ").encode() if given.startswith("Bearer ") else b""
        if not sent or not hmac.compare_digest(sent, token):
            received = "Bearer ***" if sent else (None if not given else "(not a bearer token)")
            return error_response(
                401,
                "unauthorized",
                "send the admin token as 'Authorization: Bearer <token>'",
                [
                    item(
                        "authorization",
                        "unauthorized",
                        "Bearer <DRIFTLIGHT_ADMIN_TOKEN>",
                        received,
                        "missing or wrong admin token",
                    )
                ],
            )
        return None

    return denied


def is_admin(ctx: ServiceContext, request: Request) -> bool:
    """True when the request carries the configured admin token (never when none is configured)."""
    s = ctx.settings
    token = s.admin_token.get_secret_value().encode() if s.admin_token else None
    return token is not None and token_check(token)(request) is None


def guarded_route(denied: Callable[[Request], JSONResponse | None]) -> type[APIRoute]:
    """A route class whose handler answers `denied(request)` before FastAPI reads the body."""

    class GuardedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            inner = super().get_route_handler()

            async def handler(request: Request) -> Response:
                refusal = denied(request)
                return refusal if refusal is not None else await inner(request)

            return handler

    return GuardedRoute


def router(ctx: ServiceContext) -> APIRouter:
    s = ctx.settings
    token = s.admin_token.get_secret_value().encode() if s.admin_token else None
    r = APIRouter(tags=["admin"], route_class=guarded_route(token_check(token)))

    async def reload_now() -> dict[str, Any]:
        assert ctx.registry is not None, "the registry is opened in start()"
        try:
            return await run_in_threadpool(ctx.holder.reload, ctx.registry)
        except Exception as exc:
            ctx.metrics.reloads.labels("failed").inc()
            return {"changed": False, "error": f"{type(exc).__name__}: {exc}", "serving": ctx.holder.serving}

    async def lifecycle_command(args: list[str]) -> JSONResponse:
        """Run `driftlight promote|rollback` in its own process (the gate reads the log and scores two
        models: kept off this worker), then reload here."""
        proc = await run_in_threadpool(
            subprocess.run,
            [sys.executable, "-m", "driftlight.cli", *args, "--json"],
            env={**os.environ, **s.as_env()},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if proc.returncode not in (ExitCode.OK, ExitCode.REFUSED):  # refused: a 409 with the gate's reasons
            stderr = proc.stderr.strip()
            detail = item(args[0], "invalid_value", "a change the registry allows", " ".join(args[1:]) or None, stderr[-500:])
            return error_response(409, "lifecycle_refused", (stderr.splitlines() or ["failed"])[-1][:500], [detail])
        out = json.loads(proc.stdout)
        out["reload"] = await reload_now()
        return JSONResponse(out, status_code=200 if proc.returncode == 0 else 409)

    @r.post("/admin/reload", responses=ADMIN_RESPONSES)
    async def admin_reload() -> Response:
        """Check the alias now and swap to the version it points at (this worker; others poll)."""
        out = await reload_now()
        return JSONResponse(out, status_code=200 if "error" not in out else 503)

    @r.post("/admin/promote", responses=ADMIN_RESPONSES)
    async def admin_promote(body: PromoteIn) -> Response:
        """Promote a version through the challenger gate (409 with the reasons if refused), or force it."""
        args = ["promote", body.version, *(["--force"] if body.force else []), "--reason", body.reason or "via /admin/promote"]
        return await lifecycle_command(args)

    @r.post("/admin/rollback", responses=ADMIN_RESPONSES)
    async def admin_rollback(body: RollbackIn | None = None) -> Response:
        """Restore the previous champion and serve it."""
        return await lifecycle_command(["rollback", "--reason", (body.reason if body else "") or "via /admin/rollback"])

    return r
