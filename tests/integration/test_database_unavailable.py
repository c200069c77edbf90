"""A database that cannot serve right now is a 503 with Retry-After, never a 500: tried against a
real PostgreSQL that is still starting up (its recovery waits on the archive, so it answers every
connection with SQLSTATE 57P03, as a server restarting after a crash does)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bench.faults.servers import PrivatePostgres, postgres_available
from cleave.config import SystemConfig, service_database_variable
from cleave.data.database import Database
from cleave.errors import DatabaseUnavailable
from cleave.runtime import Unit
from cleave.web.app import create_app
from tests.conftest import require

Headers = Callable[[str], dict[str, str]]


@pytest.fixture
async def starting_up() -> AsyncIterator[PrivatePostgres]:
    require(postgres_available(), "no PostgreSQL binaries (or no postgres user) to start one")
    server = PrivatePostgres(standby=True)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def test_a_database_that_is_starting_up_is_unavailable_and_a_503_with_retry_after(
    starting_up: PrivatePostgres,
    base_config: SystemConfig,
    monkeypatch: pytest.MonkeyPatch,
    customer_headers: Headers,
) -> None:
    database = Database("ordering", starting_up.url("postgres"))
    try:
        with pytest.raises(DatabaseUnavailable, match="starting up"):
            async with database.read():
                pass
        with pytest.raises(DatabaseUnavailable, match="starting up"):
            async with database.transaction():
                pass
    finally:
        await database.dispose()

    monkeypatch.setenv(service_database_variable("ordering"), starting_up.url("postgres"))
    unit = Unit(base_config)
    for service in ("identity", "catalog", "customer", "payment"):
        await unit.migrate(service)
    await unit.seed()
    try:
        transport = httpx.ASGITransport(app=create_app(unit, start_unit=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
            alice = customer_headers("alice")
            listed = await client.get("/api/ordering/v1/orders", headers=alice)
            placed = await client.post(
                "/api/ordering/v1/orders",
                headers=alice,
                json={
                    "lines": [{"sku": "MUG-CLASSIC", "quantity": 1}],
                    "card_token": "tok_approve",
                    "shipping_address": {
                        "name": "A",
                        "line1": "1 Main St",
                        "city": "Utrecht",
                        "postal_code": "3511",
                        "country": "NL",
                    },
                },
            )
            for answer in (listed, placed):
                assert answer.status_code == 503, answer.text
                assert answer.headers["retry-after"] == "1"
                assert answer.headers["content-type"] == "application/problem+json"
                assert answer.json()["code"] == "unavailable"
                assert "starting up" in answer.json()["detail"]
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert "starting up" in ready.json()["services"]["ordering"]
    finally:
        await unit.stop()


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        ("08006", True),  # connection failure
        ("57P01", True),  # admin shutdown
        ("57P03", True),  # cannot connect now
        ("53300", True),  # too many connections
        ("42P01", False),  # undefined table: a bug, not an outage
        ("23505", False),  # unique violation
    ],
)
def test_errors_are_classified_by_sqlstate_class(sqlstate: str, unavailable: bool) -> None:
    from sqlalchemy.exc import DBAPIError

    from cleave.data.database import _is_connection_error

    class DriverError(Exception):
        def __init__(self) -> None:
            super().__init__("relation does not exist")  # a message that once fooled it
            self.sqlstate = sqlstate

    error = DBAPIError("SELECT 1", None, DriverError())
    assert _is_connection_error(error) is unavailable
