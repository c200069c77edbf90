"""Per-service migrations with Alembic, run programmatically: no env.py copied into each service.

Every service database holds two branches in its own version table: `cleave` (the chassis's
outbox, inbox and dead letters) and the service's own. `upgrade` is idempotent.
"""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection

from cleave.data.database import Database

CHASSIS_MIGRATIONS = Path(__file__).parent / "migrations"


def version_table(service: str) -> str:
    return f"{service}_alembic_version"


def script_directory(migrations: Path) -> ScriptDirectory:
    return ScriptDirectory(
        str(CHASSIS_MIGRATIONS),
        version_locations=[str(CHASSIS_MIGRATIONS / "versions"), str(migrations)],
    )


async def upgrade(service: str, migrations: Path, database: Database) -> list[str]:
    """Bring the service's database to the newest revision; returns the revisions applied."""
    script = script_directory(migrations)
    applied: list[str] = []

    def run(connection: Connection) -> None:
        def steps(revision: object, _context: MigrationContext) -> list[object]:
            return list(script._upgrade_revs("heads", revision))  # type: ignore[arg-type]

        config = Config()
        with EnvironmentContext(config, script, fn=steps, destination_rev="heads") as env:
            env.configure(
                connection=connection,
                version_table=version_table(service),
                on_version_apply=lambda *, step, **_: applied.append(step.up_revision_id or ""),
            )
            with env.begin_transaction():
                env.run_migrations()

    async with database.transaction() as connection:
        await connection.run_sync(run)
    return applied


async def current_heads(
    service: str, migrations: Path, database: Database
) -> tuple[set[str], set[str]]:
    """The revisions the database is at, and the newest ones the code knows."""
    script = script_directory(migrations)

    def read(connection: Connection) -> set[str]:
        context = MigrationContext.configure(
            connection, opts={"version_table": version_table(service)}
        )
        return set(context.get_current_heads())

    async with database.read() as connection:
        current = await connection.run_sync(read)
    return current, set(script.get_heads())
