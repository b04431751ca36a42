"""Test rows shaped by the contract (shared by the log store's unit and PostgreSQL tests)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from data_contracts.contract import Contract


def contract_inputs(contract: Contract, i: int, event_time: datetime, number: float) -> dict[str, Any]:
    """Raw inputs for row `i`: every contract field, nullable numbers missing on every 5th row."""
    inputs: dict[str, Any] = {}
    for spec in contract.fields:
        if spec.type == "timestamp":
            inputs[spec.name] = event_time
        elif spec.type == "category":
            inputs[spec.name] = spec.categories[i % len(spec.categories)]
        elif spec.type == "integer":
            inputs[spec.name] = int(spec.min or 0) + i % 60
        else:
            inputs[spec.name] = None if spec.nullable and i % 5 == 0 else float(spec.min or 0) + number
    return inputs
