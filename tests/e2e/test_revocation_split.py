"""Revocation on the split, measured: from `/revoke` at the identity unit, and from `cleave users
disable`, until other units (ordering and payment, each its own process) refuse the token with
`token-revoked`. The revocation travels identity's outbox → RabbitMQ → each unit's list."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from cleave.auth.client import authorization_code_token
from tests.conftest import run_cleave
from tests.e2e.conftest import ReadmeSplit

# Seconds within which every unit must refuse a revoked token (typically well under one).
BOUND_SECONDS = 5.0
OTHER_UNITS = {"ordering": "/api/ordering/v1/orders", "payment": "/api/payment/v1/payments"}


def unit_url(split: ReadmeSplit, unit: str) -> str:
    host, http_port, *_ = split.environment[f"CLEAVE_ADDRESS_{unit.upper()}"].split(":")
    return f"http://{host}:{http_port}"


async def cleave(split: ReadmeSplit, *args: str) -> str:
    done = await asyncio.to_thread(run_cleave, *args, "--topology", "split", env=split.environment)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def refused_after(split: ReadmeSplit, token: str, started: float) -> dict[str, float]:
    """Seconds from `started` until each other unit refuses `token` as revoked."""
    headers = {"Authorization": f"Bearer {token}"}
    seconds: dict[str, float] = {}
    async with httpx.AsyncClient(timeout=5) as http:
        while len(seconds) < len(OTHER_UNITS):
            for unit, path in OTHER_UNITS.items():
                if unit in seconds:
                    continue
                answer = await http.get(unit_url(split, unit) + path, headers=headers)
                if answer.status_code == 401:
                    assert answer.json()["code"] == "token-revoked", answer.text
                    seconds[unit] = time.monotonic() - started
                else:
                    assert answer.status_code == 200, answer.text
            assert time.monotonic() - started < BOUND_SECONDS + 5, (seconds, split.tail())
            await asyncio.sleep(0.02)
    return seconds


async def accepted_everywhere(split: ReadmeSplit, token: str) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        for unit, path in OTHER_UNITS.items():
            answer = await http.get(
                unit_url(split, unit) + path, headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == 200, answer.text


async def test_a_token_revoked_at_revoke_is_refused_by_the_other_units_within_seconds(
    readme_split: ReadmeSplit,
) -> None:
    token = (await cleave(readme_split, "token", "--customer", "alice")).strip()
    await accepted_everywhere(readme_split, token)
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        revoked = await http.post(
            f"{readme_split.base}/api/identity/v1/revoke",
            data={"token": token, "token_type_hint": "access_token", "client_id": "cleave-cli"},
        )
    assert revoked.status_code == 200, revoked.text
    answered = time.monotonic()
    seconds = await refused_after(readme_split, token, started)
    print(
        f"\n/revoke answered in {answered - started:.3f} s; from the request → refused: "
        f"{', '.join(f'{u} {s:.3f} s' for u, s in seconds.items())}"
    )
    assert max(seconds.values()) < BOUND_SECONDS


async def test_a_disabled_users_token_is_refused_by_the_other_units_within_seconds(
    readme_split: ReadmeSplit,
) -> None:
    email = f"leaver-{uuid.uuid4().hex[:8]}@example.com"
    created = await cleave(readme_split, "users", "create", email, "--name", "Leaver")
    password = created.split("password:")[1].strip()
    issued = await asyncio.to_thread(
        authorization_code_token,
        f"{readme_split.base}/api/identity/v1",
        client_id="cleave-cli",
        redirect_uri="http://127.0.0.1:8976/callback",
        email=email,
        password=password,
        scopes=["openid", "orders:read", "payments:read"],
    )
    token = str(issued["access_token"])
    await accepted_everywhere(readme_split, token)
    started = time.monotonic()
    await cleave(readme_split, "users", "disable", email)
    returned = time.monotonic()
    seconds = await refused_after(readme_split, token, returned)
    print(
        f"\n`cleave users disable` took {returned - started:.2f} s (a new Python process); "
        f"from its return → refused: {', '.join(f'{u} {s:.3f} s' for u, s in seconds.items())}"
    )
    assert max(seconds.values()) < BOUND_SECONDS
