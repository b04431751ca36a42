"""Request limits a hostile or broken client cannot get around: body size, header time, idle time.

- Body size: `BodyLimitMiddleware` answers 413 (the one error body, naming the setting) before
  reading anything when Content-Length says too much, and stops reading a body sent without a
  length (chunked) as soon as it passes the limit, so memory never holds more than the limit.
- Header time: uvicorn has a keep-alive timeout but none for a request's headers, so a client that
  sends one header byte a second (slowloris) holds a connection for ever. `HeaderTimeoutProtocol`
  closes a connection whose request headers are not complete within `header_timeout` seconds of
  the connection opening or of the request's first byte.
- Idle keep-alive connections and concurrency: uvicorn's `timeout_keep_alive` and
  `limit_concurrency` (503 beyond), passed by `driftlight serve` from the settings.

The same protocol turns Nagle's algorithm off on every TCP connection (`no_delay`): with
`--workers N` on asyncio's event loop (the [serve] install has no uvloop) uvicorn leaves it on, and
each keep-alive response would wait ~40 ms for the client's delayed ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import Settings
from service.errors import error_response, item


def too_large(limit: int) -> JSONResponse:
    """The 413 response for a body over `limit` bytes."""
    detail = item("body", "batch_size", f"at most {limit} bytes", None, "request body too large")
    message = f"the request body is larger than {limit} bytes (DRIFTLIGHT_MAX_BODY_BYTES): send smaller batches"
    return error_response(413, "body_too_large", message, [detail], headers={"connection": "close"})


class BodyTooLarge(HTTPException):
    """Raised from `receive` once a body passes the limit (FastAPI re-raises HTTPExceptions)."""

    def __init__(self) -> None:
        super().__init__(413, "request body too large")


class BodyLimitMiddleware:
    """Pure ASGI: refuse request bodies over `max_bytes` with a 413, reading at most that much."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await too_large(self.max_bytes)(scope, receive, send)
                    return
                break
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await too_large(self.max_bytes)(scope, receive, send)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a deadline for the request line and headers."""

    # Set per worker process by `configure` (uvicorn builds protocols itself; a class is picklable
    # for its worker processes, a closure is not).
    header_timeout: float = Settings.model_fields["header_timeout"].default

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        no_delay(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.close()


def no_delay(transport: asyncio.BaseTransport) -> None:
    """Turn Nagle's algorithm off on `transport`'s socket if it is TCP: each response write leaves at once.

    asyncio sets TCP_NODELAY only on sockets whose `proto` is IPPROTO_TCP, and the listening socket
    uvicorn binds for `--workers N` has proto 0, which every accepted socket inherits (uvicorn
    0.54.0, https://github.com/Kludex/uvicorn/issues/3149). uvicorn writes a response's headers and
    body separately, so with Nagle on the body waits for the client's delayed ACK (~40 ms on Linux).
    uvloop sets the option itself; setting it again is harmless.
    """
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        with contextlib.suppress(OSError):  # the peer may already have gone; the connection then ends anyway
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def configure(settings: Settings) -> None:
    """Apply this process's header timeout (called where the worker builds its settings)."""
    HeaderTimeoutProtocol.header_timeout = settings.header_timeout


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn.run options that enforce the settings' limits."""
    return {
        "http": HeaderTimeoutProtocol,
        "timeout_keep_alive": settings.keep_alive_timeout,
        "limit_concurrency": settings.limit_concurrency or None,
    }
