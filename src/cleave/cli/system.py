"""`cleave up`, `run`, `plan`, `migrate`, `seed` and `services`: run and inspect the system."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cleave.cli.app import (
    AdminUrlOption,
    TopologyOption,
    acting_on,
    app,
    config_for,
    err,
    out,
    provision_databases,
    run_sync,
    with_admin_unit,
)
from cleave.errors import CleaveError, ConfigError

if TYPE_CHECKING:
    import asyncio

    from cleave.config import SystemConfig
    from cleave.runtime import Unit
    from cleave.serving.claim import ServerClaim


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            envvar="CLEAVE_PORT",
            help="Port to listen on (default: the topology's http_port, 8000).",
        ),
    ] = None,
    topology: TopologyOption = None,
    seed: Annotated[bool, typer.Option(help="Add the demo data that is missing.")] = True,
    admin_url: AdminUrlOption = None,
    through_proxy: Annotated[
        bool,
        typer.Option(
            "--through-proxy",
            help="Put a fault proxy between the units and between units and their servers, "
            "controlled by hand over a line protocol (its address is printed).",
        ),
    ] = False,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload",
            help="Restart the units whose code changes (every unit for a change to shared "
            "code; the one process of a single-unit topology).",
        ),
    ] = False,
) -> None:
    """Run the whole system: one process, or one per unit under a supervisor, on one address."""
    from cleave.serving import collect_garbage_again, hold_garbage_collection

    hold_garbage_collection()  # serving one unit here starts faster; given back once it serves
    from cleave.serving.claim import ServerClaim
    from cleave.serving.server import check_port_free, unrecoverable

    config = config_for(topology)
    if reload and len(config.topology.units) == 1:
        collect_garbage_again()  # this process only watches the files: the child serves
        _serve_reloading(config)
        return
    host = host or config.topology.host
    port = port or config.topology.http_port
    config = config.serving_at(host, port)
    with ServerClaim.take(config) as claim:
        check_port_free(host, port)
        provision_databases(config, admin_url or config.topology.admin_url)
        if len(config.topology.units) == 1:
            if through_proxy:
                raise ConfigError("--through-proxy needs a topology of several units")
            from cleave.serving.server import serve_unit

            unit = next(iter(config.topology.units))
            metrics_port = config.topology.address_of(unit).metrics_port
            if metrics_port is not None:
                check_port_free(host, metrics_port, option="metrics_port or CLEAVE_METRICS_PORT")

            def serving(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
                return serve_unit(
                    config,
                    unit,
                    host=host,
                    port=port,
                    seed=seed,
                    console=True,
                    stop=stop,
                    metrics_port=metrics_port,
                )
        else:
            from cleave.serving.supervisor import Supervisor

            collect_garbage_again()  # the units start in processes of their own

            for unit in config.topology.units:
                address = config.topology.address_of(unit)
                check_port_free(
                    address.host, address.http_port, option=f"the address of unit {unit}"
                )
            supervisor = Supervisor(
                config, host=host, port=port, seed=seed, console=err, reload=reload
            )

            def serving(stop: asyncio.Event) -> Coroutine[Any, Any, None]:
                if through_proxy:
                    from cleave.faults.wiring import supervise_through_proxies

                    return supervise_through_proxies(supervisor, stop=stop)
                return supervisor.run(stop=stop)

        try:
            run_sync(lambda: _serve_while_claimed(claim, serving))
        except Exception as error:
            if (permanent := unrecoverable(error)) is not None:
                raise permanent from None
            raise


def _serve_reloading(config: SystemConfig) -> None:
    """One process serves a single-unit topology, so a change restarts that process: the same
    `cleave up`, without --reload, as a child that starts again at every change."""
    import shlex
    import sys

    from watchfiles import PythonFilter, run_process

    from cleave.serving.reload import service_homes, watched_folders

    command = [sys.executable, "-m", "cleave", *(a for a in sys.argv[1:] if a != "--reload")]
    err.print(f"[dim]reloading {config.topology.name} whenever its code changes[/]")
    run_process(
        *watched_folders(service_homes(config)),
        target=shlex.join(command),
        target_type="command",
        watch_filter=PythonFilter(),
        callback=lambda changes: err.print(
            f"[bold]reloading[/] ({', '.join(sorted(Path(p).name for _, p in changes)[:3])} "
            "changed)"
        ),
    )


async def _serve_while_claimed(
    claim: ServerClaim, serving: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Serve until stopped, or until the state folder is deleted under the server."""
    import asyncio

    stop = asyncio.Event()
    served = asyncio.ensure_future(serving(stop))
    lost = asyncio.ensure_future(claim.watch())
    await asyncio.wait({served, lost}, return_when=asyncio.FIRST_COMPLETED)
    if lost.done():
        stop.set()
        await served
        raise CleaveError(lost.result())
    lost.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await lost
    served.result()


