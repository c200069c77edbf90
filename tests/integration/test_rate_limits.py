"""Rate limits on the API, per principal and per client address: past either, a 429 problem with
Retry-After; other principals and addresses keep their own allowance; replicas counting in one
Redis share one allowance; `[rate_limit]` in cleave.toml sets them, and a bad value is a
one-line configuration error."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from cleave.config import RateLimitConfig, SystemConfig, load_config
from cleave.errors import ConfigError
from cleave.runtime import Unit
from cleave.web.app import create_app
from tests.conftest import ROOT, require_server
from tests.services import REDIS

Headers = Callable[[str], dict[str, str]]
ORDERS = "/api/ordering/v1/orders"


@pytest.fixture
async def limited(base_config: SystemConfig) -> AsyncIterator[Unit]:
    tight = RateLimitConfig(per_address="8/minute", per_principal="5/minute")
    unit = Unit(replace(base_config, rate_limit=tight))
    await unit.migrate()
    try:
        yield unit
    finally:
        await unit.stop()


@contextlib.asynccontextmanager
async def client_from(unit: Unit, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of one replica of the unit's app, from `address`, with the app's lifespan (which
    lets go of the rate limiter's storage when it ends)."""
    app = create_app(unit, start_unit=False)
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http,
    ):
        yield http


def assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "rate-limited"
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert response.headers["x-request-id"]


async def test_a_principal_past_its_limit_gets_429_and_others_keep_theirs(
    limited: Unit, customer_headers: Headers
) -> None:
    async with client_from(limited, "10.0.0.1") as http:
        alice = customer_headers("alice")
        answers = [(await http.get(ORDERS, headers=alice)).status_code for _ in range(5)]
        assert answers == [200] * 5
        assert_limited(await http.get(ORDERS, headers=alice))
        # A new token for the same person is the same principal: no fresh allowance.
        assert_limited(await http.get(ORDERS, headers=customer_headers("alice")))
        assert (await http.get(ORDERS, headers=customer_headers("bob"))).status_code == 200


async def test_an_address_past_its_limit_gets_429_whoever_it_claims_to_be(
    limited: Unit, customer_headers: Headers
) -> None:
    async with client_from(limited, "10.0.0.2") as http:
        for person in ("p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"):
            response = await http.get(ORDERS, headers=customer_headers(person))
            assert response.status_code == 200
        assert_limited(await http.get(ORDERS, headers=customer_headers("p9")))
        assert_limited(await http.get("/api/catalog/v1/products"))  # anonymous calls count too
        assert (await http.get("/livez")).status_code == 200  # probes are not the API
    async with client_from(limited, "10.0.0.3") as other:
        assert (await other.get("/api/catalog/v1/products")).status_code == 200


@pytest.mark.parametrize(
    ("storage", "allowed"), [("memory://", 10), ("redis://127.0.0.1:6379/0", 5)]
)
async def test_replicas_counting_in_redis_share_one_allowance_per_principal(
    base_config: SystemConfig, customer_headers: Headers, storage: str, allowed: int
) -> None:
    """Two replicas of the API: in memory each counts on its own (5 + 5), in Redis together (5);
    another person keeps a full allowance either way."""
    if storage.startswith("redis"):
        require_server("Redis", REDIS)
    tight = RateLimitConfig(per_address="off", per_principal="5/minute", storage=storage)
    unit = Unit(replace(base_config, rate_limit=tight))
    await unit.migrate()
    # Subjects of this run's own: the Redis server is shared with other runs and checkouts.
    alice, bob = (f"{name}-{uuid.uuid4().hex[:8]}" for name in ("alice", "bob"))
    try:
        async with client_from(unit, "10.0.0.4") as one, client_from(unit, "10.0.0.5") as two:
            answers = [
                (await replica.get(ORDERS, headers=customer_headers(alice))).status_code
                for replica in (one, two) * 6
            ]
            assert answers.count(200) == allowed, answers
            assert set(answers) == {200, 429}
            assert (await two.get(ORDERS, headers=customer_headers(bob))).status_code == 200
    finally:
        await unit.stop()


def test_cleave_toml_limits_the_api_by_default_and_the_environment_overrides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limits = load_config(ROOT / "cleave.toml").rate_limit
    assert limits.per_address
    assert limits.per_principal
    assert limits.storage == "memory://"
    monkeypatch.setenv("CLEAVE_RATE_LIMIT_PER_ADDRESS", "off")
    monkeypatch.setenv("CLEAVE_RATE_LIMIT_STORAGE", "redis://cache:6379/0")
    changed = load_config(ROOT / "cleave.toml").rate_limit
    assert (changed.per_address, changed.storage) == ("off", "redis://cache:6379/0")
    assert changed.per_principal == limits.per_principal


def test_a_bad_rate_limit_is_a_one_line_error(tmp_path: Path, base_config: SystemConfig) -> None:
    text = (ROOT / "cleave.toml").read_text()
    typo = tmp_path / "cleave.toml"
    typo.write_text(text.replace("per_address =", "per_adress ="))
    with pytest.raises(
        ConfigError, match=r"cleave.toml:\d+: unknown key 'per_adress' in \[rate_limit\]"
    ):
        load_config(typo)
    for field, value, message in (
        ("per_address", "lots", "is not a rate like"),
        ("storage", "carrier-pigeon://coop", "storage 'carrier-pigeon://coop'"),
    ):
        config = replace(base_config, rate_limit=replace(RateLimitConfig(), **{field: value}))
        with pytest.raises(ConfigError, match=message):
            create_app(Unit(config), start_unit=False)
