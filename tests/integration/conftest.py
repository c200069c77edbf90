"""Fixtures the integration suites share: the toy system on SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from cleave.config import SystemConfig, Topology
from tests.conftest import PostgresDatabases


@pytest.fixture
async def toy_config(base_config: SystemConfig, backend: str) -> AsyncIterator[SystemConfig]:
    """The toy system (`notes` and `tally`) as one unit, on databases of its own."""
    services = {
        "notes": "tests.integration.toy:notes_service",
        "tally": "tests.integration.toy:tally_service",
    }
    database = "sqlite+aiosqlite:///{var}/{service}.db"
    databases = PostgresDatabases()
    if backend == "postgresql":
        await databases.create(list(services))
        database = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{databases.prefix}_{{service}}"
    topology = Topology(
        name="toy", units={"toy": ("notes", "tally")}, broker="memory", database=database
    )
    try:
        yield replace(
            base_config, services=services, topology=topology, topologies={"toy": topology}
        )
    finally:
        await databases.drop()
