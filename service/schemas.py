"""The HTTP request and response models (the OpenAPI document is built from these).

The per-record request model is derived from the contract (`data_contracts.request_model`); the
batch wrappers are built around it here, with the configured batch size. Error bodies are
`service.errors.ErrorOut`.
"""

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, create_model

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


class BatchOut(BaseModel):
    model_name: str
    model_version: str
    threshold: float
    predictions: list[PredictionOut]


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
    """(PredictBatchIn, FeedbackBatchIn): 1 to `max_batch` records / labels, nothing else."""
    predict: Any = create_model(
        "PredictBatchIn",
        __config__=ConfigDict(extra="forbid"),
        records=(Annotated[list[record], Field(min_length=1, max_length=max_batch)], ...),  # type: ignore[valid-type,arg-type]
    )
    feedback: Any = create_model(
        "FeedbackBatchIn",
        __config__=ConfigDict(extra="forbid"),
        labels=(Annotated[list[FeedbackIn], Field(min_length=1, max_length=max_batch)], ...),
    )
    return predict, feedback
