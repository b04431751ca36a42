"""Data quality of a window, against the reference: the signals drift tests cannot carry.

Drift tests drop NaN and compare shapes, so a broken sensor (a missing-value spike) and a unit
change that keeps the shape (°F -> °C) can pass them. These checks carry those faults:

- `missing_rate_increase`: window missing rate minus reference missing rate, per field;
- `beyond_reference_rate`: share of values outside the reference [min, max] (the model
  extrapolates there; the contract's physical range is enforced at the door already);
- `unseen_category_rate`: share of category values never seen in the reference;
- `unit_change`: 1.0 when the window's quantiles match a known unit conversion of the reference
  quantiles much better than the reference itself (e.g. °F -> °C), else 0.0;
- `stuck_value_share`: share of the window's non-missing values equal to its most common value,
  minus the same share in the reference (a sensor frozen at one reading).

Pure: arrays and small mappings in, `Signal`s out.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from monitoring.policy import Signal
from monitoring.sampling import Reservoir

# Conversions a caller might apply upstream, by the contract's unit name.
CONVERSIONS: dict[str, dict[str, Callable[[np.ndarray], np.ndarray]]] = {
    "degF": {"degC": lambda x: (x - 32.0) * 5.0 / 9.0, "K": lambda x: (x - 32.0) * 5.0 / 9.0 + 273.15},
    "mph": {"km/h": lambda x: x * 1.609344, "m/s": lambda x: x * 0.44704, "knots": lambda x: x * 0.868976},
    "statute miles": {"km": lambda x: x * 1.609344},
    "inches": {"mm": lambda x: x * 25.4},
    "millibars": {"inHg": lambda x: x * 0.0295300},
    "percent": {"fraction": lambda x: x / 100.0},
}
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class FieldReference:
    """What quality needs to know of one field in the reference window."""

    name: str
    kind: str  # numeric | categorical
    missing_rate: float
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    quantiles: tuple[float, ...] = ()  # at QUANTILES
    categories: frozenset[str] = frozenset()
    top_share: float = 0.0  # share of the most common non-missing value


def reference_for(frame: pd.DataFrame, name: str, kind: str, unit: str | None = None) -> FieldReference:
    """Build a `FieldReference` from a reference column (used at training time and in tests)."""
    col = frame[name]
    miss = float(col.isna().mean())
    present = col.dropna()
    top = float(present.value_counts(normalize=True).iloc[0]) if len(present) else 0.0
    if kind == "numeric":
        v = present.to_numpy(dtype="float64")
        qs = tuple(float(q) for q in np.quantile(v, QUANTILES)) if v.size else ()
        return FieldReference(
            name, kind, miss, unit, float(v.min()) if v.size else None, float(v.max()) if v.size else None, qs, top_share=top
        )
    return FieldReference(name, kind, miss, categories=frozenset(str(c) for c in present.unique()), top_share=top)


def _unit_change(ref: FieldReference, values: np.ndarray) -> tuple[float, str]:
    if not ref.unit or ref.unit not in CONVERSIONS or len(ref.quantiles) != len(QUANTILES) or values.size < 50:
        return 0.0, ""
    qw = np.quantile(values, QUANTILES)
    qr = np.asarray(ref.quantiles)
    spread = max(qr[-1] - qr[0], 1e-9)
    d_same = float(np.mean(np.abs(qw - qr)) / spread)
    best, best_d = "", math.inf
    for target, f in CONVERSIONS[ref.unit].items():
        qc = f(qr)
        d = float(np.mean(np.abs(qw - qc)) / max(qc[-1] - qc[0], 1e-9))
        if d < best_d:
            best, best_d = target, d
    # The window must sit clearly off the reference AND clearly on a converted reference.
    if d_same > 0.75 and best_d < 0.35 and best_d < d_same / 3:
        return 1.0, f"quantiles match {ref.unit} -> {best} (distance {best_d:.2f} vs {d_same:.2f} unconverted)"
    return 0.0, ""


class QualityAccumulator:
    """Quality statistics gathered chunk by chunk (memory bounded by the sample size and the
    number of distinct values per field, not by the window)."""

    def __init__(
        self,
        references: Sequence[FieldReference],
        *,
        sample_size: int = 50_000,
        seed: int = 0,
        shared_samples: Mapping[str, Reservoir] | None = None,
    ) -> None:
        """`shared_samples`: reservoirs (same size and seed) that another accumulator fills from the
        very same chunks, e.g. `DriftAccumulator.samples`: the drift pass already samples every
        numeric field's values, so quality reads that sample instead of drawing an identical one."""
        self.references = list(references)
        self.n = 0
        self.missing = {r.name: 0 for r in self.references}
        self.beyond = {r.name: 0 for r in self.references}
        self.unseen = {r.name: 0 for r in self.references}
        self.absent = {r.name: False for r in self.references}
        self.counts: dict[str, pd.Series] = {r.name: pd.Series(dtype="float64") for r in self.references}
        shared = shared_samples or {}
        self._own = {r.name for r in self.references if r.kind == "numeric" and r.name not in shared}
        self.samples = {
            r.name: shared[r.name] if r.name in shared else Reservoir(sample_size, seed)
            for r in self.references
            if r.kind == "numeric"
        }

    def add(self, window: pd.DataFrame) -> None:
        """Fold one chunk in. One hashing pass per column (`pd.factorize`) gives the missing count,
        the count of every distinct value (-> the top share) and, for categories, the unseen count
        from the few distinct values instead of a per-row membership test."""
        self.n += len(window)
        for ref in self.references:
            if ref.name not in window:
                self.absent[ref.name] = True
                continue
            col = window[ref.name]
            if ref.kind == "numeric":
                if col.dtype == object:
                    col = pd.to_numeric(col, errors="coerce")
                col = col.to_numpy(dtype="float64", na_value=np.nan)
            codes, uniques = pd.factorize(col, use_na_sentinel=True)
            per_value = np.bincount(codes + 1, minlength=len(uniques) + 1)  # [missing, each distinct value]
            self.missing[ref.name] += int(per_value[0])
            if len(uniques) == 0:
                continue
            counts = pd.Series(per_value[1:].astype("float64"), index=uniques, copy=False)
            prev = self.counts[ref.name]
            self.counts[ref.name] = counts if prev.empty else prev.add(counts, fill_value=0)
            if ref.kind == "numeric":
                v = np.asarray(uniques, dtype="float64")
                if ref.min is not None and ref.max is not None:
                    self.beyond[ref.name] += int(per_value[1:][(v < ref.min) | (v > ref.max)].sum())
                if ref.name in self._own:
                    self.samples[ref.name].add(col)  # the reservoir drops NaN itself
            else:
                cats = ref.categories
                unseen = np.fromiter((str(u) not in cats for u in uniques), dtype=bool, count=len(uniques))
                self.unseen[ref.name] += int(per_value[1:][unseen].sum())

    def signals(self) -> list[Signal]:
        out: list[Signal] = []
        if self.n == 0:
            return out
        for ref in self.references:
            name = ref.name
            if self.absent[name]:
                out.append(Signal("missing_rate_increase", name, 1.0 - ref.missing_rate, "column absent"))
                continue
            miss = self.missing[name] / self.n
            out.append(
                Signal("missing_rate_increase", name, miss - ref.missing_rate, f"{miss:.1%} missing vs {ref.missing_rate:.1%}")
            )
            present = self.n - self.missing[name]
            if present == 0:
                continue
            top = float(self.counts[name].max()) / present
            out.append(
                Signal("stuck_value_share", name, top - ref.top_share, f"{top:.1%} of values equal vs {ref.top_share:.1%}")
            )
            if ref.kind == "numeric":
                if ref.min is not None and ref.max is not None:
                    out.append(
                        Signal("beyond_reference_rate", name, self.beyond[name] / present, f"outside [{ref.min:g}, {ref.max:g}]")
                    )
                flag, why = _unit_change(ref, self.samples[name].values)
                out.append(Signal("unit_change", name, flag, why))
            else:
                out.append(Signal("unseen_category_rate", name, self.unseen[name] / present, ""))
        return out


def quality_signals(references: Sequence[FieldReference], window: pd.DataFrame) -> list[Signal]:
    """Quality signals of `window` (raw contract fields) against `references` (one chunk)."""
    acc = QualityAccumulator(references)
    acc.add(window)
    return acc.signals()


def references_from_mapping(doc: Mapping[str, Mapping[str, object]]) -> list[FieldReference]:
    """`FieldReference`s from their JSON form (stored with the model)."""
    out = []
    for name, d in doc.items():
        out.append(
            FieldReference(
                name=name,
                kind=str(d["kind"]),
                missing_rate=float(d["missing_rate"]),  # type: ignore[arg-type]
                unit=d.get("unit"),  # type: ignore[arg-type]
                min=d.get("min"),  # type: ignore[arg-type]
                max=d.get("max"),  # type: ignore[arg-type]
                quantiles=tuple(d.get("quantiles") or ()),  # type: ignore[arg-type]
                categories=frozenset(d.get("categories") or ()),  # type: ignore[arg-type]
                top_share=float(d.get("top_share", 0.0)),  # type: ignore[arg-type]
            )
        )
    return out