@app.command()
def run(
    unit: Annotated[
        str, typer.Argument(help="A unit of the topology, as `cleave plan` lists them.")
    ],
    topology: TopologyOption = None,
    host: Annotated[
        str | None, typer.Option(help="Address to listen on (0.0.0.0 in a container).")
    ] = None,
    migrate: Annotated[bool, typer.Option(help="Migrate the unit's databases first.")] = True,
    seed: Annotated[bool, typer.Option(help="Add the demo data that is missing.")] = True,
) -> None:
    """Run one unit alone, as its container does: its services' HTTP and gRPC ports.

    A failure no restart can fix exits 78 (EX_CONFIG) with one line; any other exits 1."""
    from cleave.serving import hold_garbage_collection

    hold_garbage_collection()  # given back by serve_unit once it serves
    from cleave.serving.server import check_port_free, serve_unit, unrecoverable

    config = config_for(topology)
    if unit not in config.topology.units:
        known = ", ".join(config.topology.units)
        raise ConfigError(
            f"unknown unit {unit!r} in topology {config.topology.name!r} (known: {known})"
        )
    address = config.topology.address_of(unit)
    bind = host or address.host
    try:
        check_port_free(bind, address.http_port, option=f"CLEAVE_ADDRESS_{unit.upper()}")
        if address.metrics_port is not None:
            check_port_free(
                bind, address.metrics_port, option="metrics_port or CLEAVE_METRICS_PORT"
            )
        run_sync(
            lambda: serve_unit(
                config,
                unit,
                host=bind,
                port=address.http_port,
                migrate=migrate,
                seed=seed,
                announce=False,
                metrics_port=address.metrics_port,
            )
        )
    except Exception as error:
        if (permanent := unrecoverable(error)) is not None:
            raise permanent from None
        raise


@app.command()
def plan(topology: TopologyOption = None) -> None:
    """Each unit, its services, how every call between services is wired, and who carries events."""
    from cleave.auth.revocation import REVOCATION_EVENTS
    from cleave.runtime import load_services

    config = config_for(topology)
    services = load_services(config)
    layout = config.topology
    out.print(f"[bold]{config.name}[/] · topology [bold]{layout.name}[/] · broker {layout.broker}")
    providers = {service.port.protocol: name for name, service in services.items() if service.port}
    for unit, members in layout.units.items():
        address = layout.address_of(unit)
        # gRPC is served only between units: a one-unit topology has nothing listening there.
        grpc = f"  grpc {address.grpc}" if len(layout.units) > 1 else ""
        if unit in layout.functions:  # deployed on AWS Lambda: no listener, a tick for workers
            out.print(f"\n[bold]unit {unit}[/]  an AWS Lambda function (cleave.serverless.handler)")
        else:
            out.print(f"\n[bold]unit {unit}[/]  http {address.http}{grpc}")
        for name in members:
            out.print(f"  {name:<10} {config.database_url(name)}")
            for protocol in services[name].calls:
                provider = providers.get(protocol)
                if provider is None:
                    wiring = "[red]no service provides it[/]"
                elif layout.unit_of(provider) == unit:
                    wiring = f"local call to {provider}"
                else:
                    target = layout.address_of(layout.unit_of(provider))
                    wiring = f"gRPC to {provider} at {target.grpc}"
                out.print(f"    calls {protocol.__name__:<14} → {wiring}")
    out.print("\n[bold]events[/]")
    for name, service in services.items():
        for event in service.publishes:
            consumers = [
                other
                for other, candidate in services.items()
                if any(sub.event is event for sub in candidate.subscriptions)
            ]
            crossing = {layout.unit_of(c) for c in consumers} - {layout.unit_of(name)}
            carrier = layout.broker if crossing or layout.broker != "memory" else "in-process"
            readers = ", ".join(consumers) if consumers else "no consumer yet"
            if event in REVOCATION_EVENTS:  # the chassis's own subscription, in every unit
                readers = "every unit's revocation list"
                carrier = layout.broker if len(layout.units) > 1 else carrier
            out.print(f"  {event.event_type:<38} {name} → {readers}  ({carrier})")


@app.command()
def migrate(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    topology: TopologyOption = None,
    admin_url: AdminUrlOption = None,
) -> None:
    """Bring each service's database to its newest schema. Safe to run again."""
    from sqlalchemy.engine import make_url

    with acting_on(topology) as config:
        if service:
            config.require_service(service)
        provision_databases(config, admin_url, service)
        applied = run_sync(lambda: with_admin_unit(config, lambda unit: unit.migrate(service)))
        for name, revisions in applied.items():
            done = ", ".join(revisions) if revisions else "up to date"
            shown = make_url(config.database_url(name)).render_as_string(hide_password=True)
            out.print(f"{name:<10} {shown}  {done}")


@app.command()
def seed(topology: TopologyOption = None) -> None:
    """Add the demo data that is missing to each service."""
    with acting_on(topology) as config:

        async def work(unit: Unit) -> dict[str, int]:
            return await unit.prepare()

        for name, added in run_sync(lambda: with_admin_unit(config, work)).items():
            out.print(f"{name:<10} {added} added")


@app.command()
def services(topology: TopologyOption = None) -> None:
    """Each service: its unit, database, routes, port, and the events it publishes and consumes."""
    from cleave.runtime import load_services

    config = config_for(topology)
    out.print(f"[bold]{config.name}[/] · topology [bold]{config.topology.name}[/]")
    for name, service in load_services(config).items():
        rows = {
            "unit": config.topology.unit_of(name),
            "database": config.database_url(name),
            "port": service.port.protocol.__name__ if service.port else "",
            "calls": ", ".join(protocol.__name__ for protocol in service.calls),
            "routes": service.routes(),
            "publishes": [event.event_type for event in service.publishes],
            "consumes": [f"{sub.event.event_type} → {sub.name}" for sub in service.subscriptions],
        }
        out.print(f"\n[bold]{name}[/]  {service.description}")
        for label, value in rows.items():
            values = value if isinstance(value, list) else [value]
            for index, item in enumerate(values or ["—"]):
                out.print(f"  {label if index == 0 else '':<10} {item or '—'}", soft_wrap=True)
