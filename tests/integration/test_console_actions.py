"""The console of a one-unit system: open only when served on loopback (and its page says so),
yet every state-changing form still needs the CSRF token of the browser's console session; a
replay for a service or a letter that does not exist is a 404 problem, a second replay a 409."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import replace

import httpx
import pytest

from cleave.config import SystemConfig, Topology
from cleave.messaging.consumer import list_dead_letters
from cleave.runtime import Unit
from cleave.web.app import create_app
from cleave.web.console import sign_in_required
from tests.conftest import eventually
from tests.integration import toy
from tests.integration.test_messaging import started, tally_of

FORM_CSRF = re.compile(r'name=csrf value="([^"]+)"')
REPLAY = re.compile(r'action="(/console/dead-letters/tally/\d+/replay)"')


@pytest.fixture
async def toy_unit(base_config: SystemConfig) -> AsyncIterator[Unit]:
    services = {
        "notes": "tests.integration.toy:notes_service",
        "tally": "tests.integration.toy:tally_service",
    }
    topology = Topology(
        name="toy",
        units={"toy": ("notes", "tally")},
        broker="memory",
        database="sqlite+aiosqlite:///{var}/{service}.db",
    )
    config = replace(
        base_config, services=services, topology=topology, topologies={"toy": topology}
    )
    unit = await started(config)
    try:
        yield unit
    finally:
        toy.failures["poison"] = True
        await unit.stop()


def browser(unit: Unit, host: str | None) -> httpx.AsyncClient:
    app = create_app(unit, start_unit=False, console=True, host=host)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1")


async def test_an_open_console_says_so_and_replays_only_with_its_csrf_token(
    toy_unit: Unit,
) -> None:
    async with toy_unit.context("notes").unit_of_work() as uow:
        await toy.write_note(uow, "n1", "poison")
    [letter] = await eventually(lambda: list_dead_letters(toy_unit.context("tally")))
    async with browser(toy_unit, "127.0.0.1") as web:
        page = await web.get("/console")
        assert page.status_code == 200
        assert "This console is open" in page.text
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
        assert page.headers["x-content-type-options"] == "nosniff"
        action = REPLAY.search(page.text)
        token = FORM_CSRF.search(page.text)
        assert action is not None
        assert token is not None
        assert action.group(1) == f"/console/dead-letters/tally/{letter.id}/replay"

        # Another site's form (no token, or a token it made up) changes nothing.
        for sent in ({}, {"csrf": "made-up"}):
            refused = await web.post(action.group(1), data=sent)
            assert refused.status_code == 403
            assert refused.json()["code"] == "csrf"
        assert len(await list_dead_letters(toy_unit.context("tally"))) == 1
        # Nor does a browser without the console's cookie, whatever token it sends.
        async with browser(toy_unit, "127.0.0.1") as stranger:
            alien = await stranger.post(action.group(1), data={"csrf": token.group(1)})
            assert alien.status_code == 403

        toy.failures["poison"] = False  # the broken dependency is fixed
        replayed = await web.post(action.group(1), data={"csrf": token.group(1)})
        assert (replayed.status_code, replayed.headers["location"]) == (303, "/console#messaging")
        assert await tally_of(toy_unit, "poison") == 1
        assert await list_dead_letters(toy_unit.context("tally")) == []

        again = await web.post(action.group(1), data={"csrf": token.group(1)})
        assert again.status_code == 409
        for path, code in (
            ("/console/dead-letters/no-such-service/1/replay", "unknown-service"),
            ("/console/dead-letters/tally/999999/replay", "unknown-dead-letter"),
        ):
            missing = await web.post(path, data={"csrf": token.group(1)})
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
            assert missing.json()["code"] == code


async def test_a_one_unit_console_off_loopback_asks_for_a_sign_in(toy_unit: Unit) -> None:
    for host in ("0.0.0.0", None):  # noqa: S104 - the address a container listens on
        async with browser(toy_unit, host) as web:
            page = await web.get("/console")
            assert page.status_code == 303
            assert page.headers["location"].startswith("/console/sign-in")
            assert (await web.get("/console/api/traces")).status_code == 401
            # Nor the logs, metrics or live streams, to a visitor who has not signed in.
            for path in ("/console/logs", "/console/metrics"):
                refused = await web.get(path)
                assert refused.status_code == 303, path
                assert refused.headers["location"].startswith("/console/sign-in")
            for path in (
                "/console/api/logs",
                "/console/api/metrics",
                "/console/logs/stream",
                "/console/traces/stream",
            ):
                refused = await web.get(path)
                assert refused.status_code == 401, path
                assert refused.headers["content-type"] == "application/problem+json"


def test_the_console_is_open_only_for_one_unit_on_loopback_reached_there(
    base_config: SystemConfig,
) -> None:
    assert not sign_in_required(base_config, "127.0.0.1")
    assert sign_in_required(base_config, "0.0.0.0")  # noqa: S104
    behind_a_proxy = replace(
        base_config, auth=replace(base_config.auth, public_url="https://shop.example")
    )
    assert sign_in_required(behind_a_proxy, "127.0.0.1")
    assert sign_in_required(base_config.with_topology("split"), "127.0.0.1")
