"""What the evaluation scripts share: the default model trained in memory (no MLflow) and the
windows it is judged on (the held-out control days and the validation days)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass
class Trained:
    contract: Any
    fit: pd.DataFrame
    val: pd.DataFrame
    bundle: Any
    ctx: Any
    policy: Any
    control: pd.DataFrame  # the fit rows of the control days the reference profile never saw


def trained_default(version: str) -> Trained:
    """Train the README's model in memory; `version` names it in the verdicts."""
    from data_contracts.contract import load_contract
    from data_contracts.windows import on_days
    from monitoring.monitor import ModelContext
    from monitoring.policy import load_policy
    from training.data import load_flights
    from training.train import TrainConfig, fit_bundle, split

    contract = load_contract()
    config = TrainConfig()
    fit, val = split(contract, load_flights(), config)
    bundle = fit_bundle(contract, fit, val, config).bundle
    ctx = ModelContext.from_bundle("flights-late", version, bundle)
    control = on_days(contract, fit, bundle.metadata["monitoring"]["control_days"])
    return Trained(contract, fit, val, bundle, ctx, load_policy(), control)
