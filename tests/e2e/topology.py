"""Starting the whole system as `cleave up --topology NAME` does, for the end-to-end suites:
fresh PostgreSQL databases and a broker namespace of its own for a split, free ports for every
unit, and everything deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from cleave.auth.revocation import revocation_queue
from cleave.config import load_config
from tests.conftest import PostgresDatabases, require_server
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
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("CLEAVE_", "OTEL_"))}
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
            environment[key] = f"127.0.0.1:{free_port()}:{free_port()}:{free_port()}"
    port = free_port()
    log = tmp_path / "shop.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: ASYNC220 - starts the server and returns at once
            [sys.executable, "-m", "cleave", "up", "--topology", topology, "--port", str(port)],
            cwd=ROOT,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    running = Running(f"http://127.0.0.1:{port}", environment, log)
    try:
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 180
            while True:
                assert process.poll() is None, running.tail()
                try:
                    if (await client.get(f"{running.base}/readyz", timeout=1)).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"not ready:\n{running.tail()}"
                await asyncio.sleep(0.2)
        yield running
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if brokers is not None:
            await brokers.delete_everything(
                [*config.services, *map(revocation_queue, config.topology.units)]
            )
        await databases.drop()
