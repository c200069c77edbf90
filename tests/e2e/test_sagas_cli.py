"""`cleave sagas list / show / retry` exactly as the README shows them: a saga parked after its
retries ran out is listed with its last error, shown with its history, and resumed to its end."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from cleave.config import SystemConfig
from cleave.saga import NEEDS_ATTENTION, list_sagas
from shop.payment.contract import PaymentPort
from tests.conftest import eventually
from tests.e2e.conftest import cleave
from tests.integration.test_order_saga import order, place, settled
from tests.integration.test_saga_faults import running, unavailable, with_settings

Headers = Callable[[str], dict[str, str]]


async def test_a_parked_saga_is_listed_shown_and_resumed_from_the_command_line(
    base_config: SystemConfig, env: dict[str, str], customer_headers: Headers
) -> None:

    config = with_settings(base_config, max_step_attempts=2, retry_seconds=0.01)
    alice = customer_headers("alice")
    async with running(config) as shop:
        payments = shop.unit.ports.get(PaymentPort)
        payments.capture = unavailable("payment")  # type: ignore[method-assign]
        order_id = await place(shop.client, alice, order(("MUG-CLASSIC", 1)))

        context = shop.unit.context("ordering")
        await eventually(lambda: list_sagas(context, status=NEEDS_ATTENTION))

    listed = cleave("sagas", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    for text in ("ordering", "needs_attention", "capture_payment", "payment at 127.0.0.1:9002"):
        assert text in listed.stdout, text
    shown = cleave("sagas", "show", order_id, env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("retry") >= 2
    assert "needs_attention" in shown.stdout
    retried = cleave("sagas", "retry", order_id, env=env)
    assert (retried.returncode, retried.stdout.strip()) == (0, f"{order_id} resumed (running)")
    again = cleave("sagas", "retry", order_id, env=env)
    assert again.returncode == 1
    assert again.stderr.strip() == f"error: saga {order_id} is running, not needs_attention"

    async with running(config, fresh=False) as restarted:  # the outage is over
        done = await settled(restarted.client, alice, order_id)
        assert done["status"] == "confirmed"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sagas", "list", "--status", "bogus"], "error: unknown saga status 'bogus'"),
        (["sagas", "list", "--service", "nope"], "error: unknown service 'nope'"),
    ],
)
def test_bad_saga_commands_get_one_line_and_an_exit_code(
    env: dict[str, str], args: list[str], message: str
) -> None:
    result = cleave(*args, env=env)
    assert result.returncode != 0
    assert result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1
