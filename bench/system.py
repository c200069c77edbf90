"""Starting systems for the bench, and measuring them: processes, CPU from /proc, load from wrk
and from the order generator, confirmations read from the ordering database afterwards."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TICKS = os.sysconf("SC_CLK_TCK")
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def split_units() -> tuple[str, ...]:
    """The split topology's units as cleave.toml names them (each holds one service)."""
    from cleave.config import load_config

    return tuple(load_config(ROOT / "cleave.toml", topology="split").topology.units)


# Above the ports the test suite hands out (20000 + 3000 per worker) and below the kernel's
# ephemeral range: a port the kernel picked (bind to 0) may be taken by an outgoing connection
# before the server that was given it binds it.
PORTS_FROM = 26000


def free_port(below: int | None = None) -> int:
    """A port nothing listens on now, at random between PORTS_FROM and the ephemeral range."""
    ceiling = below or _ephemeral_start()
    for candidate in random.sample(range(PORTS_FROM, ceiling), min(200, ceiling - PORTS_FROM)):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return candidate
    raise RuntimeError(f"no free port from {PORTS_FROM} below {ceiling}")


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("make bench needs wrk (Debian: apt-get install wrk)")


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


def rss_mb(pid: int) -> float:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def rabbitmq_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if b"beam.smp" in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"a benchmarked server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.01)
    raise SystemExit(f"{url} not ready within {timeout} s")


