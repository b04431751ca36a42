"""tests/ports.py: ports for test servers come from below the ephemeral range, are free when given,
and are never given twice; a low ephemeral range or a configured range is respected."""

from __future__ import annotations

import socket

import pytest

from tests import ports


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_GIVEN", set())
    monkeypatch.delenv("DRIFTLIGHT_TEST_PORTS", raising=False)


def test_ports_are_below_the_ephemeral_range_distinct_and_bindable() -> None:
    low = ports._ephemeral_low()
    got = [ports.free_port() for _ in range(30)]
    assert len(set(got)) == 30
    if low - ports.LOW >= ports.MIN_ROOM:  # else the OS picks (the fallback has its own test)
        assert all(ports.LOW <= p < low for p in got)
    for p in got:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free when given (nothing here listens on them)


def test_a_port_in_use_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        monkeypatch.setenv("DRIFTLIGHT_TEST_PORTS", f"{taken}-{taken + 40}")
        got = ports.free_port()
        assert got != taken and taken < got <= taken + 40


def test_a_configured_range_runs_out_with_a_message_that_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    first = ports.free_port()
    monkeypatch.setenv("DRIFTLIGHT_TEST_PORTS", f"{first}-{first}")
    with pytest.raises(RuntimeError, match="set DRIFTLIGHT_TEST_PORTS=LO-HI"):
        ports.free_port()  # its only port was given already


def test_a_low_ephemeral_range_falls_back_to_the_os_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports, "_ephemeral_low", lambda: 1024)  # a host with 1024-65535
    got = {ports.free_port() for _ in range(10)}
    assert len(got) == 10 and all(p > 0 for p in got)
