"""`cleave`: run, migrate, seed and inspect the system. Bad input is one line and an exit code."""

from __future__ import annotations

import os
import sys

import typer

# Typer vendors Click from 0.20 on; its usage errors live here (the version is pinned).
from typer._click.exceptions import ClickException, UsageError

# Each command module registers its commands on the one Typer app when imported.
from cleave.cli import certs, contracts, dlq, doctor, logs, sagas, scaffold, status, system
from cleave.cli.app import app, err
from cleave.errors import EX_CONFIG, CleaveError, ConfigError, Unrecoverable

__all__ = [
    "certs",
    "contracts",
    "dlq",
    "doctor",
    "logs",
    "main",
    "sagas",
    "scaffold",
    "status",
    "system",
]


def _add_service_commands() -> None:
    """Commands that services declare under `[commands]` in cleave.toml, as NAME = "module:obj":
    a Typer app becomes a command group, a function one command. Reading the file is cheap; the
    modules import heavy parts lazily."""
    import importlib
    import tomllib

    from cleave.config import find_config

    try:
        declared = tomllib.loads(find_config().read_text()).get("commands", {})
    except (CleaveError, OSError, tomllib.TOMLDecodeError):
        return  # the commands that need the file say so themselves
    registered = {group.name for group in app.registered_groups} | {
        command.name for command in app.registered_commands
    }
    for name, target in declared.items():
        if name in registered:
            continue
        module_name, _, attribute = str(target).partition(":")
        try:
            declared_command = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise ConfigError(f"[commands] {name}: cannot load {target!r}: {error}") from None
        if isinstance(declared_command, typer.Typer):
            app.add_typer(declared_command, name=name)
        elif callable(declared_command):
            app.command(name)(declared_command)
        else:
            raise ConfigError(f"[commands] {name}: {target!r} is not a Typer app or a function")


# Where Typer's completion scripts (`cleave --install-completion`) pass the words being completed.
COMPLETION_VARIABLE = "_CLEAVE_COMPLETE"


def main(argv: list[str] | None = None) -> None:
    """Entry point: every expected failure is one line on stderr and a non-zero exit."""
    try:
        _add_service_commands()
    except ConfigError as error:
        err.print(f"error: {error}", markup=False)
        sys.exit(2)
    command = typer.main.get_command(app)
    arguments = argv if argv is not None else sys.argv[1:]
    # Asked for nothing: the help is the answer, not an error (a shell asking for completions
    # sends its words in the environment instead).
    if not arguments and COMPLETION_VARIABLE not in os.environ:
        typer.echo(command.get_help(typer.Context(command, info_name="cleave")))
        sys.exit(0)
    try:
        # Outside standalone mode Click returns a `typer.Exit`'s code instead of raising it.
        code = command.main(
            args=arguments,
            prog_name="cleave",
            standalone_mode=False,
        )
        if isinstance(code, int) and code:
            sys.exit(code)
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
        err.print(f"error: {error}", markup=False)
        sys.exit(2)
    except Unrecoverable as error:
        err.print(f"error: {error}", markup=False)
        sys.exit(EX_CONFIG)
    except CleaveError as error:
        err.print(f"error: {error}", markup=False)
        sys.exit(1)
