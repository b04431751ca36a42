"""Free loopback ports for servers a test starts as separate processes.

A port the OS hands out for `bind(0)` comes from the ephemeral range, the same range every outgoing
connection (to PostgreSQL, MLflow, an HTTP client) takes its source port from. Between choosing a port
and the server binding it, minutes may pass (the compose-stack test trains a model first), and one of
those connections may take it: CI once failed on "prometheus: bind: address already in use". So ports
come from below the ephemeral range, where only listeners live; each is checked by binding it, and
none is handed out twice in one process. Where the ephemeral range starts low (some hosts use
1024-65535), there is no such range: ports are then the OS's picks, as before. `DRIFTLIGHT_TEST_PORTS=LO-HI`
confines them to a range (a shared machine hands out ranges); a whole run takes a few dozen (one
per server it starts, none given back).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_GIVEN: set[int] = set()
LOW = 20000  # the ports below the ephemeral range start here ...
MIN_ROOM = 1000  # ... if it leaves at least this many of them, else the OS picks


def _ephemeral_low() -> int:
    """The first port of the OS's ephemeral range (Linux: ip_local_port_range; IANA's 49152 elsewhere)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 49152


def _candidates() -> list[int]:
    lo_hi = os.environ.get("DRIFTLIGHT_TEST_PORTS")
    if lo_hi:
        lo, _, hi = lo_hi.partition("-")
        return list(range(int(lo), int(hi or lo) + 1))
    low = _ephemeral_low()
    if low - LOW < MIN_ROOM:  # no room below the ephemeral range: let the OS pick (0), a few times
        return [0] * 50
    ports = list(range(LOW, low))
    random.shuffle(ports)  # two test runs side by side rarely start on the same port
    return ports


def free_port() -> int:
    """A loopback port nothing listens on now, outside the ephemeral range, not yet given in this process."""
    for port in _candidates():
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(s.getsockname()[1])  # the OS's pick when asked for 0
        if port in _GIVEN:
            continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(
        f"no free loopback port in {os.environ.get('DRIFTLIGHT_TEST_PORTS') or 'the non-ephemeral range'}: "
        "set DRIFTLIGHT_TEST_PORTS=LO-HI to a range with free ports"
    )
