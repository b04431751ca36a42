"""The prod profile refuses secrets an attacker could guess; the dev profile keeps working."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from core.settings import _DEV_ID_SECRET, Settings

STRONG = "Qw3rTy-ab_CD12efGH34ijKL56mnOP78qr"


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("change-me", "published placeholder"),
        ("CHANGE-ME-please-0123456789abcdefghij", "published placeholder"),
        (_DEV_ID_SECRET, "published placeholder"),
        ("x", "shorter than 32"),
        ("a" * 40, "fewer than 8 distinct"),
    ],
)
@pytest.mark.parametrize("name", ["id_secret", "admin_token"])
def test_prod_refuses_weak_secrets_and_names_the_variable(name: str, value: str, why: str) -> None:
    other = {"id_secret": STRONG} if name == "admin_token" else {}
    with pytest.raises(ValidationError) as err:
        Settings(profile="prod", **{name: value, **other})
    text = str(err.value)
    assert f"DRIFTLIGHT_{name.upper()}" in text and why in text and "token_urlsafe" in text


def test_prod_accepts_strong_secrets_and_dev_needs_none() -> None:
    s = Settings(profile="prod", id_secret=STRONG, admin_token=STRONG[::-1])
    assert s.id_key == STRONG.encode()
    assert Settings(profile="dev", admin_token="x").admin_token is not None  # dev: no policy
    with pytest.raises(ValidationError, match="DRIFTLIGHT_ID_SECRET must be set"):
        Settings(profile="prod")
