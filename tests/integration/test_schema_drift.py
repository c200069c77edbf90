"""Drift, caught: each service's migrated schema is exactly the tables its code declares (and the
chassis's own), on SQLite and PostgreSQL. Alembic's `compare_metadata` compares tables, columns,
types, nullability and indexes; CHECK constraints, which it does not compare, are compared here
by name."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import CheckConstraint, Column, Connection, MetaData, String, inspect

from cleave.config import SystemConfig
from cleave.data import tables as chassis
from cleave.runtime import Unit


def drift(connection: Connection, declared: list[MetaData]) -> list[Any]:
    """Every difference between the database and the declared tables (none means no drift)."""
    found: list[Any] = []
    for metadata in declared:
        ours = set(metadata.tables)

        def only_ours(name: str | None, kind: str, _parent: Any, ours: set[str] = ours) -> bool:
            return kind != "table" or name in ours

        context = MigrationContext.configure(
            connection, opts={"include_name": only_ours, "compare_type": True}
        )
        found += compare_metadata(context, metadata)
        inspector = inspect(connection)
        for table in metadata.tables.values():
            wanted = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
            present = {c["name"] for c in inspector.get_check_constraints(table.name)}
            found += [("check constraint", table.name, name) for name in wanted ^ present]
    return found


async def test_every_service_schema_is_what_its_code_declares(config: SystemConfig) -> None:
    unit = Unit(config)
    await unit.migrate()
    try:
        for service in unit.services:
            async with unit.context(service.name).database.transaction() as connection:
                found = await connection.run_sync(drift, [service.metadata, chassis.metadata])
            assert found == [], f"{service.name} drifted from its declared tables: {found}"
    finally:
        await unit.stop()


async def test_the_check_catches_a_column_the_migrations_never_made(
    config: SystemConfig,
) -> None:
    unit = Unit(config)
    await unit.migrate("catalog")
    catalog = next(service for service in unit.services if service.name == "catalog")
    changed = MetaData()
    for table in catalog.metadata.tables.values():
        copy = table.to_metadata(changed)
        if table.name == "products":
            copy.append_column(Column("colour", String(20)))
    try:
        async with unit.context("catalog").database.transaction() as connection:
            found = await connection.run_sync(drift, [changed])
    finally:
        await unit.stop()
    assert [entry[0] for entry in found if entry[0] == "add_column"] == ["add_column"]
