"""Prediction ids that prove where they came from.

An id is 32 hex characters of uuid4 followed by 8 hex characters of HMAC-SHA256 over them, keyed
by the settings' `id_secret` (shared by all workers). `/feedback` can then tell "an id we issued"
from a typo or a forgery without a database read, even when the prediction row is still waiting
in another worker's write queue or the store is down: the label is queued, never refused or lost.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

ID_LENGTH = 40
_HEX = frozenset("0123456789abcdef")


def new_id(key: bytes) -> str:
    body = uuid.uuid4().hex
    return body + hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:8]


def is_ours(prediction_id: str, key: bytes) -> bool:
    """True when `prediction_id` has the right shape and a valid tag for `key`."""
    # Only ASCII hex can be ours (and hmac.compare_digest raises on non-ASCII text).
    if len(prediction_id) != ID_LENGTH or not _HEX.issuperset(prediction_id):
        return False
    body, tag = prediction_id[:32], prediction_id[32:]
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()[:8]
    return hmac.compare_digest(tag, expected)
