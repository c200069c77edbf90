"""`cleave dlq`: messages that failed every attempt, parked per service, listed and replayed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cleave.cli.app import (
    TopologyOption,
    acting_on,
    app,
    out,
    run_sync,
    table,
    when,
    with_admin_unit,
)
from cleave.errors import CleaveError

if TYPE_CHECKING:
    from cleave.runtime import Unit

dlq_app = typer.Typer(
    help="Messages that failed every attempt, parked per service.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    include_replayed: Annotated[bool, typer.Option("--all", help="Also those replayed.")] = False,
    topology: TopologyOption = None,
) -> None:
    """List dead letters: id, handler, event type, attempts and the last error."""
    from cleave.messaging.consumer import list_dead_letters

    with acting_on(topology) as config:
        if service:
            config.require_service(service)

        async def work(unit: Unit) -> list[Any]:
            letters = []
            for name, context in unit.contexts.items():
                if service is None or name == service:
                    letters.extend(
                        await list_dead_letters(context, include_replayed=include_replayed)
                    )
            return letters

        letters = run_sync(lambda: with_admin_unit(config, work))
        if not letters:
            out.print("no dead letters")
            return
        listing = table("id", "handler", "type", "attempts", "failed at", "error")
        for letter in letters:
            listing.add_row(
                f"{letter.service}:{letter.id}",
                letter.handler,
                letter.type,
                str(letter.attempts),
                when(letter.failed_at),
                letter.error,
            )
        out.print(listing)


@dlq_app.command("replay")
def dlq_replay(
    letter: Annotated[str, typer.Argument(help="SERVICE:ID, as `cleave dlq list` shows it.")],
    topology: TopologyOption = None,
) -> None:
    """Apply a dead letter again through the same inbox path; it is applied at most once."""
    service, _, raw_id = letter.partition(":")
    if not raw_id.isdigit():
        raise CleaveError(f"{letter!r} is not SERVICE:ID (as `cleave dlq list` shows it)")
    with acting_on(topology) as config:
        config.require_service(service)

        async def work(unit: Unit) -> bool:
            return await unit.consumers[service].replay(int(raw_id))

        applied = run_sync(lambda: with_admin_unit(config, work))
        out.print(
            f"{letter} replayed" if applied else f"{letter} was applied before; marked replayed"
        )
