"""`cleave`: run, migrate, seed and inspect the system. Bad input is one line and an exit code."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

# Typer vendors Click from 0.20 on; its usage errors live here (the version is pinned).
from cleave.config import SystemConfig, load_config
from cleave.deploy.cli import deploy_app

if TYPE_CHECKING:
    from cleave.runtime import Unit

# Heavy modules (FastAPI, SQLAlchemy, OpenTelemetry) are imported inside the commands that use
# them, so that `cleave --help` and a mistyped flag answer at once.

T = TypeVar("T")

app = typer.Typer(
    name="cleave",
    help="Cleave: one codebase, any topology. Run, migrate, seed and inspect the system.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(deploy_app, name="deploy")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

TopologyOption = Annotated[
    str | None, typer.Option("--topology", "-t", help="A topology named in cleave.toml.")
]


def config_for(topology: str | None = None) -> SystemConfig:
    return load_config(topology=topology)


def run_sync(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run on uvloop (a dependency of uvicorn's standard extra): its sockets, timers and
    wake-ups cost a fraction of the default loop's, as uvicorn itself would have chosen."""
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


SERVER_FILE = "server.json"


def announce_server(config: SystemConfig) -> None:
    """Tell later commands (`cleave token`) where the running server is: its public URL."""
    import json

    config.var_dir.mkdir(parents=True, exist_ok=True)
    (config.var_dir / SERVER_FILE).write_text(json.dumps({"public_url": config.public_url}))


def running_system_config() -> SystemConfig:
    """The configuration as a client sees it: at the running server's address when none is set."""
    import json
    from dataclasses import replace

    config = config_for()
    if config.auth.public_url:
        return config
    try:
        announced = json.loads((config.var_dir / SERVER_FILE).read_text())["public_url"]
    except (OSError, ValueError, KeyError, TypeError):
        return config
    return replace(config, auth=replace(config.auth, public_url=str(announced)))
