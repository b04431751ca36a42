"""Batch checks derived from the contract: a Great Expectations suite and its vectorised twin.

Training data passes the Great Expectations suite before fitting (`validate_with_gx`). The same
expectations are also evaluated with plain pandas/numpy (`validate_frame`), which the monitor uses
on large windows; a test holds the two to identical verdicts. Both return a `BatchReport` whose
`summary()` is what a person reads when training stops.

`great_expectations` costs ~3 s to import, so it is imported inside `validate_with_gx` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.contract import Contract, FieldSpec

# Every integer 0..2399 whose minutes part is >= 60: how "hhmm" is expressed as a set check, so
# Great Expectations and the vectorised path test exactly the same thing.
_BAD_HHMM = tuple(h * 100 + m for h in range(24) for m in range(60, 100))


@dataclass(frozen=True)
class Expectation:
    """One check: `kind` in {exists, not_null, between, in_set, not_in_set}, on `column`."""

    column: str
    kind: str
    args: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        if self.kind == "between":
            return f"values between {self.args['min']} and {self.args['max']}"
        if self.kind == "in_set":
            return f"values in the contract's {len(self.args['values'])} categories"
        if self.kind == "not_in_set":
            return "valid hhmm (minutes < 60)"
        return {"exists": "column present", "not_null": "no nulls"}[self.kind]


@dataclass(frozen=True)
class Failure:
    column: str
    expectation: str
    unexpected_count: int
    unexpected_percent: float
    examples: tuple[Any, ...]


@dataclass(frozen=True)
class BatchReport:
    """The outcome of one batch validation: `success` and one `Failure` per failed expectation."""

    rows: int
    evaluated: int
    failures: tuple[Failure, ...]
    engine: str

    @property
    def success(self) -> bool:
        return not self.failures

    def verdicts(self) -> set[tuple[str, str]]:
        """The (column, expectation) pairs that failed: what must agree across engines."""
        return {(f.column, f.expectation) for f in self.failures}

    def summary(self) -> str:
        if self.success:
            return f"{self.engine}: {self.rows} rows passed all {self.evaluated} expectations"
        lines = [f"{self.engine}: {len(self.failures)} of {self.evaluated} expectations failed on {self.rows} rows:"]
        for f in self.failures:
            ex = ", ".join(repr(e) for e in f.examples[:5])
            lines.append(
                f"  - {f.column}: expected {f.expectation}; {f.unexpected_count} rows "
                f"({f.unexpected_percent:.3f} %) did not, e.g. {ex}"
            )
        return "\n".join(lines)


class ContractViolation(ValueError):
    """Raised when a batch that must pass the contract (training data) does not."""

    def __init__(self, report: BatchReport) -> None:
        super().__init__(report.summary())
        self.report = report


def expectations(contract: Contract) -> tuple[Expectation, ...]:
    """The batch expectations of `contract`, in a stable order."""
    out: list[Expectation] = []
    for f in contract.fields:
        out.append(Expectation(f.name, "exists"))
        if not f.nullable:
            out.append(Expectation(f.name, "not_null"))
        if f.is_numeric:
            out.append(Expectation(f.name, "between", {"min": f.min, "max": f.max}))
        if f.format == "hhmm":
            out.append(Expectation(f.name, "not_in_set", {"values": _BAD_HHMM}))
        if f.type == "category":
            out.append(Expectation(f.name, "in_set", {"values": f.categories}))
    return tuple(out)


def _unexpected_mask(spec: FieldSpec, exp: Expectation, col: pd.Series) -> np.ndarray:
    # Nulls are judged only by not_null, as Great Expectations does for the other expectations.
    notnull = col.notna().to_numpy()
    if exp.kind == "not_null":
        return ~notnull
    if exp.kind == "between":
        v = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            bad = ~((v >= exp.args["min"]) & (v <= exp.args["max"]))
        return bad & notnull
    if exp.kind == "in_set":
        return ~col.isin(exp.args["values"]).to_numpy() & notnull
    if exp.kind == "not_in_set":
        return col.isin(exp.args["values"]).to_numpy() & notnull
    raise ValueError(exp.kind)


def validate_frame(contract: Contract, frame: pd.DataFrame, *, max_examples: int = 5) -> BatchReport:
    """Evaluate the contract's expectations on `frame` with vectorised pandas (no Great Expectations)."""
    failures: list[Failure] = []
    exps = expectations(contract)
    n = len(frame)
    for exp in exps:
        spec = contract.field(exp.column)
        if exp.column not in frame.columns:
            # As Great Expectations does: every expectation on a missing column fails.
            failures.append(Failure(exp.column, exp.describe(), n, 100.0, ()))
            continue
        if exp.kind == "exists":
            continue
        col = frame[exp.column]
        mask = _unexpected_mask(spec, exp, col)
        bad = int(mask.sum())
        if bad:
            examples = tuple(_plain(v) for v in col[mask].head(max_examples).tolist())
            failures.append(Failure(exp.column, exp.describe(), bad, 100.0 * bad / max(n, 1), examples))
    return BatchReport(rows=n, evaluated=len(exps), failures=tuple(failures), engine="vectorised")


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def gx_suite(contract: Contract) -> Any:
    """The Great Expectations `ExpectationSuite` equivalent to `expectations(contract)`."""
    import great_expectations as gx

    e = gx.expectations
    suite = gx.ExpectationSuite(name=f"{contract.name}-{contract.version}")
    for exp in expectations(contract):
        meta = {"driftlight": exp.describe()}
        if exp.kind == "exists":
            suite.add_expectation(e.ExpectColumnToExist(column=exp.column, meta=meta))
        elif exp.kind == "not_null":
            suite.add_expectation(e.ExpectColumnValuesToNotBeNull(column=exp.column, meta=meta))
        elif exp.kind == "between":
            suite.add_expectation(
                e.ExpectColumnValuesToBeBetween(
                    column=exp.column, min_value=exp.args["min"], max_value=exp.args["max"], meta=meta
                )
            )
        elif exp.kind == "in_set":
            suite.add_expectation(e.ExpectColumnValuesToBeInSet(column=exp.column, value_set=list(exp.args["values"]), meta=meta))
        elif exp.kind == "not_in_set":
            suite.add_expectation(
                e.ExpectColumnValuesToNotBeInSet(column=exp.column, value_set=list(exp.args["values"]), meta=meta)
            )
    return suite


def validate_with_gx(contract: Contract, frame: pd.DataFrame) -> BatchReport:
    """Validate `frame` with Great Expectations (ephemeral context, no progress bars, no files)."""
    import great_expectations as gx

    ctx = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("driftlight")
    asset = source.add_dataframe_asset("batch")
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    suite = ctx.suites.add(gx_suite(contract))
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite)
    failures: list[Failure] = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        assert cfg is not None, "a result of a suite's expectation carries its configuration"
        col = str(cfg.kwargs.get("column"))
        res = r.result or {}
        count = res.get("unexpected_count")
        if count is None:  # column missing: GE reports no counts
            count, pct = len(frame), 100.0
        else:
            pct = float(res.get("unexpected_percent") or 0.0)
        failures.append(
            Failure(
                column=col,
                expectation=cfg.meta.get("driftlight", cfg.type),
                unexpected_count=int(count),
                unexpected_percent=pct,
                examples=tuple(_plain(v) for v in (res.get("partial_unexpected_list") or [])[:5]),
            )
        )
    return BatchReport(rows=len(frame), evaluated=len(result.results), failures=tuple(failures), engine="great_expectations")
