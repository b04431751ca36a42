"""The door's refusal counter: when `flush()` returns, every count added before it is stored, even
while the background flush is half-way through writing (the race that made a refused batch
missing from the light in a test under load)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest

from service.violations import ViolationCounter

pytestmark = pytest.mark.unit


class SlowStore:
    """Writes take a while, as a database does under load."""

    def __init__(self) -> None:
        self.stored: Counter[Any] = Counter()
        self.writing = threading.Event()

    def add_violations(self, counts: Counter[Any], *, drill: bool = False) -> None:
        self.writing.set()
        time.sleep(0.3)
        self.stored.update({(f, k): n for (_, f, k), n in counts.items()})


def test_flush_waits_for_the_flush_in_progress() -> None:
    store = SlowStore()
    counter = ViolationCounter(store, interval=3600)  # type: ignore[arg-type]
    counter.add("temp", "out_of_range", 500)
    background = threading.Thread(target=counter.flush)  # what the periodic thread does
    background.start()
    assert store.writing.wait(5)  # the background flush holds the counts and is writing them
    assert counter.flush()
    assert store.stored == {("temp", "out_of_range"): 500}  # not still in flight
    background.join()
