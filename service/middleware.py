"""Request metrics as pure ASGI middleware (cheaper than BaseHTTPMiddleware)."""

from collections.abc import Iterable
from time import perf_counter

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.metrics import ServiceMetrics

OUTCOMES = ("ok", "client_error", "server_error")


class MetricsMiddleware:
    """Latency histogram and requests by outcome, per endpoint. `endpoints` is the app's own route
    list (label values stay bounded: any other path is counted as "other")."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics, endpoints: Iterable[str]) -> None:
        self.app = app
        names = (*endpoints, "other")
        self.hist = {e: metrics.latency.labels(e) for e in names}
        self.counts = {(e, o): metrics.requests.labels(e, o) for e in names for o in OUTCOMES}

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
