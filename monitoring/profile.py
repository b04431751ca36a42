"""The reference profile: frozen at training time, stored with the model, read as JSON.

For each numeric column: interior bin edges at the unique reference quantiles (default 10 bins)
plus explicit bins for missing, below the reference minimum and above the reference maximum; the
reference share of every bin; count, mean, std, min, max, quantiles, missing rate; and, for KS and
the Wasserstein distance, a seeded random sample of up to `sample_size` reference values, sorted.
For each categorical column: the reference share of every category plus `__missing__` and
`__unseen__` (0 in the reference by construction).

Bin layout of a numeric column (the order of `shares`):
    [missing, below min, [min, e1), [e1, e2), …, [ek, max], above max]
A value equal to an interior edge goes to the upper bin (np.searchsorted side="right").
Windows are counted into these bins; they are never re-binned per window (unlike Evidently,
whose equal-width bins over reference + current move with every window).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

PROFILE_VERSION = 1
MISSING = "__missing__"
UNSEEN = "__unseen__"
QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)


@dataclass(frozen=True)
class NumericProfile:
    name: str
    edges: tuple[float, ...]  # interior edges, strictly increasing
    ref_min: float
    ref_max: float
    shares: tuple[float, ...]  # len(edges) + 4: missing, below, interior bins, above
    count: int
    missing_rate: float
    mean: float
    std: float
    quantiles: tuple[float, ...]  # at QUANTILE_LEVELS
    sample: tuple[float, ...]  # sorted, seeded random sample of the non-missing values

    @property
    def n_bins(self) -> int:
        return len(self.shares)


@dataclass(frozen=True)
class CategoryProfile:
    name: str
    categories: tuple[str, ...]
    shares: tuple[float, ...]  # len(categories) + 2: the categories, MISSING, UNSEEN
    count: int


@dataclass(frozen=True)
class ReferenceProfile:
    rows: int
    numeric: tuple[NumericProfile, ...]
    categorical: tuple[CategoryProfile, ...]
    profile_version: int = PROFILE_VERSION

    def column(self, name: str) -> NumericProfile | CategoryProfile:
        columns: tuple[NumericProfile | CategoryProfile, ...] = (*self.numeric, *self.categorical)
        for p in columns:
            if p.name == name:
                return p
        raise KeyError(name)

    @property
    def columns(self) -> list[str]:
        return [p.name for p in self.numeric] + [p.name for p in self.categorical]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProfile:
        if d.get("profile_version") != PROFILE_VERSION:
            raise ValueError(f"profile_version {d.get('profile_version')} is not {PROFILE_VERSION}")

        def fields(p: Mapping[str, Any]) -> dict[str, Any]:  # JSON lists back to the tuples the profile holds
            return {k: tuple(v) if isinstance(v, list) else v for k, v in p.items()}

        num = tuple(NumericProfile(**fields(p)) for p in d["numeric"])
        cat = tuple(CategoryProfile(**fields(p)) for p in d["categorical"])
        return cls(rows=int(d["rows"]), numeric=num, categorical=cat, profile_version=PROFILE_VERSION)


def numeric_bin_index(values: np.ndarray, edges: np.ndarray, ref_min: float, ref_max: float) -> np.ndarray:
    """Bin index of every value in the layout above (vectorised; NaN -> 0, <min -> 1, >max -> last)."""
    v = np.asarray(values, dtype="float64")
    idx = np.searchsorted(edges, v, side="right") + 2
    idx[v < ref_min] = 1
    idx[v > ref_max] = len(edges) + 3
    idx[np.isnan(v)] = 0
    return idx


def numeric_counts(values: np.ndarray, prof: NumericProfile) -> np.ndarray:
    """Counts per bin of `values` (shape (n,)) in `prof`'s frozen bins; sums to n."""
    idx = numeric_bin_index(values, np.asarray(prof.edges, dtype="float64"), prof.ref_min, prof.ref_max)
    return np.bincount(idx, minlength=prof.n_bins).astype("float64")


def category_counts(values: pd.Series | np.ndarray, prof: CategoryProfile) -> np.ndarray:
    """Counts per category, then missing, then unseen; sums to n."""
    s = pd.Series(values, copy=False)
    codes = pd.Categorical(s, categories=list(prof.categories)).codes.astype("int64")
    missing = s.isna().to_numpy()
    codes[codes < 0] = len(prof.categories) + 1  # unseen
    codes[missing] = len(prof.categories)
    return np.bincount(codes, minlength=len(prof.categories) + 2).astype("float64")


def _numeric(name: str, values: np.ndarray, n_bins: int, sample_size: int, rng: np.random.Generator) -> NumericProfile:
    v = np.asarray(values, dtype="float64")
    present = v[~np.isnan(v)]
    if present.size == 0:
        raise ValueError(f"column {name} has no values in the reference")
    lo, hi = float(present.min()), float(present.max())
    inner = np.quantile(present, np.linspace(0, 1, n_bins + 1)[1:-1])
    edges = np.unique(inner[(inner > lo) & (inner <= hi)])
    prof = NumericProfile(
        name,
        tuple(float(e) for e in edges),
        lo,
        hi,
        (),
        int(v.size),
        float(1 - present.size / v.size),
        float(present.mean()),
        float(present.std()),
        tuple(float(q) for q in np.quantile(present, QUANTILE_LEVELS)),
        (),
    )
    counts = numeric_counts(v, prof.__class__(**{**asdict(prof), "shares": (0.0,) * (len(edges) + 4)}))
    sample = present if present.size <= sample_size else rng.choice(present, size=sample_size, replace=False)
    return NumericProfile(
        **{**asdict(prof), "shares": tuple((counts / counts.sum()).tolist()), "sample": tuple(np.sort(sample).tolist())}
    )


def _categorical(name: str, values: pd.Series, declared: Sequence[str] = ()) -> CategoryProfile:
    present = values.dropna().astype(str)
    cats = tuple(sorted({*present.unique().tolist(), *(str(d) for d in declared)}))
    prof = CategoryProfile(name, cats, (), len(values))
    counts = category_counts(
        values.astype("object").where(values.notna(), None).map(lambda x: None if x is None else str(x)), prof
    )
    return CategoryProfile(name, cats, tuple((counts / counts.sum()).tolist()), len(values))


def build_profile(
    frame: pd.DataFrame,
    numeric: Sequence[str],
    categorical: Sequence[str],
    *,
    n_bins: int = 10,
    sample_size: int = 5000,
    seed: int = 0,
    declared: Mapping[str, Sequence[str]] | None = None,
) -> ReferenceProfile:
    """Freeze the reference distribution of `frame`'s `numeric` and `categorical` columns.

    `declared`: per categorical column, values that get a bin of their own even when the reference
    never saw them (share 0), e.g. the contract's known domain. A declared value then moves the
    column's distribution (drift) instead of landing in the UNSEEN bin (a value nobody declared)."""
    rng = np.random.default_rng(seed)
    num = tuple(
        _numeric(c, pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan), n_bins, sample_size, rng)
        for c in numeric
    )
    cat = tuple(_categorical(c, frame[c], (declared or {}).get(c, ())) for c in categorical)
    return ReferenceProfile(rows=len(frame), numeric=num, categorical=cat)
