"""Fixtures for end-to-end tests: the `cleave` command, free ports, and a real `cleave up`."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import asyncpg
import pytest

from tests.conftest import (
    PG_ADMIN_DSN,
    StartedCleave,
    clean_environment,
    run_cleave,
    started_cleave,
    unit_address,
)
from tests.conftest import free_port as free_port  # the one place tests take ports from

ROOT = Path(__file__).resolve().parents[2]
cleave = run_cleave  # the end-to-end tests' name for it


def _environment(folder: Path) -> dict[str, str]:
    environment = clean_environment()
    # A port of its own for /metrics, so that two systems on one machine never meet.
    environment.update(
        CLEAVE_VAR=str(folder / "var"),
        CLEAVE_LOG_FORMAT="json",
        CLEAVE_METRICS_PORT=str(free_port()),
    )
    return environment


def _started_up(folder: Path, env: Mapping[str, str]) -> AbstractContextManager[StartedCleave]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    return started_cleave("up", "--port", str(port), base=base, log=folder / "server.log", env=env)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return _environment(tmp_path)


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A `cleave up` of the test's own, for a test that needs it fresh or stops it."""
    with _started_up(tmp_path, env) as started:
        yield started.base


@dataclass(frozen=True)
class RunningSystem:
    """A `cleave up` (the monolith, seeded) that the tests which only use it share: each adds
    rows of its own (orders, users, clients) and none asserts on what another adds."""

    base: str
    env: Mapping[str, str]  # read-only: a test that needs other variables copies it


@pytest.fixture(scope="session")
def running_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    """One start (seconds) for the session's worker instead of one per test."""
    folder = tmp_path_factory.mktemp("running-system")
    environment = MappingProxyType(_environment(folder))
    with _started_up(folder, environment) as started:
        yield RunningSystem(started.base, environment)


def started_own_system(
    folder: Path, topology: str, http_port: int, *flags: str, imports: Sequence[Path] = ()
) -> AbstractContextManager[StartedCleave]:
    """`cleave up --topology TOPOLOGY FLAGS` of a system the test wrote to `folder/cleave.toml`
    (its code importable from `imports` or the project), its gateway on `http_port`."""
    environment = {
        **clean_environment(),
        "CLEAVE_CONFIG": str(folder / "cleave.toml"),
        "CLEAVE_VAR": str(folder / "var"),
        "PYTHONPATH": os.pathsep.join(map(str, [*imports, ROOT])),
        "CLEAVE_LOG_FORMAT": "json",
    }
    return started_cleave(
        *("up", "--topology", topology, *flags),
        base=f"http://127.0.0.1:{http_port}",
        log=folder / "up.log",
        env=environment,
        cwd=folder,
        within=90,
    )


@dataclass
class ReadmeSplit:
    """`cleave up --topology split`, started exactly as the README says, on a fresh machine."""

    base: str
    environment: dict[str, str]
    log: Path
    prefix: str

    def tail(self, characters: int = 5000) -> str:
        return self.log.read_text()[-characters:]


async def _drop_roles_and_databases(prefix: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        databases = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{prefix}%"
        )
        for row in databases:
            await connection.execute(f'DROP DATABASE IF EXISTS "{row[0]}" WITH (FORCE)')
        roles = await connection.fetch(
            "SELECT rolname FROM pg_roles WHERE rolname LIKE $1", f"{prefix}%"
        )
        for row in roles:
            await connection.execute(f'DROP ROLE IF EXISTS "{row[0]}"')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def readme_split(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReadmeSplit]:
    """One split for the tests that share it (a start costs about 20 s). Nothing is created for
    it beforehand: each service's role and database get names that do not exist yet, and
    `cleave up` provisions them through the `admin_url` of the shipped cleave.toml. Only what
    isolation needs is set, through the environment: state folder, ports, broker namespace."""
    from cleave.auth.revocation import revocation_queue
    from cleave.config import load_config
    from tests.conftest import require_server
    from tests.integration.test_brokers import Brokers
    from tests.services import POSTGRES, RABBITMQ

    require_server("PostgreSQL", POSTGRES)
    require_server("RabbitMQ", RABBITMQ)
    folder = tmp_path_factory.mktemp("readme-split")
    prefix = f"cleave_r{uuid.uuid4().hex[:10]}"
    config = load_config(ROOT / "cleave.toml", topology="split")
    brokers = Brokers("rabbitmq", f"readme{uuid.uuid4().hex[:8]}")
    port = free_port()
    environment = clean_environment()
    environment.update(
        CLEAVE_VAR=str(folder / "var"),
        CLEAVE_LOG_FORMAT="json",
        CLEAVE_PORT=str(port),
        CLEAVE_METRICS_PORT=str(free_port()),
        CLEAVE_DATABASE=f"postgresql+asyncpg://{prefix}_{{service}}@127.0.0.1:5432/{prefix}_{{service}}",
        CLEAVE_BROKER=brokers.url,
    )
    for unit in config.topology.units:
        address = unit_address()
        environment[f"CLEAVE_ADDRESS_{unit.upper()}"] = address
    log = folder / "split.log"
    base = f"http://127.0.0.1:{port}"
    try:
        with started_cleave(
            "up", "--topology", "split", base=base, log=log, env=environment, within=180
        ):
            yield ReadmeSplit(base, environment, log, prefix)
    finally:
        asyncio.run(
            brokers.delete_everything(
                [*config.services, *map(revocation_queue, config.topology.units)]
            )
        )
        asyncio.run(_drop_roles_and_databases(prefix))
