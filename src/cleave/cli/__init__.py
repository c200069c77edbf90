"""`cleave`: run, migrate, seed and inspect the system. Bad input is one line and an exit code."""

from __future__ import annotations

import sys

import typer
from typer._click.exceptions import ClickException, UsageError

# Each command module registers its commands on the one Typer app when imported.
from cleave.cli import dlq, sagas, system, tokens
from cleave.cli.app import app, err
from cleave.errors import CleaveError, ConfigError

__all__ = ["dlq", "main", "sagas", "system", "tokens"]


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
