"""`cleave migrate --admin-url`: one PostgreSQL role and database per service, walled off from
each other, created once, on the real server."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from tests.conftest import PG_ADMIN_DSN, require_server, run_cleave
from tests.services import POSTGRES

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("identity", "catalog", "customer", "ordering", "payment", "storefront")

pytestmark = pytest.mark.postgres


@dataclass(frozen=True)
class Provisioned:
    prefix: str
    env: dict[str, str]
    first_run: subprocess.CompletedProcess[str]

    def name(self, service: str) -> str:
        return f"{self.prefix}_{service}"

    def dsn(self, role_of: str, database_of: str) -> str:
        return f"postgresql://{self.name(role_of)}@127.0.0.1:5432/{self.name(database_of)}"


def cleave(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_cleave(*args, env=env, timeout=120)


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provisioned]:
    require_server("PostgreSQL", POSTGRES)
    prefix = f"cleave_p{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEAVE_", "OTEL_"))}
    env.update(
        CLEAVE_VAR=str(tmp_path_factory.mktemp("var")),
        CLEAVE_DATABASE=(
            f"postgresql+asyncpg://{prefix}_{{service}}:pw-{prefix}"
            f"@127.0.0.1:5432/{prefix}_{{service}}"
        ),
    )
    first = cleave("migrate", "--topology", "split", "--admin-url", PG_ADMIN_DSN, env=env)
    try:
        yield Provisioned(prefix, env, first)
    finally:
        subprocess.run(
            [sys.executable, "-c", _DROP, PG_ADMIN_DSN, prefix, *SERVICES], check=True, timeout=60
        )


# Clean-up runs in a fresh interpreter: the module fixture has no event loop of its own.
_DROP = """
import asyncio, sys
import asyncpg
async def drop(dsn, prefix, services):
    connection = await asyncpg.connect(dsn)
    for service in services:
        await connection.execute(f'DROP DATABASE IF EXISTS "{prefix}_{service}" WITH (FORCE)')
        await connection.execute(f'DROP ROLE IF EXISTS "{prefix}_{service}"')
    await connection.close()
asyncio.run(drop(sys.argv[1], sys.argv[2], sys.argv[3:]))
"""


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        yield connection
    finally:
        await connection.close()


async def test_each_service_gets_its_own_role_and_database_and_is_migrated_as_that_role(
    provisioned: Provisioned, admin: asyncpg.Connection
) -> None:
    assert provisioned.first_run.returncode == 0, provisioned.first_run.stderr
    for service in SERVICES:
        name = provisioned.name(service)
        assert f"role {name} created; database {name} created" in provisioned.first_run.stdout
        owner = await admin.fetchval(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = $1", name
        )
        assert owner == name
        role = await admin.fetchrow(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
            "WHERE rolname = $1",
            name,
        )
        assert tuple(role) == (True, False, False, False)
        own = await asyncpg.connect(provisioned.dsn(service, service))
        try:
            # Migrations ran as the service's role, so the role owns every table they made.
            owners = await own.fetch(
                "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
            )
            assert [row["tableowner"] for row in owners] == [name]
        finally:
            await own.close()
    assert "password" not in provisioned.first_run.stdout.replace("***", "")


async def test_ordering_cannot_connect_to_catalog_nor_read_its_tables(
    provisioned: Provisioned, admin: asyncpg.Connection
) -> None:
    assert provisioned.first_run.returncode == 0, provisioned.first_run.stderr
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="CONNECT"):
        await asyncpg.connect(provisioned.dsn("ordering", "catalog"))

    # Even with CONNECT handed over by mistake, catalog's tables grant ordering nothing.
    catalog, ordering = provisioned.name("catalog"), provisioned.name("ordering")
    await admin.execute(f'GRANT CONNECT ON DATABASE "{catalog}" TO "{ordering}"')
    try:
        intruder = await asyncpg.connect(provisioned.dsn("ordering", "catalog"))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="products"):
                await intruder.fetch("SELECT * FROM products")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await intruder.execute("CREATE TABLE planted (id int)")
        finally:
            await intruder.close()
    finally:
        await admin.execute(f'REVOKE CONNECT ON DATABASE "{catalog}" FROM "{ordering}"')


def test_a_second_run_changes_nothing(provisioned: Provisioned) -> None:
    again = cleave(
        "migrate", "--topology", "split", "--admin-url", PG_ADMIN_DSN, env=provisioned.env
    )
    assert again.returncode == 0, again.stderr
    lines = again.stdout.splitlines()
    assert len(lines) == 2 * len(SERVICES)
    assert all(line.endswith(("role and database in place", "up to date")) for line in lines), (
        again.stdout
    )


def test_an_unreachable_admin_server_is_one_clear_line(provisioned: Provisioned) -> None:
    result = cleave(
        "migrate",
        "--topology",
        "split",
        "--admin-url",
        "postgresql://postgres:hunter2@127.0.0.1:1/postgres",
        env=provisioned.env,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: cannot reach the admin database at postgresql://")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "hunter2" not in result.stderr
    wrong = cleave("migrate", "--admin-url", "mysql://root@127.0.0.1/x", env=provisioned.env)
    assert wrong.returncode == 2
    assert wrong.stderr.strip() == "error: --admin-url must be a PostgreSQL URL, not 'mysql'"
