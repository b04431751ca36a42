"""Read a data contract (YAML) into frozen objects.

The contract is the single source of column truth: the request model (`request_model.py`), the
batch checks (`batch.py`), the JSON Schema and the reference domain are all derived from the
`Contract` returned here. Nothing in this module does I/O except `load_contract`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

FieldType = Literal["number", "integer", "category", "timestamp"]
UnseenPolicy = Literal["reject", "flag"]

_TYPES = ("number", "integer", "category", "timestamp")
# Event times outside this range are refused at the door unless the contract declares a narrower one:
# the log stores naive UTC, pandas holds nanoseconds since 1970 (1677..2262), and an offset applied
# near year 1 or 9999 overflows. A timestamp field's `min`/`max` in the YAML narrows it.
DEFAULT_EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
DEFAULT_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


class ContractError(ValueError):
    """The contract file itself is invalid (not the data it describes)."""


@dataclass(frozen=True)
class FieldSpec:
    """One raw field of the contract.

    `min`/`max` are inclusive physical bounds in `unit`; `categories` is the known domain of a
    category; `unseen` says what happens to a value outside it.
    """

    name: str
    type: FieldType
    description: str
    nullable: bool = False
    unit: str | None = None
    format: str | None = None
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] = ()
    unseen: UnseenPolicy = "reject"
    # Timestamps only: the inclusive event-time range (aware UTC).
    earliest: datetime | None = None
    latest: datetime | None = None

    @property
    def is_numeric(self) -> bool:
        return self.type in ("number", "integer")

    def expected(self) -> str:
        """A person-readable sentence of what a valid value looks like (used in 4xx bodies)."""
        if self.type == "timestamp":
            text = "an ISO-8601 timestamp string with a timezone, e.g. 2013-01-01T10:00:00Z"
            if self.earliest is not None and self.latest is not None:
                text += f", between {_iso(self.earliest)} and {_iso(self.latest)}"
        elif self.type == "category":
            if self.unseen == "reject":
                text = "one of " + ", ".join(self.categories)
            else:
                text = f"a string code (known: {len(self.categories)} values, e.g. {', '.join(self.categories[:3])})"
        else:
            kind = "an integer" if self.type == "integer" else "a finite number"
            if self.format == "hhmm":
                kind = "an integer local time hhmm (hours*100 + minutes, minutes < 60)"
            bounds = f" between {_num(self.min)} and {_num(self.max)}" if self.min is not None else ""
            unit = f" {self.unit}" if self.unit and self.format != "hhmm" else ""
            text = f"{kind}{bounds}{unit}"
        return text + (", or null" if self.nullable else "")


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def _timestamp_bound(name: str, key: str, raw: Any, default: datetime) -> datetime:
    """A timestamp field's `min`/`max` as aware UTC (YAML gives a datetime or an ISO string)."""
    if raw is None:
        return default
    try:
        ts = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw))
    except ValueError as exc:
        raise ContractError(f"field {name}: {key} must be an ISO-8601 timestamp, got {raw!r}") from exc
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)  # YAML timestamps with a Z come back naive UTC
    ts = ts.astimezone(UTC)
    if not DEFAULT_EARLIEST <= ts <= DEFAULT_LATEST:
        raise ContractError(f"field {name}: {key} must lie within {_iso(DEFAULT_EARLIEST)}..{_iso(DEFAULT_LATEST)}")
    return ts


def _num(x: float | None) -> str:
    if x is None:
        return "?"
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    source_column: str
    threshold_minutes: float


@dataclass(frozen=True)
class Contract:
    name: str
    version: str
    description: str
    timestamp_field: str
    timezone: str
    target: Target
    fields: tuple[FieldSpec, ...]
    post_event_columns: tuple[str, ...] = field(default_factory=tuple)

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def numeric_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.is_numeric)

    @property
    def category_fields(self) -> tuple[FieldSpec, ...]:
        return tuple(f for f in self.fields if f.type == "category")