@dataclass
class Running:
    process: subprocess.Popen[bytes]
    port: int
    started_seconds: float
    env: dict[str, str]
    var: Path
    ordering_dsn: str | None = None  # PostgreSQL; None for the monolith's SQLite
    unit_ports: dict[str, int] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        return descendants(self.process.pid)

    def command(self, *args: str) -> str:
        done = subprocess.run(
            [PYTHON, "-m", "cleave", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()


def base_env(var: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLEAVE_", "OTEL_"))}
    return {
        **env,
        "CLEAVE_VAR": str(var),
        "CLEAVE_LOG_LEVEL": "WARNING",
        # One load generator is one address driving thousands of requests a second: the figures
        # are of the request path, not of the limiter's 429s.
        "CLEAVE_RATE_LIMIT_PER_ADDRESS": "off",
        "CLEAVE_RATE_LIMIT_PER_PRINCIPAL": "off",
    }


@contextmanager
def process(command: list[str], ready_url: str, env: dict[str, str]) -> Iterator[Any]:
    started = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_ready(ready_url, child)
        yield child, time.perf_counter() - started
    finally:
        child.send_signal(signal.SIGINT)
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextmanager
def baseline() -> Iterator[Running]:
    port = free_port()
    with tempfile.TemporaryDirectory() as var:
        env = base_env(Path(var))
        command = [PYTHON, "-m", "uvicorn", "bench.baseline:app", "--port", str(port)]
        command += ["--no-access-log", "--log-level", "warning"]
        with process(command, f"http://127.0.0.1:{port}/readyz", env) as (child, seconds):
            yield Running(child, port, seconds, env, Path(var))


@contextmanager
def monolith(extra_env: dict[str, str] | None = None) -> Iterator[Running]:
    port = free_port()
    with tempfile.TemporaryDirectory() as var:
        # /metrics on a port of its own: a test run beside it may hold the default one.
        env = {**base_env(Path(var)), "CLEAVE_METRICS_PORT": str(free_port()), **(extra_env or {})}
        command = [PYTHON, "-m", "cleave", "up", "--port", str(port)]
        with process(command, f"http://127.0.0.1:{port}/readyz", env) as (child, seconds):
            yield Running(child, port, seconds, env, Path(var))


@contextmanager
def split(extra_env: dict[str, str] | None = None) -> Iterator[Running]:
    """The split topology on PostgreSQL and RabbitMQ, in databases and a broker namespace of its
    own (the servers are shared), every unit on free ports."""
    run = f"bench{os.getpid()}{int(time.time()) % 100000}"
    port = free_port()
    with tempfile.TemporaryDirectory() as var:
        env = {
            **base_env(Path(var)),
            # Roles of its own too: others' runs create and drop the shared `cleave_*` roles.
            "CLEAVE_DATABASE": f"postgresql+asyncpg://{run}_{{service}}@127.0.0.1:5432/"
            f"{run}_{{service}}",
            "CLEAVE_BROKER": f"amqp://guest:guest@127.0.0.1:5672/?namespace={run}",
            **(extra_env or {}),
        }
        unit_ports = {}
        units = split_units()
        for unit in units:
            unit_ports[unit] = free_port()
            ports = f"{unit_ports[unit]}:{free_port()}:{free_port()}"  # HTTP, gRPC, metrics
            env[f"CLEAVE_ADDRESS_{unit.upper()}"] = f"127.0.0.1:{ports}"
        command = [PYTHON, "-m", "cleave", "up", "--topology", "split", "--port", str(port)]
        databases = [f"{run}_{unit}" for unit in units]
        try:
            with process(command, f"http://127.0.0.1:{port}/readyz", env) as (child, seconds):
                yield Running(
                    child,
                    port,
                    seconds,
                    env,
                    Path(var),
                    ordering_dsn=f"postgresql://postgres@127.0.0.1:5432/{run}_ordering",
                    unit_ports=unit_ports,
                    databases=databases,
                )
        finally:
            asyncio.run(_drop(databases))
            asyncio.run(_delete_namespace(run))


async def _drop(databases: list[str]) -> None:
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        for database in databases:  # each is named as its role
            await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await connection.execute(f'DROP ROLE IF EXISTS "{database}"')
    finally:
        await connection.close()


async def _delete_namespace(namespace: str) -> None:
    import aio_pika

    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    try:
        channel = await connection.channel()
        for unit in split_units():
            for queue in (f"{namespace}.{unit}", f"{namespace}.{unit}.parked"):
                await channel.queue_delete(queue)
        for exchange in (f"{namespace}.events", f"{namespace}.parked"):
            await channel.exchange_delete(exchange)
    except Exception as error:  # a leftover namespace is untidy, not a failed benchmark
        print(f"  (could not delete the broker namespace {namespace}: {error})")
    finally:
        await connection.close()


async def pg_backends(databases: list[str]) -> list[int]:
    return [pid for pids in (await pg_backends_by_database(databases)).values() for pid in pids]


async def pg_backends_by_database(databases: list[str]) -> dict[str, list[int]]:
    if not databases:
        return {}
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        rows = await connection.fetch(
            "SELECT pid, datname FROM pg_stat_activity WHERE datname = ANY($1::text[])", databases
        )
    finally:
        await connection.close()
    found: dict[str, list[int]] = {}
    for row in rows:
        found.setdefault(row["datname"], []).append(row["pid"])
    return found


def postmaster_reaped_cpu_seconds() -> float:
    """CPU of every PostgreSQL backend that has exited (the postmaster's children's times):
    short-lived backends, which a sample of pg_stat_activity misses. Shared with every other
    client of the server."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if command[0].endswith(b"/postgres") and fields[1] == "1":
            return (int(fields[13]) + int(fields[14])) / TICKS
    return 0.0


def process_groups(system: Running) -> dict[str, list[int]]:
    """The system's processes one by one: each unit (`cleave run UNIT`) by its unit's name, the
    supervisor as `gateway` (it serves the gateway and the console's span receiver); for the
    split, its PostgreSQL backends by service."""
    groups: dict[str, list[int]] = {}
    for pid in system.pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if pid == system.process.pid:
            name = "gateway"
        elif "run" in argv and argv.index("run") + 1 < len(argv):
            name = argv[argv.index("run") + 1]
        else:
            name = "other"
        groups.setdefault(name, []).append(pid)
    prefix = system.databases[0].rsplit("_", 1)[0] + "_" if system.databases else ""
    for database, pids in asyncio.run(pg_backends_by_database(system.databases)).items():
        groups[f"pg {database.removeprefix(prefix)}"] = pids
    return groups


def cpu_by_pid(groups: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    return {name: {pid: cpu_seconds([pid]) for pid in pids} for name, pids in groups.items()}


def cpu_spent(
    before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
) -> dict[str, float]:
    """CPU seconds per group between two readings, process by process: one that started since
    counts from zero; one that exited since is left out (what it spent is unknown)."""
    spent: dict[str, float] = {}
    for name, now in after.items():
        then = before.get(name, {})
        spent[name] = sum(
            seconds - then.get(pid, 0.0)
            for pid, seconds in now.items()
            if seconds or pid not in then
        )
    return spent


async def pg_commits(databases: list[str]) -> int:
    if not databases:
        return 0
    connection = await asyncpg.connect(PG_ADMIN)
    try:
        value = await connection.fetchval(
            "SELECT sum(xact_commit) FROM pg_stat_database WHERE datname = ANY($1::text[])",
            databases,
        )
    finally:
        await connection.close()
    return int(value or 0)


def wrk(url: str, seconds: float, connections: int = 32) -> tuple[float, int]:
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    count = re.search(r"(\d+) requests in", output)
    assert rate, output
    assert count, output
    return float(rate.group(1)), int(count.group(1))


def prepare_orders(system: Running) -> str:
    """A customer token, and stock enough for every order the bench will place."""
    admin = system.command("token", "--scope", "admin")
    answer = httpx.post(
        f"{system.base}/api/catalog/v1/products/STICKER-PACK/stock-adjustments",
        headers={"Authorization": f"Bearer {admin}"},
        json={"delta": 10**8, "reason": "bench"},
        timeout=30,
    )
    answer.raise_for_status()
    return system.command("token", "--customer", "alice")


@dataclass
class OrderRun:
    offered_rate: float
    accepted: int
    confirmed: int
    throughput: float  # confirmed per second, first send to last confirmation
    p50_ms: float
    p99_ms: float
    cpu_ms_per_order: dict[str, float]
    # For the split: the same CPU process by process (each unit, the gateway, PostgreSQL's
    # backends by service); empty for the monolith, which is one process.
    cpu_ms_per_process: dict[str, float] = field(default_factory=dict)


async def _confirmations(system: Running, ids: set[str]) -> dict[str, tuple[str, float]]:
    query = "SELECT id, status, updated_at FROM orders"
    if system.ordering_dsn is None:
        import sqlite3

        # The monolith's state is under var/<topology>/ (CLEAVE_VAR is the var root).
        with sqlite3.connect(system.var / "monolith" / "ordering.db") as connection:
            rows = connection.execute(query).fetchall()
        parsed = [
            (i, s, dt.datetime.fromisoformat(u).replace(tzinfo=dt.UTC).timestamp())
            for i, s, u in rows
        ]
    else:
        connection = await asyncpg.connect(system.ordering_dsn)
        try:
            fetched = await connection.fetch(query)
        finally:
            await connection.close()
        parsed = [
            (r["id"], r["status"], r["updated_at"].replace(tzinfo=dt.UTC).timestamp())
            for r in fetched
        ]
    return {i: (s, t) for i, s, t in parsed if i in ids}


async def _pending(system: Running, ids: set[str]) -> int:
    found = await _confirmations(system, ids)
    return sum(1 for status, _ in found.values() if status == "pending") + len(ids) - len(found)


def run_orders(
    system: Running, token: str, rate: float, seconds: float, *, drain_timeout: float = 240.0
) -> OrderRun:
    """Orders at a fixed arrival rate; CPU counted from the first send to the last confirmation."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        groups = _cpu_groups(system)
        before = cpu_by_pid(groups)
        before_each = cpu_by_pid(process_groups(system)) if system.databases else {}
        generator = subprocess.run(
            [
                *(PYTHON, "-m", "bench.loadgen", "--url", system.base, "--token", token),
                *("--rate", str(rate), "--seconds", str(seconds), "--out", out.name),
            ],
            cwd=ROOT,
            check=True,
        )
        assert generator.returncode == 0
        report = json.loads(Path(out.name).read_text())
    sent = {order_id: intended for intended, _, status, order_id in report["orders"] if order_id}
    ids = set(sent)
    deadline = time.monotonic() + drain_timeout
    while asyncio.run(_pending(system, ids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    # Process by process: a PostgreSQL backend that exited meanwhile no longer subtracts its CPU.
    spent = cpu_spent(before, cpu_by_pid(_cpu_groups(system, groups)))
    after_each = cpu_by_pid(process_groups(system)) if system.databases else {}
    spent_each = cpu_spent(before_each, after_each)
    found = asyncio.run(_confirmations(system, ids))
    confirmed = {i: t for i, (s, t) in found.items() if s == "confirmed"}
    latencies = sorted(t - sent[i] for i, t in confirmed.items())
    count = max(len(confirmed), 1)
    cpu = {name: round(value * 1000 / count, 2) for name, value in spent.items()}
    cpu["generator"] = round(report["cpu_seconds"] * 1000 / count, 2)
    span = (max(confirmed.values()) - min(sent.values())) if confirmed else float("inf")
    return OrderRun(
        offered_rate=rate,
        accepted=len(ids),
        confirmed=len(confirmed),
        throughput=len(confirmed) / span,
        p50_ms=_percentile(latencies, 0.5) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        cpu_ms_per_order=cpu,
        cpu_ms_per_process={n: round(v * 1000 / count, 2) for n, v in sorted(spent_each.items())},
    )


def _cpu_groups(
    system: Running, earlier: dict[str, list[int]] | None = None
) -> dict[str, list[int]]:
    """Which processes are the system: its own tree, and for the split its PostgreSQL backends
    (new ones count from zero) and RabbitMQ (shared with whoever else uses it)."""
    groups = {"cleave processes": system.pids()}
    if system.databases:
        backends = asyncio.run(pg_backends(system.databases))
        known = set((earlier or {}).get("postgresql", []))
        groups["postgresql"] = sorted(known | set(backends))
        groups["rabbitmq (shared)"] = rabbitmq_pids()
    return groups


def _percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(len(values) * fraction))]
