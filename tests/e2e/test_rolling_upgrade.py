"""Ship alone, for real: in the split topology under a paced order load, the ordering unit is
replaced by its next release (`order_confirmed.v1` gains an optional field and a `.v2` is
published beside it) and then rolled back, while customer stays at the current release; then
every database and the broker are read and every invariant of `make faults` is checked."""

from __future__ import annotations

import pytest

from bench.faults.classes import CLASSES, Context
from bench.faults.run import run_class
from bench.faults.system import running_system
from tests.conftest import PG_ADMIN_DSN, require_server
from tests.integration.test_brokers import RABBITMQ_URL, Brokers
from tests.services import POSTGRES, RABBITMQ

ROLLING_UPGRADE = next(fault for fault in CLASSES if fault.name == "F10")


@pytest.mark.timeout(240)
async def test_orders_keep_flowing_through_an_upgrade_and_a_rollback_of_one_service() -> None:
    require_server("PostgreSQL", POSTGRES)
    require_server("RabbitMQ", RABBITMQ)
    async with running_system("split", admin_dsn=PG_ADMIN_DSN, broker=RABBITMQ_URL) as shop:
        try:
            result = await run_class(
                ROLLING_UPGRADE, Context(shop, load_seconds=20.0), count=100, rate=5
            )
        finally:
            await Brokers("rabbitmq", shop.namespace).delete_everything(list(shop.config.services))
    verdict = result.verdict
    assert result.notes[:2] == ["ordering upgraded to its next release", "ordering rolled back"]
    assert any(note.startswith("next release: ") for note in result.notes), result.notes
    assert verdict.orders + verdict.refused == 100
    assert (verdict.lost, verdict.duplicated, verdict.stuck, verdict.unexpected) == (0, 0, 0, 0)
    assert verdict.violations == [], "\n".join(verdict.violations)
    assert verdict.outcomes["confirmed"] > 0, verdict.outcomes
