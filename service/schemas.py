"""The HTTP request and response models (the OpenAPI document is built from these).

The per-record request model is derived from the contract (`data_contracts.request_model`); the
batch wrappers are built around it here, with the configured batch size. Error bodies are
`service.errors.ErrorOut`.
"""

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
)

from data_contracts.request_model import printable_text


def _integral_float(value: Any) -> Any:
    # JSON Schema's "integer" includes 0.0 and 1.0 (a number with no fraction): accept them as the
    # schema says, while strict mode still refuses strings, booleans and 0.5.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class PredictionOut(BaseModel):
    prediction_id: str = Field(description="Quote it in /feedback when the true outcome is known")
    probability: float = Field(description="P(arrival delay > 15 min)")
    late: bool = Field(description="probability >= the model's threshold")
    threshold: float
    model_name: str
    model_version: str
    served_by: str = Field(description="model, or fallback (the non-ML baseline) when the model is unavailable")
    warnings: list[str] = Field(description="e.g. a category the contract or the model has not seen")


class BatchPredictionOut(PredictionOut):
    index: int = Field(description="the record's position in `records` (0-based)")


class RecordErrorOut(BaseModel):
    index: int = Field(description="the refused record's position in `records` (0-based)")
    field: str = Field(description="dotted path, e.g. records[3].temp")
    kind: str
    expected: Any
    received: Any
    message: str


class BatchOut(BaseModel):
    model_name: str
    model_version: str
    threshold: float
    served: int = Field(description="records scored (each in `predictions`)")
    refused: int = Field(description="records refused at the door (each with its reasons in `errors`)")
    predictions: list[BatchPredictionOut] = Field(description="one per valid record, in the order sent")
    errors: list[RecordErrorOut] = Field(
        description="one per violation of a refused record (a record may have several); empty when all were served"
    )


@dataclass(frozen=True)
class InvalidRecord:
    """A batch item that failed the contract: kept (not raised) so the valid items can be served."""

    raw: Any
    errors: list[dict[str, Any]]


def _per_item(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    try:
        return handler(value)
    except ValidationError as exc:
        return InvalidRecord(value, [dict(e) for e in exc.errors()])


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: Annotated[
        str, Field(strict=True, min_length=1, max_length=64, description="from /predict"), AfterValidator(printable_text)
    ]
    label: Annotated[
        int, Field(strict=True, ge=0, le=1, description="1 = arrived > 15 min late, 0 = not"), BeforeValidator(_integral_float)
    ]


class FeedbackOut(BaseModel):
    accepted: int
    status: str = "accepted"


class PromoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[0-9]+$", description="a registered version")]
    force: bool = Field(False, description="skip the challenger gate (recorded)")
    reason: Annotated[str, Field(max_length=500), AfterValidator(printable_text)] = ""


class RollbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: Annotated[str, Field(max_length=500), AfterValidator(printable_text)] = ""


def batch_models(record: type[BaseModel], max_batch: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """(PredictBatchIn, FeedbackBatchIn): 1 to `max_batch` records / labels, nothing else.

    Each record is validated on its own: one that fails the contract becomes an `InvalidRecord`
    (its errors kept) instead of failing the whole batch; the route decides (per item or atomic).
    The schema of an item is still the record's."""
    item = Annotated[record, WrapValidator(_per_item)]  # type: ignore[valid-type]
    predict: Any = create_model(
        "PredictBatchIn",
        __config__=ConfigDict(extra="forbid"),
        records=(Annotated[list[item], Field(min_length=1, max_length=max_batch)], ...),  # type: ignore[valid-type]
    )
    feedback: Any = create_model(
        "FeedbackBatchIn",
        __config__=ConfigDict(extra="forbid"),
        labels=(Annotated[list[FeedbackIn], Field(min_length=1, max_length=max_batch)], ...),
    )
    return predict, feedback