def _parse_field(raw: dict[str, Any]) -> FieldSpec:
    name = raw.get("name")
    if not isinstance(name, str) or not name.isidentifier():
        raise ContractError(f"field name must be an identifier, got {name!r}")
    ftype = raw.get("type")
    if ftype not in _TYPES:
        raise ContractError(f"field {name}: type must be one of {_TYPES}, got {ftype!r}")
    unknown = set(raw) - {"name", "type", "description", "nullable", "unit", "format", "min", "max", "categories", "unseen"}
    if unknown:
        raise ContractError(f"field {name}: unknown keys {sorted(unknown)}")
    if not raw.get("description"):
        raise ContractError(f"field {name}: a description is required")
    cats = tuple(str(c) for c in raw.get("categories") or ())
    if ftype == "category" and not cats:
        raise ContractError(f"field {name}: a category needs its categories")
    if len(set(cats)) != len(cats):
        raise ContractError(f"field {name}: duplicate categories")
    lo, hi = raw.get("min"), raw.get("max")
    if ftype in ("number", "integer"):
        if lo is None or hi is None:
            raise ContractError(f"field {name}: numeric fields need min and max")
        if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
            raise ContractError(f"field {name}: need finite min <= max, got {lo}, {hi}")
    unseen = raw.get("unseen", "reject")
    if unseen not in ("reject", "flag"):
        raise ContractError(f"field {name}: unseen must be reject or flag, got {unseen!r}")
    fmt = raw.get("format")
    if fmt not in (None, "hhmm"):
        raise ContractError(f"field {name}: unknown format {fmt!r}")
    earliest = latest = None
    if ftype == "timestamp":
        earliest = _timestamp_bound(name, "min", lo, DEFAULT_EARLIEST)
        latest = _timestamp_bound(name, "max", hi, DEFAULT_LATEST)
        if earliest >= latest:
            raise ContractError(f"field {name}: need min < max, got {_iso(earliest)}, {_iso(latest)}")
        lo = hi = None
    return FieldSpec(
        name=name,
        type=ftype,
        description=" ".join(str(raw["description"]).split()),
        nullable=bool(raw.get("nullable", False)),
        unit=raw.get("unit"),
        format=fmt,
        min=None if lo is None else float(lo),
        max=None if hi is None else float(hi),
        categories=cats,
        unseen=unseen,
        earliest=earliest,
        latest=latest,
    )


def parse_contract(doc: dict[str, Any]) -> Contract:
    """Build a `Contract` from the parsed YAML mapping; raises `ContractError` naming the problem."""
    fields = tuple(_parse_field(f) for f in doc.get("fields") or ())
    names = [f.name for f in fields]
    if len(set(names)) != len(names):
        raise ContractError("duplicate field names")
    ts = doc.get("timestamp_field")
    if ts not in names or next(f for f in fields if f.name == ts).type != "timestamp":
        raise ContractError(f"timestamp_field {ts!r} must name a timestamp field")
    post = tuple(doc.get("post_event_columns") or ())
    leaked = set(post) & set(names)
    if leaked:
        raise ContractError(f"post-event columns {sorted(leaked)} cannot be request fields (leakage)")
    t = doc["target"]
    return Contract(
        name=str(doc["name"]),
        version=str(doc["version"]),
        description=" ".join(str(doc.get("description", "")).split()),
        timestamp_field=ts,
        timezone=str(doc.get("timezone", "UTC")),
        target=Target(
            name=t["name"],
            description=t["description"],
            source_column=t["source_column"],
            threshold_minutes=float(t["threshold_minutes"]),
        ),
        fields=fields,
        post_event_columns=post,
    )


def contract_path(name: str = "flights") -> Path:
    return Path(str(resources.files("data_contracts").joinpath(f"{name}.yaml")))


@lru_cache(maxsize=8)
def load_contract(path: str | Path | None = None) -> Contract:
    """Load and validate a contract file (default: the packaged flights contract)."""
    p = Path(path) if path is not None else contract_path()
    with open(p, encoding="utf-8") as fh:
        return parse_contract(yaml.safe_load(fh))


# The door's bookkeeping: the service stores, beside the per-field violation counts, how many records
# it refused (once each, whatever the number of bad fields); the monitor divides by it.
REJECTED_RECORDS = ("_rejected", "records")
