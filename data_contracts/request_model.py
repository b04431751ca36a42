"""Derive the per-request pydantic model and the JSON Schema from the contract.

Per request we use pydantic (about 1 µs per record); per batch, `batch.py`. Strictness choices:
numbers must be JSON numbers (no "12" strings, no booleans), NaN and infinity are refused,
unknown keys are refused (`extra="forbid"`), every field must be present (a nullable field is
sent as null, so a caller that forgot a field is told rather than silently imputed), and
timestamps must carry a timezone (a naive local time sent as UTC is exactly the skew trap the
dataset sets).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, create_model

from data_contracts.contract import Contract, FieldSpec

# A category code that is unseen but accepted ("flag") must still look like a code, so junk such
# as a whole sentence cannot inflate the unseen counters or the log.
CATEGORY_MAX_LENGTH = 16


def _check_hhmm(value: int) -> int:
    if value % 100 >= 60:
        raise ValueError(f"minutes part of hhmm must be < 60, got {value % 100}")
    return value


def _annotation(spec: FieldSpec) -> Any:
    ann: Any
    if spec.type == "timestamp":
        ann = AwareDatetime
    elif spec.type == "category":
        if spec.unseen == "reject":
            ann = Literal[spec.categories]  # type: ignore[valid-type]
        else:
            ann = Annotated[str, Field(strict=True, min_length=1, max_length=CATEGORY_MAX_LENGTH)]
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
