"""Read a data contract (YAML) into frozen objects.

The contract is the single source of column truth: the request model (`request_model.py`), the
batch checks (`batch.py`), the JSON Schema and the reference domain are all derived from the
`Contract` returned here. Nothing in this module does I/O except `load_contract`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache, lru_cache
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

    def conversions(self) -> tuple[Conversion, ...]:
        """Every unit this field's values could silently arrive in instead of `unit` (see `unit_conversions`)."""
        if not self.is_numeric or self.format is not None or self.min is None or self.max is None:
            return ()
        return unit_conversions(self.unit, self.min, self.max)

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


@dataclass(frozen=True)
class Conversion:
    """A unit a field's values might arrive in: value_in_`to` = scale * value_in_`unit` + offset."""

    unit: str
    to: str
    scale: float
    offset: float = 0.0

    def apply(self, x: Any) -> Any:
        return self.scale * x + self.offset


# SI prefixes a sender plausibly puts on a metric unit (mm of rain, hPa, km/h is a unit of its own).
_PREFIXES = ("milli", "centi", "deci", "hecto", "kilo")


@cache
def _unit_registry() -> Any:
    import pint  # ~0.15 s to build the registry: only when a unit check first needs it

    return pint.UnitRegistry()


@cache
def _to_base(dimensionality: str) -> tuple[tuple[str, float, float], ...]:
    """(unit name, a, b) with value_in_base = a * value_in_unit + b, for every unit (and common SI
    prefix of it) in pint's registry with this dimensionality. One pass per dimensionality."""
    import warnings

    ureg = _unit_registry()
    canonical: set[str] = set()
    for name in list(ureg._units):  # every defined unit and alias
        try:
            canonical.add(ureg.get_name(name))
        except Exception:  # a few registry entries cannot be resolved on their own
            continue
    out: dict[str, tuple[float, float]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # logarithmic units (decibel, neper) divide by zero at 0
        for n in sorted(canonical):
            try:
                if str(ureg.get_dimensionality(n)) != dimensionality:
                    continue
                b = float(ureg.Quantity(0.0, n).to_base_units().magnitude)
                a = float(ureg.Quantity(1.0, n).to_base_units().magnitude) - b
                c = float(ureg.Quantity(10.0, n).to_base_units().magnitude)
            except Exception:  # delta units do not convert this way
                continue
            affine = math.isfinite(c) and math.isclose(c, 10 * a + b, rel_tol=1e-9, abs_tol=1e-12)
            if not (affine and math.isfinite(a) and math.isfinite(b) and a > 0):  # not logarithmic (decibel)
                continue
            out[n] = (a, b)
            if b == 0:  # a prefix scales a unit without an offset: 1 kilo-X = 1000 X
                for p in _PREFIXES:
                    out.setdefault(p + n, (a * float(ureg._prefixes[p].converter.scale), 0.0))

    # Name order for the report: unprefixed units first, then prefixes of SI-coherent units
    # (millimeter before kilomicron), then the shorter name.
    def rank(n: str) -> tuple[bool, bool, int, str]:
        root = next((n[len(p) :] for p in _PREFIXES if n.startswith(p) and n[len(p) :] in out), None)
        coherent = root is not None and out[root] == (1.0, 0.0)
        return (root is not None, not coherent, len(n), n)

    return tuple((n, *out[n]) for n in sorted(out, key=rank))


@cache
@lru_cache(maxsize=1024)  # pure, and walks pint's registry: one walk per (unit, range)
def unit_conversions(unit: str | None, lo: float, hi: float) -> tuple[Conversion, ...]:
    """Every conversion the units library admits for `unit`, that a value could silently arrive in.

    Derived from pint, not a hand-written list: every unit of pint's registry (and its common SI
    prefixes) with the same dimensionality, as an affine map (offset units such as degF -> degC
    convert as quantities, never as deltas). Kept: maps that move the values (not the identity,
    e.g. millibar -> hectopascal) and that a valid record could still pass the door in: the image
    of the contract's range [lo, hi] must overlap [lo, hi] on at least 2 % of its length and not
    squash it to a point (< 0.1 % of its length). A conversion that sends the values outside the
    range is refused at the door and shows as `contract_violation_rate`. Maps equal within 0.1 %
    are one candidate (the unprefixed, shortest name wins). A unit pint does not know (e.g.
    "local clock time") admits none.
    """
    if not unit:
        return ()
    ureg = _unit_registry()
    try:
        src = ureg.Unit(unit)
        dim = str(src.dimensionality)
        b_src = float(ureg.Quantity(0.0, src).to_base_units().magnitude)
        a_src = float(ureg.Quantity(1.0, src).to_base_units().magnitude) - b_src
    except Exception:  # pint raises several error types for a string it cannot read
        return ()
    span = hi - lo if hi > lo else 1.0
    found: list[Conversion] = []
    seen: list[tuple[float, float]] = []
    for name, a_t, b_t in _to_base(dim):
        # x in unit -> base: a_src x + b_src -> target: (base - b_t) / a_t
        a, b = round(a_src / a_t, 12), round((b_src - b_t) / a_t, 9)  # pint's float noise (32 degF -> 5.7e-14 degC)
        if a == 0 or (abs(a - 1.0) < 1e-3 and abs(b) < 1e-3 * span):
            continue  # nothing would change
        img_lo, img_hi = sorted((a * lo + b, a * hi + b))
        overlap = min(img_hi, hi) - max(img_lo, lo)
        if img_hi - img_lo < 1e-3 * span or overlap < 0.02 * (img_hi - img_lo):
            continue
        if any(abs(a - a2) <= 1e-3 * abs(a2) and abs(b - b2) <= 1e-3 * span for a2, b2 in seen):
            continue
        seen.append((a, b))
        found.append(Conversion(unit, name, a, b))
    return tuple(found)


# The door's bookkeeping: the service stores, beside the per-field violation counts, how many records
# it refused (once each, whatever the number of bad fields); the monitor divides by it.
REJECTED_RECORDS = ("_rejected", "records")
# The same refused records counted by their event hour (the record's own timestamp, when it parses),
# so a window judged by event time sees the traffic that never reached the log.
REJECTED_BY_EVENT = ("_rejected_event", "records")
