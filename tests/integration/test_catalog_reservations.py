"""Stock reservations under concurrent calls: a compensation retried while its first call is
still running (a paused catalog answering both at once) gives the stock back once, never twice;
and a reserve that runs after its order's release (the caller gave up on it) holds nothing. The
calls are made as the saga makes them: over gRPC in the split."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from cleave.config import SystemConfig
from cleave.data.database import Database
from cleave.data.migrate import upgrade
from cleave.runtime import Unit, load_services
from shop.catalog import store
from shop.catalog.contract import CatalogPort, OrderLine
from tests.conftest import WiredShop


def saga_port(wired: WiredShop) -> CatalogPort:
    """Catalog's port as the order saga calls it: in-process in the monolith, gRPC in the split."""
    return wired.unit_of("ordering").ports.get(CatalogPort)


async def stock_of(unit: Unit, sku: str) -> int:
    async with unit.context("catalog").read() as connection:
        return int((await store.get_products(connection, [sku]))[sku].stock)


async def test_releases_arriving_together_give_the_stock_back_once(wired: WiredShop) -> None:
    catalog, unit = saga_port(wired), wired.unit_of("catalog")
    before = await stock_of(unit, "MUG-CLASSIC")
    await catalog.reserve_stock("o-twice", [OrderLine(sku="MUG-CLASSIC", quantity=2)])
    assert await stock_of(unit, "MUG-CLASSIC") == before - 2

    await asyncio.gather(*(catalog.release_stock("o-twice") for _ in range(4)))
    assert await stock_of(unit, "MUG-CLASSIC") == before
    # A commit after the release finds nothing held: what was given back stays given back.
    await catalog.commit_stock("o-twice")
    async with unit.context("catalog").read() as connection:
        states = {row.state for row in await store.reservation(connection, "o-twice")}
    assert states == {store.RELEASED}


async def test_a_reserve_arriving_after_its_orders_release_holds_nothing(wired: WiredShop) -> None:
    """A paused catalog answers late: the saga gave up on the reserve and released the order
    before the reserve itself ran."""
    catalog, unit = saga_port(wired), wired.unit_of("catalog")
    before = await stock_of(unit, "MUG-CLASSIC")
    await catalog.release_stock("o-late")
    await catalog.reserve_stock("o-late", [OrderLine(sku="MUG-CLASSIC", quantity=3)])
    assert await stock_of(unit, "MUG-CLASSIC") == before
    async with unit.context("catalog").read() as connection:
        assert await store.reservation(connection, "o-late") == []


async def test_a_reserve_and_a_release_at_once_never_leave_stock_held(wired: WiredShop) -> None:
    catalog, unit = saga_port(wired), wired.unit_of("catalog")
    before = await stock_of(unit, "MUG-CLASSIC")
    orders = [f"o-race-{index}" for index in range(12)]
    line = [OrderLine(sku="MUG-CLASSIC", quantity=1)]
    await asyncio.gather(
        *(catalog.reserve_stock(order_id, line) for order_id in orders),
        *(catalog.release_stock(order_id) for order_id in orders),
    )
    assert await stock_of(unit, "MUG-CLASSIC") == before
    async with unit.context("catalog").read() as connection:
        for order_id in orders:
            assert {row.state for row in await store.reservation(connection, order_id)} <= {
                store.RELEASED
            }


async def test_reservations_made_before_order_marks_get_theirs_when_migrated(
    base_config: SystemConfig, tmp_path: Path
) -> None:
    files = load_services(base_config)["catalog"].migrations
    marks, *older = sorted(files.glob("0*.py"), reverse=True)
    migrations = tmp_path / "migrations"
    migrations.mkdir()
    for path in older:
        shutil.copy(path, migrations)
    database = Database("catalog", f"sqlite+aiosqlite:///{tmp_path / 'catalog.db'}")
    try:
        await upgrade("catalog", migrations, database)
        async with database.engine.begin() as connection:
            await store.record_reservation(connection, "o-before", {"MUG-CLASSIC": 2, "TEE": 1})
        shutil.copy(marks, migrations)
        assert await upgrade("catalog", migrations, database) == ["catalog_0003"]
        async with database.engine.begin() as connection:
            assert not await store.mark_order(connection, "o-before", store.HELD)  # reserved
            assert await store.end_reservation(connection, "o-before", store.RELEASED) == {
                "MUG-CLASSIC": 2,
                "TEE": 1,
            }
    finally:
        await database.dispose()
