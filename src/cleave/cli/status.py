"""`cleave status`: which topology is served from this folder, each unit's address and health."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cleave.cli.app import app, config_for, out, table

if TYPE_CHECKING:
    from cleave.config import SystemConfig
    from cleave.serving.claim import RunningSystem


@app.command()
def status() -> None:
    """What runs from this folder: its topology, each unit's address, ports and health."""
    from cleave.serving.claim import running_systems

    config = config_for()
    running = running_systems(config)
    if not running:
        out.print(f"nothing is running from {config.var_root} (start it with `cleave up`)")
        return
    for system in running:
        _show(config.with_topology(system.topology), system)


def _show(config: SystemConfig, system: RunningSystem) -> None:
    layout = config.topology
    out.print(
        f"[bold]topology {system.topology}[/] · running at {system.public_url} "
        f"(pid {system.pid}) · console {system.public_url}/console"
    )
    listing = table("unit", "services", "http", "grpc", "metrics", "health")
    split = len(layout.units) > 1
    for unit, members in layout.units.items():
        address = layout.address_of(unit)
        # One unit is served at the system's own address; a split's units at their own.
        http = address.http if split else system.public_url
        listing.add_row(
            unit,
            ", ".join(members),
            http,
            str(address.grpc_port) if split else "-",
            str(address.metrics_port) if address.metrics_port else "-",
            _health(f"{http}/readyz"),
        )
    out.print(listing)


def _health(url: str) -> str:
    """`ready`, or what is wrong, as the unit's /readyz says it."""
    import httpx

    try:
        answer = httpx.get(url, timeout=2.0)
    except httpx.HTTPError as error:
        return f"[red]unreachable[/] ({type(error).__name__})"
    if answer.status_code == 200:
        return "[green]ready[/]"
    try:
        failing = {k: v for k, v in answer.json().get("services", {}).items() if v != "ok"}
    except ValueError:
        failing = {}
    detail = "; ".join(f"{name}: {error}" for name, error in failing.items())
    return f"[red]not ready[/] ({detail or answer.status_code})"
