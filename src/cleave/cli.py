"""`cleave`: run, migrate, seed and inspect the system. Bad input is one line and an exit code."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

# Typer vendors Click from 0.20 on; its usage errors live here (the version is pinned).
from typer._click.exceptions import ClickException, UsageError

from cleave.config import SystemConfig, load_config
from cleave.errors import CleaveError, ConfigError

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
dlq_app = typer.Typer(
    help="Messages that failed every attempt, parked per service.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

TopologyOption = Annotated[
    str | None, typer.Option("--topology", "-t", help="A topology named in cleave.toml.")
]


def _config(topology: str | None = None) -> SystemConfig:
    return load_config(topology=topology)


def _run(coroutine_factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(coroutine_factory())


async def _with_unit(config: SystemConfig, work: Callable[[Unit], Awaitable[T]]) -> T:
    from cleave.runtime import Unit

    unit = Unit(config)
    try:
        return await work(unit)
    finally:
        await unit.stop()


def _single_unit(config: SystemConfig) -> None:
    if len(config.topology.units) > 1:
        raise ConfigError(
            f"topology {config.topology.name!r} has {len(config.topology.units)} units; "
            "this build runs single-unit topologies only"
        )


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                raise CleaveError(
                    f"port {port} on {host} is in use (choose another with --port)"
                ) from None
            raise CleaveError(f"cannot listen on {host}:{port}: {error.strerror}") from None


@app.command()
def up(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    topology: TopologyOption = None,
    seed: Annotated[bool, typer.Option(help="Add the demo data that is missing.")] = True,
) -> None:
    """Migrate, seed and serve the system on one address, with OpenAPI docs at /docs."""
    import uvicorn

    from cleave.http import create_app
    from cleave.runtime import Unit
    from cleave.telemetry import configure_logging

    config = _config(topology).serving_at(host, port)
    _single_unit(config)
    _check_port_free(host, port)
    unit_name = next(iter(config.topology.units))
    configure_logging(unit=unit_name)

    async def serve() -> None:
        unit = Unit(config)
        try:
            await unit.migrate()
            if seed:
                await unit.seed()
            application = create_app(unit)
            server = uvicorn.Server(
                uvicorn.Config(application, host=host, port=port, log_config=None, access_log=False)
            )
            err.print(
                f"[bold]Cleave[/] is up: http://{host}:{port}  "
                f"(topology {config.topology.name}, docs at /docs, Ctrl-C stops)"
            )
            _announce(config)
            await server.serve()
        finally:
            (config.var_dir / SERVER_FILE).unlink(missing_ok=True)
            await unit.stop()

    _run(serve)


SERVER_FILE = "server.json"


def _announce(config: SystemConfig) -> None:
    """Tell later commands (`cleave token`) where the running server is: its public URL."""
    import json

    config.var_dir.mkdir(parents=True, exist_ok=True)
    (config.var_dir / SERVER_FILE).write_text(json.dumps({"public_url": config.public_url}))


def _client_config() -> SystemConfig:
    """The configuration as a client sees it: at the running server's address when none is set."""
    import json
    from dataclasses import replace

    config = _config()
    if config.auth.public_url:
        return config
    try:
        announced = json.loads((config.var_dir / SERVER_FILE).read_text())["public_url"]
    except (OSError, ValueError, KeyError, TypeError):
        return config
    return replace(config, auth=replace(config.auth, public_url=str(announced)))


@app.command()
def migrate(
    service: Annotated[str | None, typer.Argument(help="Only this service.")] = None,
    topology: TopologyOption = None,
) -> None:
    """Bring each service's database to its newest schema. Safe to run again."""
    config = _config(topology)
    if service:
        config.require_service(service)
    _single_unit(config)
    applied = _run(lambda: _with_unit(config, lambda unit: unit.migrate(service)))
    for name, revisions in applied.items():
        done = ", ".join(revisions) if revisions else "up to date"
        out.print(f"{name:<10} {config.database_url(name)}  {done}")


@app.command()
def seed(topology: TopologyOption = None) -> None:
    """Add the demo data that is missing (products with stock, a few customers)."""
    config = _config(topology)
    _single_unit(config)

    async def work(unit: Unit) -> dict[str, int]:
        await unit.migrate()
        return await unit.seed()

    for name, added in _run(lambda: _with_unit(config, work)).items():
        out.print(f"{name:<10} {added} added")


@app.command()
def services(topology: TopologyOption = None) -> None:
    """Each service: its unit, database, routes, port, and the events it publishes and consumes."""
    from cleave.runtime import load_services

    config = _config(topology)
    out.print(f"[bold]{config.name}[/] · topology [bold]{config.topology.name}[/]")
    for name, service in load_services(config).items():
        routes = []
        if service.router is not None:
            for route in service.router.routes:
                methods = ",".join(sorted(getattr(route, "methods", None) or []))
                routes.append(f"{methods:<6} /api/{name}/v1{getattr(route, 'path', '')}")
        rows = {
            "unit": config.topology.unit_of(name),
            "database": config.database_url(name),
            "port": service.port.protocol.__name__ if service.port else "",
            "calls": ", ".join(protocol.__name__ for protocol in service.calls),
            "routes": routes,
            "publishes": [event.event_type for event in service.publishes],
            "consumes": [f"{sub.event.event_type} → {sub.name}" for sub in service.subscriptions],
        }
        out.print(f"\n[bold]{name}[/]  {service.description}")
        for label, value in rows.items():
            values = value if isinstance(value, list) else [value]
            for index, item in enumerate(values or ["—"]):
                out.print(f"  {label if index == 0 else '':<10} {item or '—'}", soft_wrap=True)


