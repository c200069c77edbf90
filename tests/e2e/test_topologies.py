"""One end-to-end suite over every topology: the same orders through the same public API, with
the same outcomes, whether the shop runs as one process or as several over PostgreSQL, a real
broker and gRPC. Only `cleave.toml`'s topology (and addresses for free ports) changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from cleave.config import UnitAddress, load_config
from cleave.money import Money
from cleave.rpc.contract import RpcContract
from shop.payment.contract import PaymentPort, payment_pb2
from tests.conftest import run_cleave
from tests.e2e.conftest import ROOT
from tests.e2e.topology import running_topology

ADDRESS = {
    "name": "Alice",
    "line1": "1 Main St",
    "city": "Utrecht",
    "postal_code": "3511",
    "country": "NL",
}


@dataclass
class Shop:
    base: str
    headers: dict[str, str]
    log: Path
    admin: dict[str, str]  # the console's API takes an admin's token where it asks for one
    topology: str
    # Where the payment service's unit serves gRPC, when it runs apart from ordering.
    payment_grpc: str | None = None

    async def place(
        self, client: httpx.AsyncClient, sku: str, quantity: int, card: str
    ) -> dict[str, Any]:
        body = {
            "lines": [{"sku": sku, "quantity": quantity}],
            "card_token": card,
            "shipping_address": ADDRESS,
        }
        placed = await client.post(
            f"{self.base}/api/ordering/v1/orders", json=body, headers=self.headers
        )
        assert placed.status_code == 202, placed.text
        url = f"{self.base}/api/ordering/v1/orders/{placed.json()['id']}"
        deadline = time.monotonic() + 30
        while True:
            order: dict[str, Any] = (await client.get(url, headers=self.headers)).json()
            if order["status"] != "pending":
                return order
            assert time.monotonic() < deadline, (
                f"order stuck pending:\n{self.log.read_text()[-3000:]}"
            )
            await asyncio.sleep(0.05)

    async def stock(self, client: httpx.AsyncClient, sku: str) -> int:
        return int((await client.get(f"{self.base}/api/catalog/v1/products/{sku}")).json()["stock"])


@pytest.fixture(params=["monolith", "split", "payments-out", "kafka", "aws"])
async def shop(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Shop]:
    async with running_topology(str(request.param), tmp_path) as running:

        async def token(*options: str) -> dict[str, str]:
            issued = await asyncio.to_thread(run_cleave, "token", *options, env=running.environment)
            assert issued.returncode == 0, f"cleave token {' '.join(options)}: {issued.stderr}"
            return {"Authorization": f"Bearer {issued.stdout.strip()}"}

        alice, admin = await asyncio.gather(token("--customer", "alice"), token("--scope", "admin"))
        topology = load_config(ROOT / "cleave.toml", topology=str(request.param)).topology
        unit = topology.unit_of("payment")
        address = running.environment.get(f"CLEAVE_ADDRESS_{unit.upper().replace('-', '_')}")
        payment_grpc = UnitAddress.parse(address).grpc if address else None
        yield Shop(running.base, alice, running.log, admin, str(request.param), payment_grpc)


async def outside_authorise(address: str, token: str | None) -> grpc.StatusCode:
    """Payment.Authorise straight on the payment unit, as a process in the network could."""
    method = RpcContract.of(PaymentPort, payment_pb2).methods["authorise"]
    request = method.encode_call(("o-probe", "alice", Money(amount=4242, currency="EUR"), "t"), {})
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    async with grpc.aio.insecure_channel(address) as channel:
        call: Any = channel.unary_unary(method.path)
        try:
            await call(request, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
    return grpc.StatusCode.OK


# A split's start is most of it: a minute or more when both test workers start systems at once.
@pytest.mark.timeout(300)
async def test_the_same_orders_end_the_same_way_in_every_topology(shop: Shop) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        before = await shop.stock(client, "HOODIE-GREY")
        confirmed = await shop.place(client, "HOODIE-GREY", 2, "tok_approve")
        assert (confirmed["status"], confirmed["reason"]) == ("confirmed", None)
        assert await shop.stock(client, "HOODIE-GREY") == before - 2

        rejected = await shop.place(client, "SOLD-OUT-VINYL", 1, "tok_approve")
        assert (rejected["status"], rejected["reason"]) == ("rejected", "out_of_stock")

        cancelled = await shop.place(client, "HOODIE-GREY", 1, "tok_decline")
        assert (cancelled["status"], cancelled["reason"]) == ("cancelled", "payment_declined")
        assert await shop.stock(client, "HOODIE-GREY") == before - 2  # the reservation was released

        if shop.payment_grpc:  # ordering's calls passed; nobody else's do, not even alice's
            unsigned = await outside_authorise(shop.payment_grpc, None)
            assert unsigned is grpc.StatusCode.UNAUTHENTICATED
            alice = shop.headers["Authorization"].removeprefix("Bearer ")
            as_alice = await outside_authorise(shop.payment_grpc, alice)
            assert as_alice is grpc.StatusCode.PERMISSION_DENIED

        async def counted() -> bool:  # customer learns of the confirmed order through the broker
            me = await client.get(f"{shop.base}/api/customer/v1/customers/me", headers=shop.headers)
            return bool(me.json()["confirmed_orders"] == 1)

        deadline = time.monotonic() + 15
        while not await counted():
            assert time.monotonic() < deadline, "order_confirmed never reached customer"
            await asyncio.sleep(0.1)

        # One trace for the confirmed order, across every service on its path and the broker hop.
        # Spans arrive from several processes in batches: wait for the trace to be whole.
        wanted = {("customer", "consumer"), ("ordering", "producer"), ("payment", "producer")}

        async def whole_order_trace() -> dict[str, Any] | None:
            traces = (
                await client.get(f"{shop.base}/console/api/traces", headers=shop.admin)
            ).json()
            for summary in traces:
                if summary["root"] != "POST /api/ordering/v1/orders":
                    continue
                url = f"{shop.base}/console/api/traces/{summary['trace_id']}"
                detail: dict[str, Any] = (await client.get(url, headers=shop.admin)).json()
                ids = {span["span_id"] for span in detail["spans"]}
                kinds = {(span["service"], span["kind"]) for span in detail["spans"]}
                orphans = [span for span in detail["spans"] if span["parent_id"] not in ids]
                if wanted <= kinds and len(orphans) == 1:
                    return detail
            return None

        deadline = time.monotonic() + 20
        while (spans := await whole_order_trace()) is None:
            assert time.monotonic() < deadline, "no whole trace of the confirmed order"
            await asyncio.sleep(0.3)
        ids = {span["span_id"] for span in spans["spans"]}
        roots = [span for span in spans["spans"] if span["parent_id"] not in ids]
        assert [root["name"] for root in roots] == ["POST /api/ordering/v1/orders"]
        services = {span["service"] for span in spans["spans"]}
        assert {"ordering", "catalog", "payment", "customer"} <= services
        kinds = {(span["service"], span["kind"]) for span in spans["spans"]}
        assert ("customer", "consumer") in kinds
        assert ("ordering", "producer") in kinds
        # Only work is a trace: no background poll (a relay's, a saga runner's) became a root,
        # and the order's id finds its trace again.
        traces = f"{shop.base}/console/api/traces"
        every = (await client.get(traces, headers=shop.admin)).json()
        assert not [t["root"] for t in every if t["root"].startswith("read ")]
        found = (await client.get(traces, params={"q": confirmed["id"]}, headers=shop.admin)).json()
        assert "POST /api/ordering/v1/orders" in {t["root"] for t in found}
        # The units' spans reached the console with the system's secret; nobody else's would,
        # and in front of several units its API wants an administrator.
        stranger = await client.post(f"{shop.base}/v1/traces", content=b"")
        assert stranger.status_code == 401
        anonymous = await client.get(f"{shop.base}/console/api/traces")
        assert anonymous.status_code == (200 if shop.topology == "monolith" else 401)
        # Every unit's log file and every unit's metrics reach the console (the gateway's, in
        # front of several units), for an administrator only.
        units = set(load_config(ROOT / "cleave.toml", topology=shop.topology).topology.units)
        console_logs = f"{shop.base}/console/api/logs"
        started = {"q": "unit serving"}  # each unit's first line, however much it logged since
        lines = (await client.get(console_logs, params=started, headers=shop.admin)).json()
        assert units <= {line.get("unit") for line in lines}
        figures = (await client.get(f"{shop.base}/console/api/metrics", headers=shop.admin)).json()
        assert figures["problems"] == []
        orders = [r for r in figures["routes"] if r["route"] == "/api/ordering/v1/orders"]
        assert orders
        assert orders[0]["requests"] >= 1
        for path in ("/console/api/logs", "/console/api/metrics"):
            anonymous = await client.get(f"{shop.base}{path}")
            assert anonymous.status_code == (200 if shop.topology == "monolith" else 401), path
