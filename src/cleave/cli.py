"""`cleave`: run, migrate, seed and inspect the system. Bad input is one line and an exit code."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

# Typer vendors Click from 0.20 on; its usage errors live here (the version is pinned).
from typer._click.exceptions import ClickException, UsageError

from cleave.config import SystemConfig, load_config
from cleave.deploy_cli import deploy_app
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
app.add_typer(deploy_app, name="deploy")

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


def _provision(config: SystemConfig, admin_url: str | None, service: str | None = None) -> None:
    if not admin_url:
        return
    from cleave.provision import provision

    for result in _run(lambda: provision(admin_url, config, service)):
        changes = "; ".join(result.changes) or "role and database in place"
        out.print(f"{result.service:<10} role {result.role}, database {result.database}: {changes}")


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port to listen on (default 8000).")
    ] = None,
    topology: TopologyOption = None,
    seed: Annotated[bool, typer.Option(help="Add the demo data that is missing.")] = True,
    admin_url: AdminUrlOption = None,
) -> None:
    """Run the whole system: one process, or one per unit under a supervisor, on one address."""
    from cleave.serving import check_port_free

    config = _config(topology)
    host = host or config.topology.host
    port = port or config.topology.http_port
    config = config.serving_at(host, port)
    check_port_free(host, port)
    _provision(config, admin_url or config.topology.admin_url)
    _announce(config)
    try:
        if len(config.topology.units) == 1:
            from cleave.serving import serve_unit

            unit = next(iter(config.topology.units))
            _run(lambda: serve_unit(config, unit, host=host, port=port, seed=seed, console=True))
            return
        from cleave.supervisor import Supervisor

        for unit in config.topology.units:
            address = config.topology.address_of(unit)
            check_port_free(address.host, address.http_port, option=f"the address of unit {unit}")
        _run(lambda: Supervisor(config, host=host, port=port, seed=seed, console=err).run())
    finally:
        (config.var_dir / SERVER_FILE).unlink(missing_ok=True)


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
    """Run one unit alone, as its container does: its services' HTTP and gRPC ports."""
    from cleave.serving import check_port_free, serve_unit

    config = _config(topology)
    if unit not in config.topology.units:
        known = ", ".join(config.topology.units)
        raise ConfigError(
            f"unknown unit {unit!r} in topology {config.topology.name!r} (known: {known})"
        )
    address = config.topology.address_of(unit)
    bind = host or address.host
    check_port_free(bind, address.http_port, option=f"CLEAVE_ADDRESS_{unit.upper()}")
    _run(
        lambda: serve_unit(
            config,
            unit,
            host=bind,
            port=address.http_port,
            migrate=migrate,
            seed=seed,
            announce=False,
        )
    )


@app.command()
def plan(topology: TopologyOption = None) -> None:
    """Each unit, its services, how every call between services is wired, and who carries events."""
    from cleave.runtime import load_services

    config = _config(topology)
    services = load_services(config)
    layout = config.topology
    out.print(f"[bold]{config.name}[/] · topology [bold]{layout.name}[/] · broker {layout.broker}")
    providers = {service.port.protocol: name for name, service in services.items() if service.port}
    for unit, members in layout.units.items():
        address = layout.address_of(unit)
        out.print(f"\n[bold]unit {unit}[/]  http {address.http}  grpc {address.grpc}")
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
            out.print(f"  {event.event_type:<38} {name} → {readers}  ({carrier})")


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
    admin_url: AdminUrlOption = None,
) -> None:
    """Bring each service's database to its newest schema. Safe to run again."""
    from sqlalchemy.engine import make_url

    config = _config(topology)
    if service:
        config.require_service(service)
    _provision(config, admin_url, service)
    applied = _run(lambda: _with_unit(config, lambda unit: unit.migrate(service)))
    for name, revisions in applied.items():
        done = ", ".join(revisions) if revisions else "up to date"
        shown = make_url(config.database_url(name)).render_as_string(hide_password=True)
        out.print(f"{name:<10} {shown}  {done}")


@app.command()
def seed(topology: TopologyOption = None) -> None:
    """Add the demo data that is missing (products with stock, a few customers)."""
    config = _config(topology)

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
