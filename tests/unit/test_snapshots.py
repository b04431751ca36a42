"""Checked-in schema snapshots: a test fails on any unreviewed difference (`make snapshots`)."""

from __future__ import annotations

import pytest

from scripts.snapshots import current


@pytest.mark.parametrize("which", ["flights.schema.json", "openapi.json"])
def test_snapshot_matches_the_code(which):
    (path, text) = next((p, t) for p, t in current().items() if p.name == which)
    assert path.read_text(encoding="utf-8") == text, (
        f"{path.name} differs from what the code generates: review the change, then run `make snapshots`"
    )
