"""Derive the per-request pydantic model and the JSON Schema from the contract.

Per request we use pydantic (about 1 µs per record); per batch, `batch.py`. Strictness choices:
numbers must be JSON numbers (no "12" strings, no booleans), NaN and infinity are refused,
unknown keys are refused (`extra="forbid"`), every field must be present (a nullable field is
sent as null, so a caller that forgot a field is told rather than silently imputed), and
timestamps must carry a timezone (a naive local time sent as UTC is exactly the skew trap the
dataset sets), must be strings (a bare number is not read as a Unix epoch) and must lie in the
contract's event-time range; text must be printable (no NUL or other control characters, no lone
UTF-16 surrogates): what the request model accepts, every log store can hold.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, create_model
from pydantic_core import PydanticCustomError

from data_contracts.contract import Contract, FieldSpec

# A category code that is unseen but accepted ("flag") must still look like a code, so junk such
# as a whole sentence cannot inflate the unseen counters or the log.
CATEGORY_MAX_LENGTH = 16


def _check_hhmm(value: int) -> int:
    if value % 100 >= 60:
        raise ValueError(f"minutes part of hhmm must be < 60, got {value % 100}")
    return value


def _no_bare_number(value: Any) -> Any:
    # pydantic reads a number as a Unix epoch (0 -> 1970, 1e10 -> 2286): refuse it, a caller who
    # sends one almost certainly meant something else.
    if not isinstance(value, str | datetime):
        raise PydanticCustomError(
            "timestamp_type", "expected an ISO-8601 timestamp string, got {kind}", {"kind": type(value).__name__}
        )
    return value


def _in_time_range(spec: FieldSpec) -> Any:
    lo, hi = spec.earliest, spec.latest
    assert lo is not None and hi is not None, "the contract parser bounds every timestamp field"

    def check(value: datetime) -> datetime:
        # Years first: comparing (or converting to UTC) an aware datetime near year 1 or 9999 with
        # a large offset overflows.
        if not (lo.year - 1 <= value.year <= hi.year + 1 and lo <= value <= hi):
            raise PydanticCustomError(
                "time_out_of_range",
                "event time must lie between {lo} and {hi}",
                {"lo": lo.isoformat(), "hi": hi.isoformat()},
            )
        return value

    return AfterValidator(check)


def printable_text(value: str) -> str:
    """`value` if every character is printable; NUL, control characters and lone surrogates are refused.

    PostgreSQL text cannot hold NUL, and a lone surrogate cannot be encoded as UTF-8 (not in a
    store, not in a response).
    """
    if not value.isprintable():
        raise PydanticCustomError("unprintable_text", "text must be printable: no control characters, NUL or lone surrogates")
    return value


def _annotation(spec: FieldSpec) -> Any:
    ann: Any
    if spec.type == "timestamp":
        ann = Annotated[AwareDatetime, BeforeValidator(_no_bare_number), _in_time_range(spec)]
    elif spec.type == "category":
        if spec.unseen == "reject":
            ann = Literal[spec.categories]  # type: ignore[valid-type]
        else:
            ann = Annotated[str, Field(strict=True, min_length=1, max_length=CATEGORY_MAX_LENGTH), AfterValidator(printable_text)]
    elif spec.type == "integer":
        ann = Annotated[int, Field(strict=True, ge=int(spec.min or 0), le=int(spec.max or 0))]
        if spec.format == "hhmm":
            ann = Annotated[ann, AfterValidator(_check_hhmm)]
    else:
        ann = Annotated[float, Field(strict=True, ge=spec.min, le=spec.max)]
    if spec.nullable:
        ann = ann | None
    return Annotated[ann, Field(description=_describe(spec))]


def _describe(spec: FieldSpec) -> str:
    unit = f" Unit: {spec.unit}." if spec.unit else ""
    return f"{spec.description}{unit} Expected: {spec.expected()}."


@lru_cache(maxsize=8)
def request_model(contract: Contract) -> type[BaseModel]:
    """The pydantic model for one record of `contract` (cached per contract)."""
    fields: dict[str, Any] = {f.name: (_annotation(f), ...) for f in contract.fields}
    model = create_model(  # type: ignore[call-overload]
        "FlightRecord",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False, title="FlightRecord"),
        __doc__=f"One record of contract {contract.name} v{contract.version}: {contract.description}",
        **fields,
    )
    return model  # type: ignore[no-any-return]


def json_schema(contract: Contract) -> dict[str, Any]:
    """The JSON Schema of one record, with the contract's name and version (checked into the repo)."""
    schema = request_model(contract).model_json_schema()
    schema["$id"] = f"driftlight:contract:{contract.name}:{contract.version}"
    schema["x-contract-version"] = contract.version
    schema["x-unseen-policy"] = {f.name: f.unseen for f in contract.category_fields}
    schema["x-units"] = {f.name: f.unit for f in contract.fields if f.unit}
    return schema
