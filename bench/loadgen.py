"""An open-loop order generator that costs little CPU: `python -m bench.loadgen`.

Orders are sent at a fixed arrival rate, each at its intended time whether or not earlier ones
have been answered (as wrk2 does), over keep-alive HTTP/1.1 connections written and read by hand:
no HTTP client library, so the generator's own CPU stays small and is reported beside the system's.
It writes, per order, the intended send time (wall clock), the time the 202 came back and the
order id; the bench reads when each order was confirmed from the ordering database afterwards, so
nothing polls the system while it is measured.

    python -m bench.loadgen --url http://127.0.0.1:8000 --token T --rate 50 --seconds 10 --out f
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

ORDER = {
    "lines": [{"sku": "STICKER-PACK", "quantity": 1}],
    "card_token": "tok_approve",
    "shipping_address": {
        "name": "Bench",
        "line1": "1 St",
        "city": "X",
        "postal_code": "1",
        "country": "NL",
    },
}
MAX_CONNECTIONS = 256


@dataclass
class Outcome:
    intended: float
    answered: float = 0.0
    status: int = 0
    order_id: str = ""


@dataclass
class Pool:
    host: str
    port: int
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = field(default_factory=list)
    opened: int = 0
    waiting: asyncio.Queue[None] = field(default_factory=asyncio.Queue)


def request_bytes(host: str, port: int, token: str) -> bytes:
    body = json.dumps(ORDER, separators=(",", ":")).encode()
    head = (
        f"POST /api/ordering/v1/orders HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length) if length else b""


async def send_one(pool: Pool, payload: bytes, outcome: Outcome) -> None:
    while not pool.idle and pool.opened >= MAX_CONNECTIONS:
        await pool.waiting.get()
    if pool.idle:
        reader, writer = pool.idle.pop()
    else:
        pool.opened += 1
        reader, writer = await asyncio.open_connection(pool.host, pool.port)
    try:
        writer.write(payload)
        status, body = await read_response(reader)
    except (OSError, asyncio.IncompleteReadError):
        pool.opened -= 1
        outcome.status = -1
        outcome.answered = time.time()
    else:
        outcome.answered = time.time()
        outcome.status = status
        if status == 202:
            outcome.order_id = json.loads(body)["id"]
        pool.idle.append((reader, writer))
    pool.waiting.put_nowait(None)


async def run(url: str, token: str, rate: float, seconds: float) -> list[Outcome]:
    parts = urlsplit(url)
    pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80)
    payload = request_bytes(pool.host, pool.port, token)
    count = int(rate * seconds)
    outcomes = [Outcome(0.0) for _ in range(count)]
    tasks = []
    loop = asyncio.get_running_loop()
    start_wall, start = time.time(), loop.time()
    for index in range(count):
        due = start + index / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        outcomes[index].intended = start_wall + index / rate
        tasks.append(asyncio.create_task(send_one(pool, payload, outcomes[index])))
    await asyncio.gather(*tasks)
    for _reader, writer in pool.idle:
        writer.close()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--rate", type=float, required=True, help="orders per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    outcomes = asyncio.run(run(args.url, args.token, args.rate, args.seconds))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    report = {
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "orders": [[o.intended, o.answered, o.status, o.order_id] for o in outcomes],
    }
    with open(args.out, "w") as file:
        json.dump(report, file)


if __name__ == "__main__":
    main()
