"""`cleave`: run, migrate, seed and inspect the system. Bad input is one line and an exit code."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from cleave.config import SystemConfig, load_config
from cleave.deploy.cli import deploy_app
from cleave.errors import CleaveError

if TYPE_CHECKING:
    from rich.table import Table

    from cleave.runtime import Unit
    from cleave.service import ServiceContext

# Heavy modules (FastAPI, SQLAlchemy, OpenTelemetry) are imported inside the commands that use
# them, so that `cleave --help` and a mistyped flag answer at once.

T = TypeVar("T")


def _flags_take_no_placeholder() -> None:
    """Typer's rich help labels every flag `<bool>` although a flag takes no value (0.29, pinned):
    show no type for flags, as Click's own help does."""
    from typer.core import TyperOption

    shown = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else shown(self, ctx)

    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_flags_take_no_placeholder()

app = typer.Typer(
    name="cleave",
    help="Cleave: one codebase, any topology. Run, migrate, seed and inspect the system.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)
app.add_typer(deploy_app, name="deploy")


def _show_version(asked: bool) -> None:
    if not asked:
        return
    import platform
    from importlib.metadata import version

    typer.echo(f"cleave {version('cleave')} (Python {platform.python_version()})")
    raise typer.Exit


@app.callback()
def _options(
    _version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_show_version,
            help="Show cleave's version and Python's, and exit.",
        ),
    ] = False,
) -> None:
    """Cleave: one codebase, any topology. Run, migrate, seed and inspect the system."""


out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def table(*columns: str) -> Table:
    """A listing with a header row, in the one style every command prints."""
    from rich.table import Table

    listing = Table(box=None, header_style="bold", pad_edge=False)
    for column in columns:
        listing.add_column(column, overflow="fold")
    return listing


def when(moment: datetime | None) -> str:
    """One date format in every listing: ISO 8601 to the second, in UTC."""
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"


TopologyOption = Annotated[
    str | None, typer.Option("--topology", "-t", help="A topology named in cleave.toml.")
]


def config_for(topology: str | None = None) -> SystemConfig:
    return load_config(topology=topology)


def run_sync(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run on uvloop (a dependency of uvicorn's standard extra): its sockets, timers and
    wake-ups cost a fraction of the default loop's, as uvicorn itself would have chosen."""
    import asyncio

    try:
        import uvloop
    except ImportError:  # a platform uvloop does not build on
        return asyncio.run(coroutine_factory())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine_factory())


async def with_admin_unit(config: SystemConfig, work: Callable[[Unit], Awaitable[T]]) -> T:
    """Run admin work on every service of the system, wherever the topology places them."""
    from cleave.runtime import Unit

    unit = Unit(config.collapsed())
    try:
        return await work(unit)
    finally:
        await unit.stop()


AdminUrlOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLEAVE_ADMIN_URL",
        help="First create each service's PostgreSQL role and database through this "
        "admin connection (for example postgresql://postgres@127.0.0.1:5432/postgres).",
    ),
]


def provision_databases(
    config: SystemConfig, admin_url: str | None, service: str | None = None
) -> None:
    if not admin_url:
        return
    from cleave.data.provision import provision

    for result in run_sync(lambda: provision(admin_url, config, service)):
        changes = "; ".join(result.changes) or "role and database in place"
        out.print(f"{result.service:<10} role {result.role}, database {result.database}: {changes}")


def system_config(topology: str | None = None) -> SystemConfig:
    """The system a command that reads or changes state acts on: the topology named, else the
    one being served from this folder, else the default; at its running server's address."""
    import os
    from dataclasses import replace

    from cleave.serving.claim import running_systems

    config = config_for(topology)
    running = running_systems(config)
    if topology is None and not os.environ.get("CLEAVE_TOPOLOGY") and running:
        if len(running) > 1:
            listed = ", ".join(f"{r.topology} at {r.public_url}" for r in running)
            raise CleaveError(f"several systems are running here ({listed}): pick one with -t")
        config = config.with_topology(running[0].topology)
    serving = next((r for r in running if r.topology == config.topology.name), None)
    if serving is not None and not config.auth.public_url:
        config = replace(config, auth=replace(config.auth, public_url=serving.public_url))
    return config


@contextlib.contextmanager
def acting_on(topology: str | None) -> Iterator[SystemConfig]:
    """`system_config`, and once the command has done its work, one line on stderr saying which
    system it acted on (stdout stays the command's answer alone)."""
    from cleave.serving.claim import running_systems

    config = system_config(topology)
    yield config
    running = {r.topology: r for r in running_systems(config)}
    serving = running.get(config.topology.name)
    state = f"running at {serving.public_url}" if serving else "not running"
    err.print(f"[dim]on topology {config.topology.name} ({state}) · {_where(config)}[/]")


def _where(config: SystemConfig) -> str:
    """Where a system's databases are, in a few words."""
    from sqlalchemy.engine import make_url

    places = set()
    for service in config.services:
        url = make_url(config.database_url(service))
        if url.get_backend_name() == "sqlite":
            places.add(f"SQLite in {Path(url.database or '').parent}")
        else:
            places.add(f"{url.get_backend_name()} at {url.host}:{url.port or 5432}")
    return ", ".join(sorted(places))


async def with_service(
    config: SystemConfig, service: str, work: Callable[[ServiceContext], Awaitable[T]]
) -> T:
    """Run admin work on one service, in the unit its topology puts it in (migrated first)."""
    from cleave.runtime import Unit

    config.require_service(service)
    unit = Unit(config, config.topology.unit_of(service))
    try:
        await unit.migrate(service)
        return await work(unit.context(service))
    finally:
        await unit.stop()
