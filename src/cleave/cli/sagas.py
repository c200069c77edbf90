"""`cleave sagas`: sagas that ran out of retries and wait for a person: list, show, resume."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cleave.cli.app import app, config_for, out, run_sync, with_admin_unit
from cleave.errors import CleaveError

if TYPE_CHECKING:
    from sqlalchemy.exc import DBAPIError

    from cleave.runtime import Unit

sagas_app = typer.Typer(
    help="Sagas that ran out of retries (needs_attention): list, show and resume them.",
    no_args_is_help=True,
)
app.add_typer(sagas_app, name="sagas")


@sagas_app.command("list")
def sagas_list(
    service: Annotated[str | None, typer.Option(help="Only this service.")] = None,
    status: Annotated[
        str,
        typer.Option(help="needs_attention, running, compensating, completed, failed, or all."),
    ] = "needs_attention",
) -> None:
    """List sagas in a status (by default those waiting for a person), with their last error."""
    from sqlalchemy.exc import DBAPIError

    from cleave.saga import STATUSES, list_sagas

    if status != "all" and status not in STATUSES:
        raise CleaveError(f"unknown saga status {status!r} (known: {', '.join(STATUSES)}, all)")
    config = config_for()
    if service:
        config.require_service(service)

    async def work(unit: Unit) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        for name, context in unit.contexts.items():
            if service is None or name == service:
                try:
                    listed = await list_sagas(context, status=None if status == "all" else status)
                except DBAPIError as error:
                    if not _unmigrated(error):
                        raise
                    continue  # a database never migrated has no saga log, so no saga
                found.extend((name, saga) for saga in listed)
        return found

    found = run_sync(lambda: with_admin_unit(config, work))
    if not found:
        out.print("no sagas need attention" if status == "needs_attention" else "no sagas")
        return
    # One saga a line (its error on the next): readable at any width, and easy to grep.
    for name, saga in found:
        where = saga.stopped_at or saga.failed_step or f"step {saga.step}"
        out.print(
            f"{saga.id}  {name}  {saga.name}  {saga.status}  at {where}, "
            f"{saga.attempts} attempts, since {saga.updated_at.isoformat(timespec='seconds')}"
        )
        if saga.last_error:
            out.print(f"    last error: {saga.last_error}")


async def _owner(unit: Unit, saga_id: str) -> str:
    from sqlalchemy.exc import DBAPIError

    from cleave.saga import saga_history_of

    for name, context in unit.contexts.items():
        try:
            if await saga_history_of(context, saga_id) is not None:
                return name
        except DBAPIError as error:
            if not _unmigrated(error):
                raise
    raise CleaveError(f"no saga {saga_id} in any service")


def _unmigrated(error: DBAPIError) -> bool:
    """The saga log's table is not there: SQLite's "no such table", PostgreSQL's 42P01."""
    return "no such table" in str(error.orig) or getattr(error.orig, "sqlstate", "") == "42P01"


@sagas_app.command("show")
def sagas_show(
    saga: Annotated[str, typer.Argument(help="A saga id, as `cleave sagas list` shows it.")],
) -> None:
    """One saga: where it stands, and everything that went wrong in it and what was done."""
    from rich.table import Table

    from cleave.saga import saga_history_of

    saga_id = saga
    config = config_for()

    async def work(unit: Unit) -> Any:
        return await saga_history_of(unit.context(await _owner(unit, saga_id)), saga_id)

    summary, history = run_sync(lambda: with_admin_unit(config, work))
    out.print(
        f"{summary.name}:{summary.id}  {summary.status}  step {summary.step}"
        + (f"  failed at {summary.failed_step}: {summary.reason}" if summary.failed_step else "")
    )
    table = Table()
    for column in ("at", "step", "event", "detail"):
        table.add_column(column, overflow="fold")
    for event in history:
        table.add_row(
            event.at.isoformat(timespec="milliseconds"),
            event.step or "",
            event.event,
            event.detail or "",
        )
    out.print(table if history else "nothing went wrong")


@sagas_app.command("retry")
def sagas_retry(
    saga: Annotated[str, typer.Argument(help="A saga id, as `cleave sagas list` shows it.")],
) -> None:
    """Resume a saga that needs attention where it stopped; its runner takes it up within a
    second, with its retries counted anew."""
    from cleave.saga import retry_saga

    saga_id = saga
    config = config_for()

    async def work(unit: Unit) -> str:
        return await retry_saga(unit.context(await _owner(unit, saga_id)), saga_id, by="cleave")

    resumed = run_sync(lambda: with_admin_unit(config, work))
    out.print(f"{saga_id} resumed ({resumed})")
