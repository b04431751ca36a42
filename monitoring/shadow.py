"""Shadow mode: the challenger scored beside the champion on the same live requests (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score


def compare(frame: pd.DataFrame, threshold: float) -> dict[str, Any] | None:
    """Champion (served) vs shadow on the rows both scored: agreement always, ROC AUC where labelled.

    `frame`: `probability`, `shadow_probability`, `shadow_version`, `label` (see LogStore.shadow_frame).
    The decision agreement uses the champion's threshold for both (the shadow's own threshold is
    chosen on its own validation window; comparing rankings is what AUC is for).
    """
    if frame.empty:
        return None
    served = frame["probability"].to_numpy(dtype="float64")
    shadow = frame["shadow_probability"].to_numpy(dtype="float64")
    out: dict[str, Any] = {
        "rows": len(frame),
        "shadow_versions": sorted(frame["shadow_version"].astype(str).unique().tolist()),
        "mean_abs_difference": float(np.mean(np.abs(served - shadow))),
        "decision_agreement": float(np.mean((served >= threshold) == (shadow >= threshold))),
        "labelled": 0,
        "champion_roc_auc": None,
        "shadow_roc_auc": None,
    }
    known = frame["label"].notna().to_numpy()
    y = frame["label"].to_numpy(dtype="float64", na_value=np.nan)[known]
    out["labelled"] = int(known.sum())
    if known.sum() >= 50 and 0 < y.mean() < 1:
        out["champion_roc_auc"] = float(roc_auc_score(y, served[known]))
        out["shadow_roc_auc"] = float(roc_auc_score(y, shadow[known]))
    return out


def describe(sh: Mapping[str, Any]) -> str:
    """One line of a comparison `compare` returned (the single model's and each fleet model's)."""
    auc = (
        f"; ROC AUC champion {sh['champion_roc_auc']:.3f} vs shadow {sh['shadow_roc_auc']:.3f} on {sh['labelled']} labelled"
        if sh["champion_roc_auc"] is not None
        else ""
    )
    return (
        f"shadow v{','.join(sh['shadow_versions'])}: {sh['rows']} rows, agreement {sh['decision_agreement']:.1%},"
        f" mean |dp| {sh['mean_abs_difference']:.3f}{auc}"
    )
