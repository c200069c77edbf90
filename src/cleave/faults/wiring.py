"""Put a fault proxy between the units of a topology, and between units and their servers, by
configuration alone: each unit's process is handed the proxies' addresses instead of the real
ones (`CLEAVE_ADDRESS_<UNIT>` for the units it calls, `CLEAVE_BROKER`, `CLEAVE_DATABASE_<SERVICE>`),
while every unit still listens where the topology says."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from cleave.config import SystemConfig, service_database_variable
from cleave.faults.proxy import Proxies

if TYPE_CHECKING:
    from cleave.serving.supervisor import Supervisor


@dataclass
class ProxiedTopology:
    proxies: Proxies
    # The variables each unit's process gets on top of the supervisor's own environment.
    unit_environment: dict[str, dict[str, str]] = field(default_factory=dict)


def address_variable(unit: str) -> str:
    return f"CLEAVE_ADDRESS_{unit.upper().replace('-', '_')}"


def _host_and_port(url: str) -> tuple[str, int] | None:
    parts = urlsplit(url)
    if parts.hostname is None or parts.port is None:
        return None
    return parts.hostname, parts.port


def _through(url: str, port: int) -> str:
    """The same URL (credentials, path, query) with its host and port those of a proxy."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


async def through_proxies(
    config: SystemConfig, *, calls: bool = True, broker: bool = True, databases: bool = True
) -> ProxiedTopology:
    """Start a proxy in front of each unit's gRPC (`<unit>.grpc`), and per unit one to the broker
    (`<unit>->broker`) and one to each database server it uses (`<unit>->database`)."""
    topology = config.topology
    wired = ProxiedTopology(Proxies(), {unit: {} for unit in topology.units})
    if calls and len(topology.units) > 1:
        for unit in topology.units:
            address = topology.address_of(unit)
            proxy = await wired.proxies.add(f"{unit}.grpc", address.host, address.grpc_port)
            for caller in topology.units:
                if caller != unit:
                    wired.unit_environment[caller][address_variable(unit)] = (
                        f"{address.host}:{address.http_port}:{proxy.port}"
                    )
    if broker and (server := _host_and_port(topology.broker)) is not None:
        for unit in topology.units:
            proxy = await wired.proxies.add(f"{unit}->broker", *server)
            wired.unit_environment[unit]["CLEAVE_BROKER"] = _through(topology.broker, proxy.port)
    if databases:
        for unit, services in topology.units.items():
            for service in services:
                url = config.database_url(service)
                if (server := _host_and_port(url)) is None:
                    continue  # SQLite: a file, no network in between
                name = f"{unit}->database"
                proxy = wired.proxies.by_name.get(name) or await wired.proxies.add(name, *server)
                wired.unit_environment[unit][service_database_variable(service)] = _through(
                    url, proxy.port
                )
    return wired


async def supervise_through_proxies(
    supervisor: Supervisor, *, stop: asyncio.Event | None = None
) -> None:
    """`cleave up --through-proxy`: the supervisor, with every unit wired through proxies whose
    faults a person sets over the control port (`nc 127.0.0.1 PORT`, then `list`)."""
    from cleave.faults.proxy import serve_control

    wired = await through_proxies(supervisor.config)
    supervisor.unit_environment = wired.unit_environment
    control = await serve_control(wired.proxies)
    control_port = control.sockets[0].getsockname()[1]
    for proxy in wired.proxies:
        supervisor.console.print(
            f"fault proxy {proxy.name}: {proxy.address} → {proxy.target[0]}:{proxy.target[1]}"
        )
    supervisor.console.print(
        f"fault control: nc 127.0.0.1 {control_port}  (try `list`, `<name> latency 0.2 0.05`,"
        " `* blackhole 10`, `* clear`)"
    )
    try:
        await supervisor.run(stop=stop)
    finally:
        control.close()
        await wired.proxies.stop()
