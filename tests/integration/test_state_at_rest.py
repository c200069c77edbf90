"""State at rest is owner-only: after a seed and some traffic, `var/` and every folder under it
are 0700 and every file (each service's SQLite database with its WAL, the identity database with
the private signing keys, the development credentials and keys) is 0600, under a usual umask."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cleave.config import SystemConfig
from cleave.data.database import Database
from cleave.runtime import Unit
from cleave.web.app import create_app


@pytest.fixture
def usual_umask() -> Iterator[None]:
    previous = os.umask(0o022)  # what most shells set: without care, files come out 0644
    try:
        yield
    finally:
        os.umask(previous)


def modes(root: Path) -> dict[str, int]:
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


async def test_every_folder_and_file_of_the_state_is_owner_only(
    base_config: SystemConfig, usual_umask: None
) -> None:
    unit = Unit(base_config)
    await unit.migrate()
    await unit.seed()
    await unit.start()
    try:
        app = create_app(unit, start_unit=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as http:
            assert (await http.get("/api/identity/v1/jwks")).status_code == 200
            assert (await http.get("/api/catalog/v1/products")).status_code == 200
    finally:
        await unit.stop()
    found = modes(base_config.var_root)
    identity_db = f"{base_config.topology.name}/identity.db"
    assert identity_db in found, sorted(found)
    assert f"{base_config.topology.name}/dev-credentials.json" in found
    assert any(name.endswith("-wal") for name in found), "the WAL files are checked too"
    wrong = {
        name: oct(mode)
        for name, mode in found.items()
        if mode != (0o700 if (base_config.var_root / name).is_dir() else 0o600)
    }
    assert wrong == {}


async def test_a_state_folder_made_before_is_tightened(
    base_config: SystemConfig, usual_umask: None
) -> None:
    base_config.var_dir.mkdir(mode=0o755, parents=True)
    base_config.var_root.chmod(0o755)
    Unit(base_config)
    assert stat.S_IMODE(base_config.var_root.stat().st_mode) == 0o700
    assert stat.S_IMODE(base_config.var_dir.stat().st_mode) == 0o700


async def test_a_database_in_a_folder_of_someone_elses_leaves_that_folder_alone(
    tmp_path: Path, usual_umask: None
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    database = Database("notes", f"sqlite+aiosqlite:///{shared}/new/notes.db")
    await database.dispose()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755
    assert stat.S_IMODE((shared / "new").stat().st_mode) == 0o700
    assert stat.S_IMODE((shared / "new" / "notes.db").stat().st_mode) == 0o600
