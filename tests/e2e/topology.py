"""Starting the whole system as `cleave up --topology NAME` does, for the end-to-end suites:
fresh PostgreSQL databases and a broker namespace of its own for a split, free ports for every
unit, and everything deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from cleave.auth.revocation import revocation_queue
from cleave.config import load_config
from tests.conftest import (
    PostgresDatabases,
    clean_environment,
    require_server,
    started_cleave,
    unit_address,
)
from tests.e2e.conftest import ROOT, free_port
from tests.integration.test_brokers import Brokers
from tests.services import KAFKA, NATS, POSTGRES, RABBITMQ, SQS

BROKER_OF = {"split": "rabbitmq", "payments-out": "nats", "kafka": "kafka", "aws": "sqs"}
SERVER_OF = {"rabbitmq": RABBITMQ, "nats": NATS, "kafka": KAFKA, "sqs": SQS}


@dataclass
class Running:
    base: str
    environment: dict[str, str]
    log: Path

    def tail(self, characters: int = 5000) -> str:
        return self.log.read_text()[-characters:]


@contextlib.asynccontextmanager
async def running_topology(topology: str, tmp_path: Path) -> AsyncIterator[Running]:
    config = load_config(ROOT / "cleave.toml", topology=topology)
    environment = clean_environment()
    environment.update(
        CLEAVE_VAR=str(tmp_path / "var"),
        CLEAVE_LOG_FORMAT="json",
        CLEAVE_METRICS_PORT=str(free_port()),
    )
    databases, brokers = PostgresDatabases(), None
    if topology != "monolith":
        require_server("PostgreSQL", POSTGRES)
        kind = BROKER_OF[topology]
        require_server(kind, SERVER_OF[kind])
        brokers = Brokers(kind, f"e2e{uuid.uuid4().hex[:10]}")
        await databases.create(list(config.services))
        environment["CLEAVE_DATABASE"] = (
            f"postgresql+asyncpg://postgres@127.0.0.1:5432/{databases.prefix}_{{service}}"
        )
        environment["CLEAVE_BROKER"] = brokers.url
        for unit in config.topology.units:
            key = f"CLEAVE_ADDRESS_{unit.upper().replace('-', '_')}"
            environment[key] = unit_address()
    port = free_port()
    log = tmp_path / "shop.log"
    try:
        with started_cleave(
            *("up", "--topology", topology, "--port", str(port)),
            base=f"http://127.0.0.1:{port}",
            log=log,
            env=environment,
            ready=None,  # waited for below, off the event loop
        ) as up:
            await asyncio.to_thread(up.wait_until_ready, "/readyz", 180)
            yield Running(up.base, environment, log)
    finally:
        if brokers is not None:
            await brokers.delete_everything(
                [*config.services, *map(revocation_queue, config.topology.units)]
            )
        await databases.drop()
