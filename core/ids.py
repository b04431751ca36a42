"""Prediction ids that prove where they came from.

An id is 32 hex characters of uuid4 followed by 8 hex characters of HMAC-SHA256 over them, keyed
by the settings' `id_secret` (shared by all workers). `/feedback` can then tell "an id we issued"
from a typo or a forgery without a database read, even when the prediction row is still waiting
in another worker's write queue or the store is down: the label is queued, never refused or lost.

Drill traffic is marked in the id itself: uuid4's version nibble (hex character 12, always "4")
becomes "d". The mark is covered by the HMAC, so a caller cannot turn a real prediction into a
drill one (or back) by editing the id, and every table keyed by prediction id (predictions,
labels, shadow scores) knows drill rows without a schema change: the monitor's real light, the
retraining data and the hysteresis leave them out.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pandas as pd

ID_LENGTH = 40
_HEX = frozenset("0123456789abcdef")


DRILL_MARK_AT, DRILL_MARK = 12, "d"


def new_id(key: bytes, *, drill: bool = False) -> str:
    body = uuid.uuid4().hex
    if drill:
        body = body[:DRILL_MARK_AT] + DRILL_MARK + body[DRILL_MARK_AT + 1 :]
    return body + hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:8]


def is_drill(prediction_id: str) -> bool:
    """True for an id issued to drill traffic (the signature is checked by `is_ours`)."""
    return len(prediction_id) > DRILL_MARK_AT and prediction_id[DRILL_MARK_AT] == DRILL_MARK


def drill_mask(prediction_ids: pd.Series) -> pd.Series:
    """Vectorised `is_drill` over a column of ids (True = drill traffic)."""
    return prediction_ids.astype("string").str.get(DRILL_MARK_AT).eq(DRILL_MARK).fillna(False).astype(bool)


def is_ours(prediction_id: str, key: bytes) -> bool:
    """True when `prediction_id` has the right shape and a valid tag for `key`."""
    # Only ASCII hex can be ours (and hmac.compare_digest raises on non-ASCII text).
    if len(prediction_id) != ID_LENGTH or not _HEX.issuperset(prediction_id):
        return False
    body, tag = prediction_id[:32], prediction_id[32:]
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:8]
    return hmac.compare_digest(tag, expected)