@app.command()
def token(
    customer: Annotated[
        str | None,
        typer.Option(help="A demo user (alice, bob, carol): runs the authorization code flow."),
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option(help="A scope to ask for (repeatable); 'admin' alone uses the admin client."),
    ] = None,
    client: Annotated[
        str | None, typer.Option(help="A confidential client id: the client credentials grant.")
    ] = None,
    secret_stdin: Annotated[
        bool, typer.Option("--secret-stdin", help="Read the --client secret from stdin.")
    ] = False,
    ttl: Annotated[
        int | None, typer.Option(hidden=True, help="Ignored: the provider decides.")
    ] = None,
) -> None:
    """Print an access token from the identity provider (which must be running), for curl."""
    from cleave.auth import ADMIN_SCOPE, CUSTOMER_SCOPES
    from cleave.oauth_client import authorization_code_token, client_credentials_token

    if customer is None and client is None and not scope:
        raise CleaveError("name a --customer, or the --scope to grant (for example --scope admin)")
    config = _client_config()
    credentials = _dev_credentials(config)
    if customer is not None:
        user = credentials.get("users", {}).get(customer)
        cli = credentials.get("clients", {}).get("cleave-cli")
        if user is None or cli is None:
            raise CleaveError(
                f"no development password for {customer!r} in {config.var_dir}: "
                "run `cleave seed` (demo users are alice, bob and carol)"
            )
        issued = authorization_code_token(
            config.issuer,
            client_id="cleave-cli",
            redirect_uri=cli["redirect_uri"],
            email=user["email"],
            password=user["password"],
            scopes=["openid", *(scope or CUSTOMER_SCOPES)],
        )
    else:
        if client is None:
            client = "cleave-admin"
            secret = credentials.get("clients", {}).get(client, {}).get("secret")
            if ADMIN_SCOPE not in (scope or []) or secret is None:
                raise CleaveError("use --scope admin, or --client ID --secret-stdin")
        elif secret_stdin:
            secret = sys.stdin.readline().strip()
        else:
            raise CleaveError("pass the client's secret on stdin with --secret-stdin")
        issued = client_credentials_token(config.issuer, client, secret, scope or ())
    out.print(issued["access_token"], soft_wrap=True)


def _dev_credentials(config: SystemConfig) -> dict[str, Any]:
    import json

    path = config.var_dir / "dev-credentials.json"
    try:
        credentials: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return credentials


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    include_replayed: Annotated[bool, typer.Option("--all", help="Also those replayed.")] = False,
) -> None:
    """List dead letters: id, handler, event type, attempts and the last error."""
    from cleave.messaging.consumer import list_dead_letters

    config = _config()
    if service:
        config.require_service(service)
    _single_unit(config)

    async def work(unit: Unit) -> list[Any]:
        letters = []
        for name, context in unit.contexts.items():
            if service is None or name == service:
                letters.extend(await list_dead_letters(context, include_replayed=include_replayed))
        return letters

    letters = _run(lambda: _with_unit(config, work))
    if not letters:
        out.print("no dead letters")
        return
    table = Table()
    for column in ("id", "handler", "type", "attempts", "failed at", "error"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            f"{letter.service}:{letter.id}",
            letter.handler,
            letter.type,
            str(letter.attempts),
            letter.failed_at.isoformat(timespec="seconds"),
            letter.error,
        )
    out.print(table)


@dlq_app.command("replay")
def dlq_replay(
    letter: Annotated[str, typer.Argument(help="SERVICE:ID, as `cleave dlq list` shows it.")],
) -> None:
    """Apply a dead letter again through the same inbox path; it is applied at most once."""
    service, _, raw_id = letter.partition(":")
    if not raw_id.isdigit():
        raise CleaveError(f"{letter!r} is not SERVICE:ID (for example customer:3)")
    config = _config()
    config.require_service(service)
    _single_unit(config)

    async def work(unit: Unit) -> bool:
        return await unit.consumers[service].replay(int(raw_id))

    applied = _run(lambda: _with_unit(config, work))
    out.print(f"{letter} replayed" if applied else f"{letter} was applied before; marked replayed")


def _add_service_commands() -> None:
    """Command groups that services declare under `[commands]` in cleave.toml, as
    NAME = "module:typer_app". Reading the file is cheap; the modules import heavy parts lazily."""
    import importlib
    import tomllib

    from cleave.config import find_config

    try:
        declared = tomllib.loads(find_config().read_text()).get("commands", {})
    except (CleaveError, OSError, tomllib.TOMLDecodeError):
        return  # the commands that need the file say so themselves
    registered = {group.name for group in app.registered_groups}
    for name, target in declared.items():
        if name in registered:
            continue
        module_name, _, attribute = str(target).partition(":")
        try:
            group = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"[commands] {name}: cannot load {target!r}: {error}") from None
        app.add_typer(group, name=name)


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure is one line on stderr and a non-zero exit."""
    try:
        _add_service_commands()
    except ConfigError as error:
        err.print(f"error: {error}")
        sys.exit(2)
    command = typer.main.get_command(app)
    try:
        command.main(
            args=argv if argv is not None else sys.argv[1:],
            prog_name="cleave",
            standalone_mode=False,
        )
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exit_:
        sys.exit(exit_.exit_code)
    except UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "cleave"
        err.print(f"error: {error.format_message()} (see {where} --help)")
        sys.exit(2)
    except ClickException as error:
        err.print(f"error: {error.format_message()}")
        sys.exit(error.exit_code)
    except ConfigError as error:
        err.print(f"error: {error}")
        sys.exit(2)
    except CleaveError as error:
        err.print(f"error: {error}")
        sys.exit(1)
