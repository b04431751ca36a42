"""The API's HTTP protocol turns Nagle's algorithm off on the connections `--workers N` accepts.

uvicorn's multi-worker path binds the listening socket itself with proto 0; accepted sockets
inherit it, and asyncio's loop only sets TCP_NODELAY when proto is IPPROTO_TCP (uvicorn issue
#3149). Without uvloop (the [serve] install) every keep-alive response would then wait ~40 ms for
the client's delayed ACK. This builds exactly that: a socket bound the way uvicorn's
`Config.bind_socket` does, served by asyncio's loop with the protocol `driftlight serve` uses, and
reads the option on the accepted socket. uvicorn's own protocol on the same socket is the control.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from service.limits import HeaderTimeoutProtocol

pytestmark = pytest.mark.unit


async def _app(scope, receive, send):  # type: ignore[no-untyped-def]
    raise AssertionError("no request is sent")


def accepted_no_delay(protocol: type[HttpToolsProtocol]) -> int:
    """TCP_NODELAY of the server side of one connection accepted on a proto-0 listening socket."""

    async def run() -> int:
        config = Config(_app, loop="asyncio", http=protocol, lifespan="off")
        config.load()
        state = ServerState()
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)  # proto 0, as uvicorn binds it
        listener.bind(("127.0.0.1", 0))
        assert listener.proto == 0
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: protocol(config=config, server_state=state, app_state={}), sock=listener, start_serving=True
        )
        try:
            _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
            for _ in range(200):
                if state.connections:
                    break
                await asyncio.sleep(0.01)
            (conn,) = state.connections
            value = conn.transport.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            writer.close()
            await writer.wait_closed()
            return int(value)
        finally:
            server.close()
            await server.wait_closed()

    return asyncio.run(run())


def test_the_service_protocol_sets_no_delay_on_a_proto_zero_listener():
    assert accepted_no_delay(HeaderTimeoutProtocol) == 1


def test_uvicorns_own_protocol_leaves_nagle_on_there():
    """The control: the bug the workaround answers is present in the pinned uvicorn and Python.
    When this fails, uvicorn has fixed #3149 and `service.limits.no_delay` can go."""
    assert accepted_no_delay(HttpToolsProtocol) == 0
