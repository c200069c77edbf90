"""The smoke version of `make faults`, in every `make test`: the payments-out topology under the
supervisor with a fault proxy in front of each unit and the broker, about a hundred paced orders,
the payments unit SIGKILLed mid-load, then latency, resets and a 3 s blackhole to it and to the
broker; then every database, the processor and the broker are read and every invariant checked.
Process faults and the proxy only: the shared servers are used under names of its own, never
stopped."""

from __future__ import annotations

import pytest

from bench.faults.classes import SMOKE, Context
from bench.faults.run import run_class
from bench.faults.system import running_system
from tests.conftest import PG_ADMIN_DSN, require_server
from tests.integration.test_brokers import NATS_URL, Brokers
from tests.services import NATS, POSTGRES


@pytest.mark.timeout(240)
async def test_a_hundred_orders_survive_a_killed_unit_and_a_bad_network() -> None:
    require_server("PostgreSQL", POSTGRES)
    require_server("NATS", NATS)
    async with running_system("payments-out", admin_dsn=PG_ADMIN_DSN, broker=NATS_URL) as shop:
        try:
            # Orders before the kill, during the faults (a killed unit takes seconds to come
            # back) and after them, so the recovery is measured; short enough for make test.
            result = await run_class(SMOKE, Context(shop, load_seconds=20.0), count=100, rate=5)
        finally:
            await Brokers("nats", shop.namespace).delete_everything([])
    verdict = result.verdict
    assert "payments unit killed" in result.notes
    assert verdict.orders + verdict.refused == 100
    assert (verdict.lost, verdict.duplicated, verdict.stuck, verdict.unexpected) == (0, 0, 0, 0)
    assert verdict.violations == [], "\n".join(verdict.violations)
    assert verdict.outcomes["confirmed"] > 0, verdict.outcomes
    assert verdict.recovery_seconds is not None
