"""Stock reservations under concurrent calls: a compensation retried while its first call is
still running (a paused catalog answering both at once) gives the stock back once, never twice."""

from __future__ import annotations

import asyncio

from cleave.runtime import Unit
from shop.catalog import store
from shop.catalog.contract import OrderLine
from shop.catalog.handlers import LocalCatalog


async def stock_of(unit: Unit, sku: str) -> int:
    async with unit.context("catalog").read() as connection:
        return int((await store.get_products(connection, [sku]))[sku].stock)


async def test_releases_arriving_together_give_the_stock_back_once(unit: Unit) -> None:
    catalog = LocalCatalog(unit.context("catalog"))
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
