"""Per-service migrations with Alembic, run programmatically: no env.py copied into each service.

Every service database holds two branches in its own version table: `cleave` (the chassis's
outbox, inbox and dead letters) and the service's own. `upgrade` is idempotent.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, column, select, table
from sqlalchemy.exc import DBAPIError

from cleave.data.database import Database

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

CHASSIS_MIGRATIONS = Path(__file__).parent / "migrations"


def version_table(service: str) -> str:
    return f"{service}_alembic_version"


def script_directory(migrations: Path) -> ScriptDirectory:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(
        str(CHASSIS_MIGRATIONS),
        version_locations=[str(CHASSIS_MIGRATIONS / "versions"), str(migrations)],
    )


async def upgrade(service: str, migrations: Path, database: Database) -> list[str]:
    """Bring the service's database to the newest revision; returns the revisions applied."""
    if await _at_declared_heads(service, migrations, database):
        return []  # a restart: nothing to apply, so Alembic (a quarter second) is not imported
    from alembic.config import Config
    from alembic.runtime.environment import EnvironmentContext

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


def declared_heads(migrations: Path) -> set[str] | None:
    """The newest revisions of the chassis's migrations and the service's, read as Alembic reads
    them (each file's `revision` and `down_revision`) but without importing Alembic or the files;
    None when a file does not state them as plain literals."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for folder in (CHASSIS_MIGRATIONS / "versions", migrations):
        for path in folder.glob("*.py"):
            if path.name.startswith(("__init__", ".#")):  # what Alembic skips too
                continue
            stated = _stated(path, ("revision", "down_revision")) or {}
            revision, down = stated.get("revision"), stated.get("down_revision")
            if not isinstance(revision, str):
                return None
            revisions.add(revision)
            if isinstance(down, str):
                parents.add(down)
            elif isinstance(down, tuple | list):  # a merge revision
                parents.update(str(parent) for parent in down)
            elif down is not None:
                return None
    return revisions - parents


def _stated(path: Path, names: tuple[str, ...]) -> dict[str, object] | None:
    """The literal values a module assigns to `names` at its top level; None if one is not."""
    stated: dict[str, object] = {}
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if isinstance(target, ast.Name) and target.id in names:
            try:
                stated[target.id] = ast.literal_eval(value)
            except ValueError:
                return None
    return stated


async def _at_declared_heads(service: str, migrations: Path, database: Database) -> bool:
    """Whether the database's version table holds exactly the newest revisions of the files:
    then an upgrade would apply nothing. False when it cannot tell (no table yet, say)."""
    heads = declared_heads(migrations)
    if not heads:
        return False
    versions = table(version_table(service), column("version_num"))
    try:
        async with database.read() as connection:
            current = set((await connection.execute(select(versions.c.version_num))).scalars())
    except DBAPIError:  # a fresh database has no version table: Alembic makes it
        return False
    return current == heads


async def current_heads(
    service: str, migrations: Path, database: Database
) -> tuple[set[str], set[str]]:
    """The revisions the database is at, and the newest ones the code knows."""
    from alembic.runtime.migration import MigrationContext

    script = script_directory(migrations)

    def read(connection: Connection) -> set[str]:
        context = MigrationContext.configure(
            connection, opts={"version_table": version_table(service)}
        )
        return set(context.get_current_heads())

    async with database.read() as connection:
        current = await connection.run_sync(read)
    return current, set(script.get_heads())
