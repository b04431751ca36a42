"""Turn validation failures into answers a caller can act on, and count them.

Every 4xx body has the same shape:
    {"error": <code>, "message": <one sentence>,
     "detail": [{"field", "kind", "expected", "received", "message"}]}
`field` is a dotted path (`records[3].temp`), `expected` comes from the contract, `received` is
the value that came (non-finite numbers as strings, long strings cut), `kind` is from a fixed set
that is also the `kind` label of `driftlight_contract_violations_total`.

A body can always be encoded: text the caller sent that UTF-8 cannot hold (a lone surrogate such as
"\\ud800", in a value or in a key) is shown with backslash escapes instead of failing as a 500.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from data_contracts.contract import Contract

KINDS = (
    "missing",
    "extra_field",
    "wrong_type",
    "not_finite",
    "out_of_range",
    "unknown_category",
    "unseen_category",
    "bad_format",
    "invalid_json",
    "not_an_object",
    "batch_size",
    "invalid_value",
    "unknown_id",  # /feedback: an id this service never issued
    "unavailable",  # no model loaded (503)
    "unauthorized",  # /admin/*: missing or wrong token (401)
    "disabled",  # /admin/*: no admin token configured (403)
)

_TYPE_TO_KIND = {
    "missing": "missing",
    "extra_forbidden": "extra_field",
    "finite_number": "not_finite",
    "greater_than_equal": "out_of_range",
    "less_than_equal": "out_of_range",
    "greater_than": "out_of_range",
    "less_than": "out_of_range",
    "literal_error": "unknown_category",
    "timezone_aware": "bad_format",
    "time_out_of_range": "out_of_range",
    "timestamp_type": "wrong_type",
    "unprintable_text": "invalid_value",
    "string_unicode": "invalid_value",
    "datetime_from_date_parsing": "bad_format",
    "datetime_parsing": "bad_format",
    "value_error": "bad_format",
    "string_too_long": "invalid_value",
    "string_too_short": "invalid_value",
    "json_invalid": "invalid_json",
    "model_attributes_type": "not_an_object",
    "dict_type": "not_an_object",
    "too_long": "batch_size",
    "too_short": "batch_size",
}


def received_value(value: Any) -> Any:
    """The value that came, as an error body shows it: non-finite numbers as strings, long text cut."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("inf", "Infinity").replace("nan", "NaN")
    if isinstance(value, str) and len(value) > 120:
        return value[:120] + "…"
    if isinstance(value, (dict, list)):
        text = repr(value)
        return text if len(text) <= 120 else text[:120] + "…"
    return value


def _path(loc: Sequence[Any]) -> str:
    parts = [p for p in loc if p != "body"]
    out = ""
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "body"


def describe_errors(
    errors: Iterable[Mapping[str, Any]],
    contract: Contract,
    *,
    expected_for: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """One detail item per pydantic error; `expected_for` adds expectations for non-contract fields."""
    extra = dict(expected_for or {})
    names = set(contract.field_names)
    items = []
    for err in errors:
        loc = tuple(err.get("loc", ()))
        etype = str(err.get("type", ""))
        kind = _TYPE_TO_KIND.get(
            etype, "wrong_type" if etype.endswith("_type") or etype.endswith("_parsing") else "invalid_value"
        )
        leaf = next((p for p in reversed(loc) if isinstance(p, str) and p != "body"), None)
        if leaf in names:
            expected = contract.field(leaf).expected()
        elif kind == "extra_field":
            expected = "no such field: the contract's fields are " + ", ".join(contract.field_names)
        elif leaf in extra:
            expected = extra[leaf]
        elif kind == "invalid_json":
            expected = "a valid JSON document"
        elif kind == "not_an_object":
            expected = "a JSON object"
        else:
            expected = extra.get("*", "see the OpenAPI document at /docs")
        received = None if kind in ("missing", "invalid_json") else received_value(err.get("input"))
        message = str(err.get("msg", ""))
        if kind == "invalid_json":
            message = f"malformed JSON: {(err.get('ctx') or {}).get('error', message)}"
        field = "body" if kind == "invalid_json" else _path(loc)  # loc holds a character offset
        items.append({"field": field, "kind": kind, "expected": expected, "received": received, "message": message})
    return items


def metric_field(path: str, contract: Contract) -> str:
    """The bounded `field` label for a detail path: a contract field name, or a placeholder."""
    leaf = path.rsplit(".", 1)[-1].split("[", 1)[0]
    if leaf in contract.field_names:
        return leaf
    return "_other"


class ErrorItem(BaseModel):
    field: str
    kind: str
    expected: str
    received: Any = None
    message: str


class ErrorOut(BaseModel):
    error: str
    message: str
    detail: list[ErrorItem]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed JSON"},
    404: {"model": ErrorOut, "description": "Unknown prediction id"},
    413: {"model": ErrorOut, "description": "Batch larger than the configured maximum"},
    415: {"model": ErrorOut, "description": "Body is not application/json"},
    422: {"model": ErrorOut, "description": "A field breaks the contract"},
    503: {"model": ErrorOut, "description": "No model loaded"},
}


def item(field: str, kind: str, expected: str, received: Any, message: str) -> ErrorItem:
    """One detail item; `kind` must be one of KINDS (it labels a Prometheus counter)."""
    if kind not in KINDS:
        raise ValueError(f"unknown error kind {kind!r}: add it to service.errors.KINDS")
    return ErrorItem(field=field, kind=kind, expected=expected, received=received, message=message)


def public_reason(reason: str | None) -> str | None:
    """What an unauthenticated caller may see of an internal error: its type, never its text (which
    can hold file-system paths, URLs or hostnames). "LookupError: no version..." -> "LookupError"."""
    if not reason:
        return reason
    head = reason.split(":", 1)[0].strip()
    kind = head if head.isidentifier() else "error"
    return f"{kind} (details in the server log, or send the admin token)"


def encodable(obj: Any) -> Any:
    """`obj` with every string (keys too) made UTF-8 encodable: lone surrogates become `\\udXXX`."""
    if isinstance(obj, str):
        try:
            obj.encode("utf-8")
        except UnicodeEncodeError:
            return obj.encode("utf-8", "backslashreplace").decode("utf-8")
        return obj
    if isinstance(obj, Mapping):
        return {encodable(k): encodable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [encodable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return received_value(obj)
    return obj


class SafeJSONResponse(JSONResponse):
    """A JSONResponse that never fails to render on text that came from a caller."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (UnicodeEncodeError, ValueError):
            return super().render(encodable(content))


def error_response(
    status: int,
    error: str,
    message: str,
    detail: Sequence[ErrorItem | Mapping[str, Any]],
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Every 4xx/5xx body, built through the one error model (`ErrorOut`); always encodable."""
    items = [d if isinstance(d, ErrorItem) else ErrorItem(**d) for d in detail]
    body = ErrorOut(error=error, message=message, detail=items).model_dump()
    return SafeJSONResponse(body, status_code=status, headers=dict(headers) if headers else None)
