"""Write the checked-in schema snapshots: the contract's JSON Schema and the OpenAPI document.

Run after a *reviewed* change (`make snapshots`); tests/unit/test_snapshots.py fails on any
difference between these files and what the code generates.
"""

from __future__ import annotations

import json
from pathlib import Path

from core.settings import Settings
from data_contracts.contract import load_contract
from data_contracts.request_model import json_schema
from service.app import create_app

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "data_contracts" / "flights.schema.json"
OPENAPI = ROOT / "service" / "openapi.json"


def render(doc: dict) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def current() -> dict[Path, str]:
    contract = load_contract()
    # Default settings: the snapshot describes the service as shipped (max_batch 1000).
    app = create_app(Settings(), prediction_log=object())
    return {SCHEMA: render(json_schema(contract)), OPENAPI: render(app.openapi())}


def fallback() -> tuple[Path, str]:
    """The packaged fallback: the baseline fitted on the default training window's fit rows."""
    from features.baseline import PACKAGED_FALLBACK, HistoricalRateBaseline
    from training.data import contract_frame, load_flights
    from training.train import TrainConfig, split

    contract = load_contract()
    fit, val = split(contract, load_flights(), TrainConfig())
    base = HistoricalRateBaseline().fit(contract_frame(contract, fit), fit["late"].astype(int).to_numpy())
    from training.evaluate import best_f1_threshold

    p_val = base.predict_proba(contract_frame(contract, val))[:, 1]
    doc = {**base.to_dict(), "threshold": best_f1_threshold(val["late"].astype(int).to_numpy(), p_val), "source": "packaged"}
    return PACKAGED_FALLBACK, render(doc)


def main() -> None:
    for path, text in [*current().items(), fallback()]:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
