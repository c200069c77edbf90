"""Shared fixtures: a whole shop unit on a real database, SQLite or PostgreSQL, and tokens."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, async_playwright

from cleave.auth.tokens import ADMIN_SCOPE, DevIssuer
from cleave.config import SystemConfig, load_config
from cleave.runtime import Unit
from cleave.telemetry import configure_logging
from cleave.web.app import create_app, create_metrics_app
from shop.identity.domain import USER_SCOPES
from tests.services import POSTGRES, reachable

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

configure_logging(json_logs=True)


def require(available: bool, message: str) -> None:
    """Skip when something the test needs is missing on a developer's machine; in CI, fail."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{message}, and CI must not skip it", pytrace=False)
    pytest.skip(f"{message} (outside CI only; make test sets it up)")  # CI fails above


def require_server(name: str, address: tuple[str, int]) -> None:
    require(reachable(address), f"{name} is not reachable on {address[0]}:{address[1]}")


class PostgresDatabases:
    """Throw-away databases, one per service, named uniquely so parallel checkouts never collide."""

    def __init__(self) -> None:
        self.prefix = f"cleave_t{uuid.uuid4().hex[:10]}"
        self.created: list[str] = []

    def name(self, service: str) -> str:
        return f"{self.prefix}_{service}"

    async def create(self, services: list[str]) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for service in services:
                await connection.execute(f'CREATE DATABASE "{self.name(service)}"')
                self.created.append(self.name(service))
        finally:
            await connection.close()

    async def drop(self) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            for database in self.created:
                await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    if request.param == "postgresql":
        require_server("PostgreSQL", POSTGRES)
    return str(request.param)


@pytest.fixture
def base_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SystemConfig:
    for variable in ("CLEAVE_DATABASE", "CLEAVE_TOPOLOGY", "CLEAVE_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CLEAVE_VAR", str(tmp_path / "var"))
    config = load_config(ROOT / "cleave.toml")
    settings = {name: dict(values) for name, values in config.settings.items()}
    # Fast deadlines keep failure paths quick; the behaviour under test is the same.
    settings.setdefault("ordering", {}).update(step_deadline_seconds=3.0, retry_seconds=0.05)
    settings.setdefault("payment", {}).update(processor_timeout_seconds=0.3)
    # The saga and service suites sign their tokens with the development key (a test fixture);
    # the identity suites run against the real provider instead.
    return replace(config, settings=settings, auth=replace(config.auth, issuer="urn:cleave:dev"))


@pytest.fixture
async def config(base_config: SystemConfig, backend: str) -> AsyncIterator[SystemConfig]:
    if backend == "sqlite":
        yield base_config
        return
    databases = PostgresDatabases()
    await databases.create(list(base_config.services))
    template = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{databases.prefix}_{{service}}"
    topology = replace(base_config.topology, database=template)
    try:
        yield replace(base_config, topology=topology)
    finally:
        await databases.drop()


@pytest.fixture
async def unit(config: SystemConfig) -> AsyncIterator[Unit]:
    """The monolith's one unit: migrated, seeded and running (relays and workers started)."""
    running = Unit(config)
    await running.migrate()
    await running.seed()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def client(unit: Unit) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(unit, start_unit=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
        yield http


async def scrape(unit: Unit) -> str:
    """What Prometheus reads from the unit's own metrics port."""
    transport = httpx.ASGITransport(app=create_metrics_app(unit))
    async with httpx.AsyncClient(transport=transport, base_url="http://metrics.test") as http:
        answer = await http.get("/metrics")
        assert answer.status_code == 200
        return answer.text


@pytest.fixture
def issuer(base_config: SystemConfig) -> DevIssuer:
    return DevIssuer.load_or_create(
        base_config.var_root, base_config.auth.issuer, base_config.auth.audience
    )


@pytest.fixture
def admin_headers(issuer: DevIssuer) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue('admin', [ADMIN_SCOPE])}"}


@pytest.fixture
def customer_headers(issuer: DevIssuer) -> Callable[[str], dict[str, str]]:
    def headers(customer_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issuer.issue(customer_id, sorted(USER_SCOPES))}"}

    return headers


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll until `check` returns a truthy value; the last falsy value fails the test."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = await check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {within}s (last: {value!r})")
        await asyncio.sleep(interval)


@pytest.fixture(autouse=True)
def _no_exporter_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)


CHROMIUM = os.environ.get("CLEAVE_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium driven by Playwright; never a downloaded browser."""
    require(bool(shutil.which(CHROMIUM)), f"no browser at {CHROMIUM} (tests/browser.sh adds it)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        try:
            yield launched
        finally:
            await launched.close()
