"""`cleave new service` and `cleave extract`: write a new service, move one into its own unit."""

from __future__ import annotations

from typing import Annotated

import typer

from cleave.cli.app import TopologyOption, app, out

new_app = typer.Typer(help="Write a new part of the system.", no_args_is_help=True)
app.add_typer(new_app, name="new")


def _print_diff(text: str) -> None:
    """A unified diff, its added lines green and its removed ones red."""
    for line in text.splitlines():
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        out.print(line, style=style, markup=False)


@new_app.command("service")
def new_service(
    name: Annotated[
        str, typer.Argument(help="The service's name: lower-case letters, digits and '_'.")
    ],
) -> None:
    """Write a service of the same shape as the others and add it to cleave.toml.

    Its declaration, REST routes, handlers, a table and its migration, a port over gRPC, an
    event it publishes, and tests in both wirings."""
    from cleave.config import find_config
    from cleave.scaffold.service import new_service as write_service
    from cleave.scaffold.toml_lines import diff

    path = find_config()
    made = write_service(name, path)
    out.print(f"[bold]service {name}[/] written:")
    for file in made.written:
        out.print(f"  {file}")
    _print_diff(diff(made.before, made.after, path))
    for topology, unit in made.placed.items():
        out.print(
            f"in topology {topology} it runs in unit {unit}: "
            f"`cleave extract {name} -t {topology}` moves it into its own",
            markup=False,
        )
    out.print(
        f"next: `pytest tests/integration/test_{name}.py`; record its contracts with "
        "`python -m cleave.contracts.X --write` for X in openapi, events, asyncapi and proto; "
        f"in pyproject.toml, add {made.package}.{name} to the import-linter contracts and its "
        "_pb2 module to mypy's generated-code override",
        markup=False,
    )


@app.command()
def extract(
    service: Annotated[str, typer.Argument(help="A service of cleave.toml.")],
    unit: Annotated[
        str | None, typer.Option("--unit", help="The new unit's name (default: the service's).")
    ] = None,
    topology: TopologyOption = None,
) -> None:
    """Move SERVICE into a unit of its own in a topology of cleave.toml: one line changes, and
    only if the topology still wires every call and subscription. Prints the change."""
    from cleave.config import find_config
    from cleave.scaffold.extract import extract as move
    from cleave.scaffold.toml_lines import diff

    path = find_config()
    moved = move(service, unit, topology, path)
    if moved.before == moved.after:
        out.print(f"{service} runs alone in unit {moved.unit} of topology {moved.topology} already")
        return
    _print_diff(diff(moved.before, moved.after, path))
    out.print(
        f"{service} runs in unit {moved.unit} of topology {moved.topology}; every call and "
        f"subscription is wired (`cleave plan -t {moved.topology}` shows how)"
    )
