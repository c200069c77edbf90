"""A restart leaves Alembic out only when the database is at the newest revisions its migration
files declare: those are read from the files as Alembic reads them, and a database one migration
behind the files is still migrated."""

from __future__ import annotations

import shutil
from pathlib import Path

import alembic.runtime.environment
import pytest

from cleave.config import SystemConfig
from cleave.data.database import Database
from cleave.data.migrate import declared_heads, script_directory, upgrade
from cleave.runtime import load_services


def test_the_newest_revisions_read_from_the_files_are_alembics(base_config: SystemConfig) -> None:
    for name, service in load_services(base_config).items():
        alembic = set(script_directory(service.migrations).get_heads())
        assert declared_heads(service.migrations) == alembic, name


async def test_a_database_behind_its_files_is_migrated_and_one_at_them_is_left_as_it_is(
    base_config: SystemConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = load_services(base_config)["identity"].migrations
    newest, *older = sorted(identity.glob("*.py"), reverse=True)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for path in older:
        shutil.copy(path, migrations)
    database = Database("identity", f"sqlite+aiosqlite:///{tmp_path / 'identity.db'}")
    try:
        assert len(await upgrade("identity", migrations, database)) > len(older)  # and cleave's
        assert await upgrade("identity", migrations, database) == []
        shutil.copy(newest, migrations)  # the next release brings one more
        assert await upgrade("identity", migrations, database) == ["identity_0003"]
        with monkeypatch.context() as patched:  # at the newest revisions: Alembic never runs
            patched.setattr(alembic.runtime.environment, "EnvironmentContext", None)
            assert await upgrade("identity", migrations, database) == []
    finally:
        await database.dispose()
