"""`cleave doctor`: whether this machine has what a topology needs, and how to fix what it lacks.

It only looks: it connects and binds, and never creates a database, a file or a queue.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape

from cleave.cli.app import TopologyOption, app, config_for, out, run_sync
from cleave.config import SystemConfig
from cleave.errors import CleaveError

# Where a broker listens when its URL names no port, by scheme.
_BROKER_PORTS = {"amqp": 5672, "amqps": 5671, "nats": 4222, "tls": 4222, "kafka": 9092}


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str
    fix: str = ""


@app.command()
def doctor(
    topology: TopologyOption = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            envvar="CLEAVE_PORT",
            help="The port `cleave up` will listen on (default: the topology's http_port).",
        ),
    ] = None,
) -> None:
    """Check the machine for a topology: Python, each database, the broker, the ports.

    Exits 1 when something the topology needs is missing, with a fix for each."""
    config = config_for(topology)
    ports = _ports(config, port or config.topology.http_port)
    checks = [_python(), *run_sync(lambda: _databases(config)), _broker(config), *ports]
    out.print(f"[bold]doctor[/] · topology [bold]{config.topology.name}[/]")
    for check in checks:
        mark = "[green]✔[/]" if check.ok else "[red]✘[/]"
        out.print(f"{mark} {check.what}: {escape(check.detail)}")
        if check.fix:
            out.print(f"    fix: {escape(check.fix)}")
    problems = sum(not check.ok for check in checks)
    if problems:
        raise CleaveError(
            f"{problems} problem{'s' if problems > 1 else ''} for topology "
            f"{config.topology.name}: see the fixes above"
        )
    out.print(f"[green]ready:[/] cleave up -t {config.topology.name}")


def _python() -> Check:
    from importlib.metadata import PackageNotFoundError, metadata

    here = ".".join(map(str, sys.version_info[:3]))
    try:
        wanted = metadata("cleave")["Requires-Python"] or ""
    except PackageNotFoundError:
        wanted = ""
    floor = re.fullmatch(r">=\s*(\d+)\.(\d+)", wanted.strip())
    if floor and sys.version_info[:2] < (int(floor[1]), int(floor[2])):
        return Check("python", False, f"{here}, needs {wanted}", f"install Python {wanted}")
    return Check("python", True, f"{here}" + (f" ({wanted})" if wanted else ""))


async def _databases(config: SystemConfig) -> list[Check]:
    from sqlalchemy.engine import make_url

    from cleave.data.database import Database, is_misconfigured
    from cleave.errors import DatabaseUnavailable

    checks = []
    for service in config.services:
        url = make_url(config.database_url(service))
        shown = url.render_as_string(hide_password=True)
        if url.get_backend_name() == "sqlite":
            checks.append(_sqlite(service, Path(url.database or "")))
            continue
        database = Database(service, config.database_url(service), pool_size=1)
        try:
            await database.ping()
        except DatabaseUnavailable as error:
            if is_misconfigured(error) and config.topology.admin_url:
                detail = "not created yet: `cleave up` creates it through the admin_url"
                checks.append(Check(f"database {service}", True, detail))
                continue
            fix = (
                "create its role and database: `cleave migrate --admin-url "
                f"postgresql://postgres@{url.host}:{url.port or 5432}/postgres`"
                if is_misconfigured(error)
                else f"start PostgreSQL at {url.host}:{url.port or 5432}, or set "
                f"CLEAVE_DATABASE_{service.upper()}"
            )
            checks.append(Check(f"database {service}", False, _last_part(str(error)), fix))
        else:
            checks.append(Check(f"database {service}", True, f"reachable at {shown}"))
        finally:
            await database.dispose()
    return checks


def _sqlite(service: str, path: Path) -> Check:
    existing = path if path.exists() else next((p for p in path.parents if p.exists()), path)
    if os.access(existing, os.W_OK):
        return Check(f"database {service}", True, f"SQLite at {path}")
    return Check(
        f"database {service}",
        False,
        f"cannot write {existing}",
        "make the folder writable, or point CLEAVE_VAR elsewhere",
    )


def _broker(config: SystemConfig) -> Check:
    url = config.topology.broker
    if url == "memory":
        return Check("broker", True, "in-process (memory): nothing to run")
    parts = urlsplit(url.split(",", 1)[0])
    host, port = parts.hostname or "127.0.0.1", parts.port or _BROKER_PORTS.get(parts.scheme, 0)
    shown = f"{parts.scheme}://{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=2.0):
            pass
    except OSError as error:
        name = {"amqp": "RabbitMQ", "amqps": "RabbitMQ", "kafka": "Kafka"}.get(parts.scheme, "NATS")
        return Check(
            "broker",
            False,
            f"cannot reach {shown}: {error.strerror or error}",
            f"start {name} at {host}:{port}, or change the topology's broker",
        )
    return Check("broker", True, f"reachable at {shown}")


def _ports(config: SystemConfig, system_port: int) -> list[Check]:
    """Every port the topology listens on: free, or held by this very system already."""
    from cleave.serving.claim import running_systems
    from cleave.serving.server import PortInUse, check_port_free

    layout = config.topology
    serving = next((r for r in running_systems(config) if r.topology == layout.name), None)
    wanted: list[tuple[str, str, int, str]] = [
        ("system", layout.host, system_port, "--port or CLEAVE_PORT")
    ]
    split = len(layout.units) > 1
    for unit in layout.units:
        address = layout.address_of(unit)
        option = f"CLEAVE_ADDRESS_{unit.upper().replace('-', '_')}"
        if split:
            wanted.append((f"unit {unit} http", address.host, address.http_port, option))
            wanted.append((f"unit {unit} grpc", address.host, address.grpc_port, option))
        if address.metrics_port:
            wanted.append(
                (f"unit {unit} metrics", address.host, address.metrics_port, "CLEAVE_METRICS_PORT")
            )
    checks = []
    for what, host, port, option in wanted:
        where = f"{host}:{port}"
        try:
            check_port_free(host, port, option=option)
        except PortInUse:
            if serving is not None:
                checks.append(Check(f"port {what}", True, f"{where} in use by this system"))
            else:
                checks.append(
                    Check(
                        f"port {what}",
                        False,
                        f"{where} is taken by another program",
                        f"stop it, or choose another port with {option}",
                    )
                )
        except CleaveError as error:
            checks.append(Check(f"port {what}", False, str(error), f"set {option}"))
        else:
            checks.append(Check(f"port {what}", True, f"{where} free"))
    return checks


def _last_part(message: str) -> str:
    """The driver's own words, without the URL the check's name already says."""
    return message.rsplit(": ", 1)[-1]
