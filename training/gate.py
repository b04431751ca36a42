"""The challenger gate: champion and challenger judged on the same recent labelled holdout.

The challenger is promoted only if every check passes:
- **primary**: ROC AUC beats the champion's by at least `margin` (ranking is what the model is for),
  and the gain is not noise: the lower bound of a paired bootstrap of the AUC difference is above 0.
  The bootstrap resamples airport-hours, not rows: flights in the same hour at the same airport
  share one weather reading, so rows are not independent and a row bootstrap would be overconfident;
- **guards**: PR AUC no lower and Brier score no higher than the champion's, within `guard_tolerance`
  (a model can gain AUC and lose calibration or the positive class);
- **slices**: no origin airport with enough rows loses more than `slice_tolerance` of ROC AUC
  (a better average must not hide one airport made worse);
- **sanity**: the predictions are finite, spread out, and their mean is near the holdout's late
  rate (a degenerate or badly shifted model fails here even if its AUC looks fine);
- **hygiene**: neither model trained on the holdout days, and the challenger speaks the current
  contract version.

`judge` is pure (scores in, decision out); `score` runs a bundle on the holdout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from data_contracts.contract import Contract
from training.data import contract_frame
from training.evaluate import Metrics, evaluate, slice_metrics

if TYPE_CHECKING:
    from core.settings import Settings


@dataclass(frozen=True)
class GateConfig:
    margin: float = 0.005
    guard_tolerance: float = 0.005
    slice_tolerance: float = 0.03
    min_slice_rows: int = 300
    max_mean_gap: float = 0.10
    min_prediction_sd: float = 0.01
    bootstrap: int = 200  # paired resamples of airport-hour blocks (0 = no bootstrap)
    confidence: float = 0.95  # one-sided: the gain's lower bound at this level must be > 0

    @classmethod
    def from_settings(cls, settings: Settings) -> GateConfig:
        return cls(
            margin=settings.gate_margin,
            guard_tolerance=settings.gate_guard_tolerance,
            slice_tolerance=settings.gate_slice_tolerance,
        )


@dataclass(frozen=True)
class ModelScore:
    version: str
    metrics: Metrics
    slices: Mapping[str, Metrics]
    prediction_sd: float
    finite: bool
    trained_through: date | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "metrics": self.metrics.as_dict(),
            "slices": {k: {"rows": v.rows, "roc_auc": v.roc_auc} for k, v in self.slices.items()},
            "prediction_sd": self.prediction_sd,
            "trained_through": self.trained_through.isoformat() if self.trained_through else None,
        }


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    promote: bool
    checks: tuple[Check, ...]
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @property
    def reasons(self) -> list[str]:
        """The failed checks (why it was refused), or every check (why it was promoted)."""
        failed = [c for c in self.checks if not c.passed]
        return [f"{c.name}: {c.detail}" for c in (failed or self.checks)]


def paired_block_bootstrap(
    y: np.ndarray, p_champion: np.ndarray, p_challenger: np.ndarray, blocks: np.ndarray, n: int, seed: int = 0
) -> np.ndarray:
    """ROC AUC(challenger) - ROC AUC(champion) on `n` resamples of whole blocks (both models on the
    same resample). Each resample draws as many blocks as there are, with replacement, and weighs
    every row by how often its block was drawn."""
    from sklearn.metrics import roc_auc_score

    codes, uniques = pd.factorize(blocks)
    rng = np.random.default_rng(seed)
    out = np.empty(n)
    for i in range(n):
        w = np.bincount(rng.integers(0, len(uniques), len(uniques)), minlength=len(uniques))[codes]
        keep = w > 0
        yk, wk = y[keep], w[keep]
        if yk.min() == yk.max():
            out[i] = np.nan
            continue
        out[i] = roc_auc_score(yk, p_challenger[keep], sample_weight=wk) - roc_auc_score(yk, p_champion[keep], sample_weight=wk)
    return out[~np.isnan(out)]


def predict(bundle: Any, contract: Contract, holdout: pd.DataFrame) -> np.ndarray:
    return bundle.pipeline.predict_proba(contract_frame(contract, holdout))[:, 1]


def score(version: str, bundle: Any, contract: Contract, holdout: pd.DataFrame, p: np.ndarray | None = None) -> ModelScore:
    """Run a bundle's Pipeline on the holdout rows (contract fields + `late`)."""
    y = holdout["late"].astype(int).to_numpy()
    p = predict(bundle, contract, holdout) if p is None else p
    threshold = float(bundle.metadata.get("threshold", 0.5))
    finite = bool(np.isfinite(p).all())
    p_safe = np.nan_to_num(p, nan=0.5)
    # The window's end is the last day whose labels the model saw (fit, or threshold choice).
    end = (bundle.metadata.get("window") or {}).get("end")
    return ModelScore(
        version=version,
        metrics=evaluate(y, p_safe, threshold),
        slices=slice_metrics(y, p_safe, holdout["origin"].to_numpy(), threshold),
        prediction_sd=float(np.std(p_safe)),
        finite=finite,
        trained_through=date.fromisoformat(end) if end else None,
    )


