"""core.readahead: the same items in the same order, bounded look-ahead, errors and early stops."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from core.readahead import read_ahead


def _source(n: int, log: list[str], fail_at: int | None = None) -> Iterator[int]:
    log.append(f"open in {threading.current_thread().name}")
    try:
        for i in range(n):
            if i == fail_at:
                raise RuntimeError(f"broken at {i}")
            log.append(f"read {i}")
            yield i
    finally:
        log.append(f"closed in {threading.current_thread().name}")


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_same_items_in_the_same_order(depth: int) -> None:
    log: list[str] = []
    assert list(read_ahead(_source(50, log), depth)) == list(range(50))
    reader = "MainThread" if depth == 0 else "driftlight-read-ahead"
    assert log[0] == f"open in {reader}" and log[-1] == f"closed in {reader}"


def test_the_reader_runs_at_most_depth_items_ahead() -> None:
    log: list[str] = []
    it = read_ahead(_source(100, log), depth=2)
    assert next(it) == 0
    time.sleep(0.3)  # ample time for an unbounded reader to read everything
    reads = [x for x in log if x.startswith("read")]
    # item 0 handed over, 2 queued, 1 read and waiting to be queued: never more
    assert len(reads) <= 4, reads
    assert list(it) == list(range(1, 100))


def test_an_error_in_the_reader_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    log: list[str] = []
    got = []
    with pytest.raises(RuntimeError, match="broken at 7"):
        for x in read_ahead(_source(20, log, fail_at=7), depth=1):
            got.append(x)
    assert got == list(range(7))
    assert log[-1] == "closed in driftlight-read-ahead"


def test_a_consumer_that_stops_early_stops_the_reader_and_closes_the_source() -> None:
    log: list[str] = []
    before = threading.active_count()
    it = read_ahead(_source(1_000, log), depth=1)
    for x in it:
        if x == 3:
            break
    it.close()  # what a for loop's exception or a dropped generator does
    assert log[-1] == "closed in driftlight-read-ahead"
    assert threading.active_count() == before
    assert len([x for x in log if x.startswith("read")]) <= 6


def test_negative_depth_is_refused() -> None:
    with pytest.raises(ValueError, match="depth must be >= 0, got -1"):
        list(read_ahead([1], -1))
