"""An open-loop order load: arrivals at a fixed rate, whatever the system answers.

Run as its own process (`python -m bench.faults.load PLAN.json RESULT.json`), so that its CPU is
its own and is reported. Order *i* arrives at `start + i / rate`; a slow or failing system never
slows the arrivals down (a closed loop would hide an outage by sending less). Each order carries
an Idempotency-Key; a 5xx or a transport error is retried with the same key (as a careful client
does), and some orders are sent twice on purpose, to check that the key returns the same order.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ADDRESS = {
    "name": "Fault Tester",
    "line1": "1 Main St",
    "city": "Utrecht",
    "postal_code": "3511",
    "country": "NL",
}
CUSTOMERS = ("alice", "bob", "carol")
RETRY_BUDGET_SECONDS = 90.0  # past a unit's restart, even after a few in a row


def card_of(index: int) -> str:
    if index % 50 == 25:
        return "tok_timeout"
    if index % 20 == 7:
        return "tok_decline"
    if index % 20 == 13:
        return "tok_insufficient_funds"
    return "tok_approve"


def sku_of(index: int, skus: dict[str, str]) -> tuple[str, int]:
    if index % 40 == 17:
        return skus["unknown"], 1
    if index % 10 == 3:
        return skus["scarce"], 1
    return skus["bulk"], 1 + index % 2


def body_of(index: int, skus: dict[str, str]) -> dict[str, Any]:
    sku, quantity = sku_of(index, skus)
    return {
        "lines": [{"sku": sku, "quantity": quantity}],
        "card_token": card_of(index),
        "shipping_address": ADDRESS,
    }


async def place(
    client: httpx.AsyncClient, plan: dict[str, Any], index: int, results: list[dict[str, Any]]
) -> None:
    customer = CUSTOMERS[index % len(CUSTOMERS)]
    key = f"{plan['tag']}-{index}"
    body = body_of(index, plan["skus"])
    record: dict[str, Any] = {
        "index": index,
        "key": key,
        "customer": customer,
        "sku": body["lines"][0]["sku"],
        "quantity": body["lines"][0]["quantity"],
        "card": body["card_token"],
        "sent_at": time.time(),
        "attempts": 0,
        "statuses": [],
        "order_id": None,
        "replayed_id": None,
    }
    results.append(record)
    headers = {"Authorization": f"Bearer {plan['tokens'][customer]}", "Idempotency-Key": key}
    url = f"{plan['base']}/api/ordering/v1/orders"
    deadline = time.monotonic() + RETRY_BUDGET_SECONDS
    delay = 0.2
    while True:
        record["attempts"] += 1
        try:
            answer = await client.post(url, json=body, headers=headers)
            record["statuses"].append(answer.status_code)
            if answer.status_code == 202:
                record["order_id"] = answer.json()["id"]
                record["accepted_at"] = time.time()
                break
            if answer.status_code < 500:
                record["error"] = answer.text[:300]
                return
        except httpx.HTTPError as error:
            record["statuses"].append(type(error).__name__)
        if time.monotonic() + delay > deadline:
            record["error"] = "gave up retrying"
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)
    if index % 10 == 5:  # the same request again, as a client that never saw the answer
        for _ in range(5):
            try:
                again = await client.post(url, json=body, headers=headers)
            except httpx.HTTPError:
                await asyncio.sleep(0.5)
                continue
            if again.status_code == 202:
                record["replayed_id"] = again.json()["id"]
                return
            await asyncio.sleep(0.5)


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
    async with httpx.AsyncClient(timeout=10.0, limits=limits) as client:
        loop = asyncio.get_running_loop()
        start = loop.time()
        tasks = []
        for index in range(plan["count"]):
            due = start + index / plan["rate"]
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(place(client, plan, index, results)))
        sent_seconds = loop.time() - start
        await asyncio.gather(*tasks)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "orders": sorted(results, key=lambda r: r["index"]),
        "sent_seconds": sent_seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
    }


def main() -> None:
    plan = json.loads(Path(sys.argv[1]).read_text())
    Path(sys.argv[2]).write_text(json.dumps(asyncio.run(run(plan))))


if __name__ == "__main__":
    main()
