"""A unit's credentials for calls to other units: one token fetch for every concurrent caller, a
new token before the old one expires, and secrets that are kept owner-only and never rotated
behind a running unit's back."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from cleave.auth.units import (
    SECRETS_FILE,
    UnitTokens,
    ensure_unit_secrets,
    secret_variable,
    unit_secret,
)
from cleave.errors import CleaveError, ServiceUnavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Provider:
    """A token endpoint that counts its calls, answers slowly, and can be made to fail."""

    def __init__(self, lifetime: float = 600.0) -> None:
        self.issued = 0
        self.lifetime = lifetime
        self.down = False

    async def fetch(self) -> tuple[str, float]:
        await asyncio.sleep(0.05)
        if self.down:
            raise CleaveError("the provider is down")
        self.issued += 1
        return f"token-{self.issued}", self.lifetime


async def test_concurrent_calls_share_one_fetch_and_a_token_is_renewed_before_it_expires() -> None:
    provider, clock = Provider(), Clock()
    tokens = UnitTokens("unit-ordering", provider.fetch, clock=clock)
    got = await asyncio.gather(*(tokens.token() for _ in range(20)))
    assert set(got) == {"token-1"}
    assert provider.issued == 1

    clock.now += 470  # not yet 80 % of its ten minutes
    assert await tokens.token() == "token-1"
    clock.now += 20  # past 80 %, still valid: renewed ahead of expiry
    assert list(await asyncio.gather(tokens.token(), tokens.token())) == ["token-2", "token-2"]
    assert provider.issued == 2


async def test_a_provider_outage_keeps_a_valid_token_and_fails_clearly_once_none_is_left() -> None:
    provider, clock = Provider(), Clock()
    tokens = UnitTokens("unit-ordering", provider.fetch, clock=clock)
    assert await tokens.token() == "token-1"
    provider.down = True
    clock.now += 500  # due for renewal, but the old token is still good
    assert await tokens.token() == "token-1"
    clock.now += 200  # expired, and nothing new
    with pytest.raises(ServiceUnavailable, match="unit-ordering has no token"):
        await tokens.token()


def test_secrets_are_made_once_kept_owner_only_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ensure_unit_secrets(tmp_path, ["ordering", "payment"])
    assert set(first) == {"unit-ordering", "unit-payment"}
    assert stat.S_IMODE((tmp_path / SECRETS_FILE).stat().st_mode) == 0o600
    assert ensure_unit_secrets(tmp_path, ["ordering", "payment"]) == first
    assert unit_secret(tmp_path, "ordering") == first["unit-ordering"]

    monkeypatch.setenv(secret_variable("unit-payment"), "from-a-kubernetes-secret")
    again = ensure_unit_secrets(tmp_path, ["ordering", "payment"])
    assert again["unit-payment"] == "from-a-kubernetes-secret"
    assert unit_secret(tmp_path, "payment") == "from-a-kubernetes-secret"
    assert "from-a-kubernetes-secret" not in (tmp_path / SECRETS_FILE).read_text()
    assert secret_variable("unit-payments-out") == "CLEAVE_CLIENT_SECRET_UNIT_PAYMENTS_OUT"