def judge(
    champion: ModelScore | None,
    challenger: ModelScore,
    *,
    holdout_start: date,
    holdout_label_rate: float,
    contract_version: str,
    challenger_contract_version: str | None,
    config: GateConfig,
    gain_lower_bound: float | None = None,
) -> list[Check]:
    c = challenger.metrics
    checks: list[Check] = []
    # hygiene
    for who, s in (("challenger", challenger), ("champion", champion)):
        if s is not None and s.trained_through is not None:
            checks.append(
                Check(
                    f"{who}_did_not_train_on_holdout",
                    s.trained_through < holdout_start,
                    f"{who} v{s.version} trained through {s.trained_through}, holdout starts {holdout_start}",
                )
            )
    checks.append(
        Check(
            "contract_version",
            challenger_contract_version == contract_version,
            f"challenger contract {challenger_contract_version}, service contract {contract_version}",
        )
    )
    # sanity
    checks.append(Check("finite_predictions", challenger.finite, "every prediction is a finite probability"))
    checks.append(
        Check(
            "prediction_spread",
            challenger.prediction_sd >= config.min_prediction_sd,
            f"sd of predictions {challenger.prediction_sd:.3f} (min {config.min_prediction_sd})",
        )
    )
    gap = abs(c.mean_prediction - holdout_label_rate)
    checks.append(
        Check(
            "prediction_mean_plausible",
            gap <= config.max_mean_gap,
            f"mean prediction {c.mean_prediction:.3f} vs holdout late rate {holdout_label_rate:.3f}"
            f" (max gap {config.max_mean_gap})",
        )
    )
    if champion is None:
        checks.append(Check("no_champion", True, "no champion to compare with: the sanity checks decide"))
        return checks
    k = champion.metrics
    bound = ""
    if gain_lower_bound is not None:
        bound = f"; {config.confidence:.0%} lower bound of the gain {gain_lower_bound:+.4f} (must be > 0)"
    checks.append(
        Check(
            "primary_roc_auc",
            c.roc_auc >= k.roc_auc + config.margin and (gain_lower_bound is None or gain_lower_bound > 0),
            f"ROC AUC {c.roc_auc:.4f} vs champion {k.roc_auc:.4f} (needs +{config.margin}){bound}",
        )
    )
    checks.append(
        Check(
            "guard_pr_auc",
            c.pr_auc >= k.pr_auc - config.guard_tolerance,
            f"PR AUC {c.pr_auc:.4f} vs champion {k.pr_auc:.4f} (tolerance {config.guard_tolerance})",
        )
    )
    checks.append(
        Check(
            "guard_brier",
            c.brier <= k.brier + config.guard_tolerance,
            f"Brier {c.brier:.4f} vs champion {k.brier:.4f} (tolerance {config.guard_tolerance})",
        )
    )
    for origin, cm in sorted(challenger.slices.items()):
        km = champion.slices.get(origin)
        if km is None or cm.rows < config.min_slice_rows or not (cm.roc_auc == cm.roc_auc and km.roc_auc == km.roc_auc):
            continue
        checks.append(
            Check(
                f"slice_{origin}",
                cm.roc_auc >= km.roc_auc - config.slice_tolerance,
                f"ROC AUC at {origin} {cm.roc_auc:.4f} vs champion {km.roc_auc:.4f}"
                f" ({cm.rows} rows, tolerance {config.slice_tolerance})",
            )
        )
    return checks


def run_gate(
    contract: Contract,
    champion: tuple[str, Any] | None,
    challenger: tuple[str, Any],
    holdout: pd.DataFrame,
    *,
    holdout_window: tuple[date, date],
    config: GateConfig,
) -> GateDecision:
    """Score both bundles on `holdout`, judge, and return the decision with its evidence."""
    p_chall = predict(challenger[1], contract, holdout)
    p_champ = predict(champion[1], contract, holdout) if champion is not None else None
    champ = score(champion[0], champion[1], contract, holdout, p_champ) if champion is not None else None
    chall = score(challenger[0], challenger[1], contract, holdout, p_chall)
    rate = float(holdout["late"].mean())
    bound = None
    gains = np.array([])
    if p_champ is not None and config.bootstrap > 0:
        blocks = holdout["origin"].astype(str).to_numpy() + "|" + holdout[contract.timestamp_field].astype(str).to_numpy()
        y = holdout["late"].astype(int).to_numpy()
        gains = paired_block_bootstrap(y, p_champ, p_chall, blocks, config.bootstrap)
        bound = float(np.quantile(gains, 1 - config.confidence)) if len(gains) else None
    checks = judge(
        champ,
        chall,
        holdout_start=holdout_window[0],
        holdout_label_rate=rate,
        contract_version=contract.version,
        challenger_contract_version=(challenger[1].metadata.get("contract") or {}).get("version"),
        config=config,
        gain_lower_bound=bound,
    )
    promote = all(c.passed for c in checks)
    evidence = {
        "decided_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "decision": "promote" if promote else "refuse",
        "holdout": {
            "start": holdout_window[0].isoformat(),
            "end": holdout_window[1].isoformat(),
            "rows": len(holdout),
            "late_rate": rate,
        },
        "config": asdict(config),
        "champion": champ.as_dict() if champ else None,
        "challenger": chall.as_dict(),
        "checks": [asdict(c) for c in checks],
        "auc_gain_bootstrap": {
            "resamples": len(gains),
            "blocks": "origin x hour",
            "lower_bound": bound,
            "median": float(np.median(gains)) if len(gains) else None,
        },
    }
    return GateDecision(promote=promote, checks=tuple(checks), evidence=evidence)
