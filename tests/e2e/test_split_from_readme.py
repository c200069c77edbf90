"""The split as a newcomer starts it: `cleave up --topology split`, nothing else, on databases
that do not exist yet. It provisions each service's role and database through the `admin_url`
of cleave.toml, becomes ready and takes an order; two people in two browsers shop through its
gateway at once without ever seeing each other's session (order pages update live, by
server-sent events through the gateway); and a split whose roles do not exist and that has no
`admin_url` stops within seconds saying so, instead of restarting its units forever."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest
from playwright.async_api import Browser, expect

from cleave.errors import EX_CONFIG
from tests.conftest import PG_ADMIN_DSN, clean_environment, run_cleave, unit_address
from tests.e2e.conftest import ROOT, ReadmeSplit, free_port
from tests.e2e.shopping import Shopper, two_people_at_once
from tests.e2e.test_readme import readme_block
from tests.e2e.test_topologies import ADDRESS


def test_the_readme_starts_the_split_with_exactly_this_command() -> None:
    assert "cleave up --topology split " in readme_block("Topologies: cleave it when you need to")


async def test_the_split_provisions_its_databases_becomes_ready_and_takes_an_order(
    readme_split: ReadmeSplit,
) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        owners = await connection.fetch(
            "SELECT datname, pg_get_userbyid(datdba) FROM pg_database WHERE datname LIKE $1",
            f"{readme_split.prefix}%",
        )
    finally:
        await connection.close()
    assert len(owners) == 6  # one database per service, each owned by the service's own role
    assert all(database == owner for database, owner in owners)

    issued = await asyncio.to_thread(
        run_cleave, "token", "--customer", "alice", env=readme_split.environment
    )
    assert issued.returncode == 0, issued.stderr
    headers = {"Authorization": f"Bearer {issued.stdout.strip()}"}
    body = {
        "lines": [{"sku": "MUG-CLASSIC", "quantity": 1}],
        "card_token": "tok_approve",
        "shipping_address": ADDRESS,
    }
    async with httpx.AsyncClient(base_url=readme_split.base, timeout=10) as client:
        placed = await client.post("/api/ordering/v1/orders", json=body, headers=headers)
        assert placed.status_code == 202, placed.text
        deadline = time.monotonic() + 30
        while (
            status := (
                await client.get(f"/api/ordering/v1/orders/{placed.json()['id']}", headers=headers)
            ).json()["status"]
        ) == "pending":
            assert time.monotonic() < deadline, readme_split.tail()
            await asyncio.sleep(0.1)
        assert status == "confirmed"
        assert (await client.get("/metrics")).status_code == 404  # never through the gateway


@pytest.mark.timeout(300)
async def test_two_people_shop_through_the_split_gateway_and_a_third_is_nobody(
    browser: Browser, readme_split: ReadmeSplit
) -> None:
    await two_people_at_once(browser, readme_split.base)
    stranger = await Shopper.open(browser, readme_split.base)
    await stranger.go("/orders")  # someone with no session is asked to sign in, as nobody
    await expect(stranger.page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert await stranger.page.locator("tr[data-order]").count() == 0
    await stranger.close()


def test_a_split_whose_roles_do_not_exist_stops_at_once_with_one_line(tmp_path: Path) -> None:
    # The shipped file without its admin_url: nothing can create the roles.
    shipped = (ROOT / "cleave.toml").read_text().splitlines()
    config = tmp_path / "cleave.toml"
    config.write_text("\n".join(line for line in shipped if not line.startswith("admin_url")))
    nobody = f"cleave_n{uuid.uuid4().hex[:10]}"
    environment = clean_environment()
    environment.update(
        CLEAVE_CONFIG=str(config),
        CLEAVE_VAR=str(tmp_path / "var"),
        CLEAVE_PORT=str(free_port()),
        CLEAVE_METRICS_PORT=str(free_port()),
        CLEAVE_DATABASE=f"postgresql+asyncpg://{nobody}@127.0.0.1:5432/{nobody}_{{service}}",
        CLEAVE_BROKER="memory",
        PYTHONPATH=str(ROOT),
    )
    for unit in ("identity", "catalog", "customer", "ordering", "payment", "storefront"):
        environment[f"CLEAVE_ADDRESS_{unit.upper()}"] = unit_address()
    started = time.monotonic()
    ran = run_cleave("up", "--topology", "split", env=environment, timeout=150)
    took = time.monotonic() - started
    assert ran.returncode == EX_CONFIG, ran.stderr[-3000:]
    last = ran.stderr.strip().splitlines()[-1]
    assert last.startswith("error: unit "), last
    assert f'role "{nobody}" does not exist' in last
    assert "admin_url" in last  # the hint: how to have the roles created
    assert "restarting" not in ran.stderr
    # As long as one unit takes to import and reach its database once (seconds on an idle
    # machine, tens of seconds on a loaded one): never a second attempt.
    assert took < 90, f"took {took:.0f} s"
