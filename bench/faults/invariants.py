"""After a fault: read every service's database, the card processor and the broker directly, and
check that nothing was lost, duplicated, left stuck or left behind.

Each check is a statement about the whole system that must hold however the fault fell:
- every accepted order reaches exactly one terminal state within a bound;
- stock is conserved per SKU (available + reserved + sold = initial) and never negative;
- every confirmed order has exactly one captured payment equal to its total, at the processor
  too; every cancelled or rejected one nets to zero;
- no reservation, payment or processor authorisation is left open behind a finished order;
- every outbox row is delivered; each (consumer, event) is applied at most once (and, for the
  customer's count of confirmed orders, exactly once);
- a retried Idempotency-Key returns the same order;
- dead letters hold exactly the poison messages published on purpose.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench.faults.system import System

TERMINAL = {"confirmed", "rejected", "cancelled"}
RETRYABLE = {"catalog_unavailable", "payment_unavailable", "payment_timeout"}
SERVICES = ("identity", "catalog", "customer", "ordering", "payment")
EXPECTED = {
    "tok_decline": "payment_declined",
    "tok_insufficient_funds": "payment_insufficient_funds",
    "tok_timeout": "payment_timeout",
}


@dataclass
class Poison:
    """Poison messages published on purpose: their ids (schema-breaking) and how many were not
    JSON at all."""

    envelope_ids: set[str] = field(default_factory=set)
    unreadable: int = 0


@dataclass
class Verdict:
    orders: int = 0  # accepted (202) by the system
    refused: int = 0  # never accepted (the client gave up, or a 4xx)
    lost: int = 0
    duplicated: int = 0
    stuck: int = 0
    unexpected: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    recovery_seconds: float | None = None

    def violate(self, text: str) -> None:
        if len(self.violations) < 40:
            self.violations.append(text)

    @property
    def passed(self) -> bool:
        return not (self.lost or self.duplicated or self.stuck or self.violations)


def _utc(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


async def _confirmed_counts(system: System) -> tuple[dict[str, int], dict[str, int]]:
    """Confirmed orders per customer as ordering has them, and as customer has counted them."""
    ordering = await system.connect("ordering")
    try:
        rows = await ordering.fetch(
            "SELECT customer_id, count(*) AS n FROM orders WHERE status = 'confirmed' GROUP BY 1"
        )
    finally:
        await ordering.close()
    customer = await system.connect("customer")
    try:
        counted = await customer.fetch("SELECT id, confirmed_orders FROM customers")
    finally:
        await customer.close()
    return (
        {row["customer_id"]: row["n"] for row in rows},
        {row["id"]: row["confirmed_orders"] for row in counted if row["confirmed_orders"]},
    )


async def wait_until_settled(system: System, order_ids: list[str], *, within: float) -> None:
    """Until every accepted order is terminal, every outbox is delivered and the consumers have
    applied what was delivered (customer's counts match ordering's), or `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            ordering = await system.connect("ordering")
            try:
                rows = await ordering.fetch(
                    "SELECT count(*) FROM orders WHERE id = ANY($1) AND status = 'pending'",
                    order_ids,
                )
            finally:
                await ordering.close()
            pending = rows[0][0]
            undelivered = 0
            for service in SERVICES:
                connection = await system.connect(service)
                try:
                    undelivered += await connection.fetchval(
                        "SELECT count(*) FROM cleave_outbox WHERE delivered_at IS NULL"
                    )
                finally:
                    await connection.close()
            # Delivered is not yet applied: a loaded consumer can be seconds behind its broker.
            if pending == 0 and undelivered == 0:
                confirmed, counted = await _confirmed_counts(system)
                if confirmed == counted:
                    return
        except (OSError, asyncpg.PostgresError) as error:  # a database still coming back
            print(f"  waiting for the databases: {error}", flush=True)
        await asyncio.sleep(1.0)


async def check(
    system: System,
    placed: list[dict[str, Any]],
    skus: dict[str, str],
    initial_stock: dict[str, int],
    *,
    healed_at: float,
    poison: Poison | None = None,
    parked_in_broker: int = 0,
) -> Verdict:
    verdict = Verdict()
    accepted = [p for p in placed if p["order_id"]]
    verdict.orders = len(accepted)
    verdict.refused = len(placed) - len(accepted)
    ids = [p["order_id"] for p in accepted]
    ordering = await system.connect("ordering")
    try:
        orders = {
            row["id"]: row
            for row in await ordering.fetch("SELECT * FROM orders WHERE id = ANY($1)", ids)
        }
        keyed = await ordering.fetch(
            "SELECT customer_id, idempotency_key, count(*) AS n FROM orders "
            "WHERE idempotency_key = ANY($1) GROUP BY 1, 2 HAVING count(*) > 1",
            [p["key"] for p in placed],
        )
        parked_sagas = await ordering.fetch(
            "SELECT id, last_error FROM cleave_sagas WHERE status = 'needs_attention'"
        )
        all_confirmed = await ordering.fetch(
            "SELECT customer_id, count(*) AS n FROM orders WHERE status = 'confirmed' GROUP BY 1"
        )
    finally:
        await ordering.close()

    # Lost, duplicated, stuck.
    for p in accepted:
        if p["order_id"] not in orders:
            verdict.lost += 1
            verdict.violate(f"order {p['order_id']} ({p['key']}) was accepted and is gone")
        if p.get("replayed_id") and p["replayed_id"] != p["order_id"]:
            verdict.duplicated += 1
            verdict.violate(f"{p['key']} replayed as {p['replayed_id']}, not {p['order_id']}")
    verdict.duplicated += len(keyed)
    for row in keyed:
        verdict.violate(f"{row['n']} orders for one Idempotency-Key {row['idempotency_key']}")
    for order in orders.values():
        if order["status"] not in TERMINAL:
            verdict.stuck += 1
            verdict.violate(f"order {order['id']} still {order['status']}")
    for saga in parked_sagas:
        verdict.violate(f"saga {saga['id']} needs attention: {saga['last_error']}")

    # Outcomes, and whether each is one the shop could have meant.
    for p in accepted:
        order = orders.get(p["order_id"])
        if order is None or order["status"] not in TERMINAL:
            continue
        status, reason = order["status"], order["reason"]
        verdict.outcomes[f"{status}:{reason}" if reason else status] += 1
        if not _expected(p, status, reason, skus):
            verdict.unexpected += 1
            verdict.violate(f"{p['key']} ({p['card']}, {p['sku']}) ended {status}: {reason}")

    # Recovery: from the fault's end to the first order confirmed after it.
    confirmed_after = [
        _utc(o["updated_at"])
        for o in orders.values()
        if o["status"] == "confirmed" and _utc(o["updated_at"]) >= healed_at
    ]
    if confirmed_after:
        verdict.recovery_seconds = min(confirmed_after) - healed_at

    await _check_stock(system, verdict, skus, initial_stock, orders)
    await _check_money(system, verdict, orders)
    await _check_messaging(system, verdict, poison, parked_in_broker, all_confirmed)
    return verdict


def _expected(
    placed: dict[str, Any], status: str, reason: str | None, skus: dict[str, str]
) -> bool:
    if status == "cancelled" and reason in RETRYABLE:
        return True  # a fault may stop any order, as long as it says so and takes nothing
    if placed["sku"] == skus["unknown"]:
        return (status, reason) == ("rejected", "unknown_sku")
    if status == "rejected":
        return reason == "out_of_stock" and placed["sku"] == skus["scarce"]
    if placed["card"] in EXPECTED:
        return (status, reason) == ("cancelled", EXPECTED[placed["card"]])
    return status == "confirmed"


async def _check_stock(
    system: System,
    verdict: Verdict,
    skus: dict[str, str],
    initial: dict[str, int],
    orders: dict[str, Any],
) -> None:
    catalog = await system.connect("catalog")
    try:
        for kind in ("bulk", "scarce"):
            sku = skus[kind]
            stock = await catalog.fetchval("SELECT stock FROM products WHERE sku = $1", sku)
            held = await catalog.fetchval(
                "SELECT coalesce(sum(quantity), 0) FROM reservations "
                "WHERE sku = $1 AND state = 'held'",
                sku,
            )
            sold = await catalog.fetchval(
                "SELECT coalesce(sum(quantity), 0) FROM reservations "
                "WHERE sku = $1 AND state = 'committed'",
                sku,
            )
            if stock < 0:
                verdict.violate(f"{sku}: stock is negative ({stock})")
            if stock + held + sold != initial[sku]:
                verdict.violate(
                    f"{sku}: {stock} available + {held} held + {sold} sold != {initial[sku]}"
                )
        reservations = await catalog.fetch(
            "SELECT order_id, state, sum(quantity) AS quantity FROM reservations "
            "WHERE order_id = ANY($1) GROUP BY 1, 2",
            list(orders),
        )
    finally:
        await catalog.close()
    for row in reservations:
        order = orders[row["order_id"]]
        if row["state"] == "held" and order["status"] in TERMINAL:
            verdict.violate(f"order {order['id']} is {order['status']} but its stock is held")
        if row["state"] == "committed" and order["status"] != "confirmed":
            verdict.violate(f"order {order['id']} is {order['status']} but its stock was sold")
        if row["state"] != "committed" and order["status"] == "confirmed":
            verdict.violate(f"order {order['id']} is confirmed but its stock is {row['state']}")


async def _check_money(system: System, verdict: Verdict, orders: dict[str, Any]) -> None:
    payment = await system.connect("payment")
    try:
        payments = {
            row["order_id"]: row
            for row in await payment.fetch(
                "SELECT * FROM payments WHERE order_id = ANY($1)", list(orders)
            )
        }
    finally:
        await payment.close()
    processor = sqlite3.connect(str(system.processor_file))
    try:
        holds = {
            key: (state, amount)
            for key, state, amount in processor.execute("SELECT key, state, amount FROM holds")
        }
        pending = {
            key
            for (key,) in processor.execute(
                "SELECT key FROM authorizations WHERE state = 'pending'"
            )
        }
    finally:
        processor.close()
    for order in orders.values():
        paid = payments.get(order["id"])
        at_processor = holds.get(paid["id"]) if paid is not None else None
        if order["status"] == "confirmed":
            if paid is None or paid["status"] != "captured":
                verdict.violate(
                    f"confirmed order {order['id']} has no captured payment: "
                    f"{paid and paid['status']}"
                )
            elif paid["amount"] != order["total_amount"]:
                verdict.violate(
                    f"order {order['id']}: captured {paid['amount']} of {order['total_amount']}"
                )
            elif at_processor is None or at_processor[0] != "captured":
                verdict.violate(
                    f"order {order['id']}: captured, but the processor says {at_processor}"
                )
        elif order["status"] in TERMINAL:
            if paid is not None and paid["status"] not in ("declined", "voided", "refunded"):
                verdict.violate(
                    f"{order['status']} order {order['id']} left its payment {paid['status']}"
                )
            if at_processor is not None and at_processor[0] not in ("voided", "refunded"):
                verdict.violate(
                    f"{order['status']} order {order['id']}: processor hold {at_processor[0]}"
                )
            if paid is not None and paid["id"] in pending:
                verdict.violate(
                    f"{order['status']} order {order['id']}: authorisation still pending at "
                    "the processor"
                )


async def _check_messaging(
    system: System,
    verdict: Verdict,
    poison: Poison | None,
    parked_in_broker: int,
    confirmed_per_customer: list[Any],
) -> None:
    letters: list[tuple[str, str]] = []
    for service in SERVICES:
        connection = await system.connect(service)
        try:
            undelivered = await connection.fetchval(
                "SELECT count(*) FROM cleave_outbox WHERE delivered_at IS NULL"
            )
            if undelivered:
                verdict.violate(f"{service}: {undelivered} outbox rows never delivered")
            letters += [
                (service, row["message_id"])
                for row in await connection.fetch(
                    "SELECT message_id FROM cleave_dead_letters WHERE replayed_at IS NULL"
                )
            ]
            if service == "customer":
                counted = {
                    row["id"]: row["confirmed_orders"]
                    for row in await connection.fetch("SELECT id, confirmed_orders FROM customers")
                }
        finally:
            await connection.close()
    for row in confirmed_per_customer:
        if counted.get(row["customer_id"], 0) != row["n"]:
            verdict.violate(
                f"customer {row['customer_id']} counts {counted.get(row['customer_id'], 0)} "
                f"confirmed orders, ordering has {row['n']}: an event applied twice or never"
            )
    expected = {
        ("customer", envelope_id) for envelope_id in (poison.envelope_ids if poison else ())
    }
    if set(letters) != expected:
        verdict.violate(
            f"dead letters {sorted(set(letters) - expected)} unexpected, "
            f"{sorted(expected - set(letters))} missing"
        )
    if parked_in_broker != (poison.unreadable if poison else 0):
        verdict.violate(
            f"the broker parked {parked_in_broker} unreadable messages, "
            f"{poison.unreadable if poison else 0} were sent"
        )
