"""`cleave clients|users|keys`: administer the identity provider from the command line.

Registered through `[commands]` in cleave.toml; only Typer is imported until a command runs.
Generated secrets are printed once, to stdout, and never logged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:
    from cleave.service import ServiceContext

T = TypeVar("T")

clients = typer.Typer(help="OAuth clients of the identity provider.", no_args_is_help=True)
users = typer.Typer(help="User accounts of the identity provider.", no_args_is_help=True)
keys = typer.Typer(help="The provider's signing keys.", no_args_is_help=True)


def _run(work: Callable[[ServiceContext], Awaitable[T]]) -> T:
    from cleave.config import load_config
    from cleave.runtime import Unit

    async def main() -> T:
        unit = Unit(load_config())
        try:
            await unit.migrate("identity")
            return await work(unit.context("identity"))
        finally:
            await unit.stop()

    return asyncio.run(main())


def _print(text: str) -> None:
    typer.echo(text)


@clients.command("create")
def create_client(
    client_id: Annotated[str, typer.Argument(help="The client id, e.g. the calling service.")],
    scope: Annotated[list[str], typer.Option(help="A scope it may ask for (repeatable).")],
    name: Annotated[str | None, typer.Option(help="A readable name.")] = None,
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="An exact redirect URI (repeatable).")
    ] = None,
    public: Annotated[bool, typer.Option(help="A public client: PKCE, no secret.")] = False,
) -> None:
    """Register a client. A confidential client's secret is printed once: keep it."""
    from shop.identity import handlers

    async def work(context: ServiceContext) -> str | None:
        async with context.unit_of_work() as uow:
            return await handlers.create_client(
                uow,
                client_id,
                name=name or client_id,
                scopes=frozenset(scope),
                redirect_uris=tuple(redirect_uri or ()),
                public=public,
            )

    secret = _run(work)
    _print(f"client {client_id} created" + (f"\nsecret: {secret}" if secret else " (public)"))


@clients.command("list")
def list_clients() -> None:
    """Every client: id, kind, allowed scopes, grant types and redirect URIs."""
    from shop.identity import store

    async def work(context: ServiceContext) -> list[Any]:
        async with context.read() as connection:
            return await store.all_rows(connection, store.clients, "id")

    for row in _run(work):
        kind = "public" if row.secret_hash is None else "confidential"
        _print(f"{row.id}\t{kind}\t{row.scopes}\t{row.grant_types}\t{row.redirect_uris or '-'}")


@clients.command("delete")
def delete_client(client_id: Annotated[str, typer.Argument()]) -> None:
    """Remove a client; the tokens it holds stop refreshing."""
    from cleave.errors import CleaveError
    from shop.identity import store

    async def work(context: ServiceContext) -> int:
        async with context.unit_of_work() as uow:
            for grant in await store.all_rows(uow.connection, store.grants, "id"):
                if grant.client_id == client_id:
                    await store.revoke_grant(uow.connection, grant.id)
            return await store.remove(uow.connection, store.clients, id=client_id)

    if not _run(work):
        raise CleaveError(f"no client {client_id!r}")
    _print(f"client {client_id} deleted")


@users.command("create")
def create_user(
    email: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option(help="The person's name.")],
    user_id: Annotated[str | None, typer.Option("--id", help="Defaults to a new id.")] = None,
) -> None:
    """Create an account; its generated password is printed once."""
    import secrets

    from shop.identity import handlers
    from shop.identity.domain import Account

    password = secrets.token_urlsafe(12)

    async def work(context: ServiceContext) -> str:
        async with context.unit_of_work() as uow:
            return await handlers.create_user(uow, Account(email, name, password), user_id=user_id)

    created = _run(work)
    _print(f"user {created} created\npassword: {password}")


@users.command("list")
def list_users() -> None:
    """Every account: id, email, name and whether it is disabled."""
    from shop.identity import store

    async def work(context: ServiceContext) -> list[Any]:
        async with context.read() as connection:
            return await store.all_rows(connection, store.users, "email")

    for row in _run(work):
        _print(f"{row.id}\t{row.email}\t{row.name}\t{'disabled' if row.disabled else 'active'}")


@users.command("disable")
def disable_user(user_id: Annotated[str, typer.Argument()]) -> None:
    """Disable an account: it cannot sign in, and its grants are revoked."""
    from cleave.errors import CleaveError
    from shop.identity import store

    async def work(context: ServiceContext) -> int:
        async with context.unit_of_work() as uow:
            for grant in await store.all_rows(uow.connection, store.grants, "id"):
                if grant.user_id == user_id:
                    await store.revoke_grant(uow.connection, grant.id)
            await store.remove(uow.connection, store.sessions, user_id=user_id)
            return await store.set_values(
                uow.connection, store.users, {"id": user_id}, disabled=True
            )

    if not _run(work):
        raise CleaveError(f"no user {user_id!r}")
    _print(f"user {user_id} disabled")


@keys.command("rotate")
def rotate_keys(
    publish_lead: Annotated[
        int, typer.Option(min=0, help="Seconds the new key is published before it signs.")
    ] = 300,
) -> None:
    """Publish a new signing key; it signs after the lead time, and the old one stays published
    until the last token it signed has expired."""
    from datetime import timedelta

    from cleave.clock import utcnow
    from shop.identity import handlers, tokens

    async def work(context: ServiceContext) -> tuple[str, Any]:
        async with context.unit_of_work() as uow:
            await tokens.ensure_signing_key(uow.connection, utcnow())
            return await tokens.rotate(
                uow.connection,
                utcnow(),
                timedelta(seconds=publish_lead),
                handlers.lifetimes(context),
            )

    kid, activates_at = _run(work)
    _print(f"key {kid} published; it signs from {activates_at.isoformat(timespec='seconds')}")


@keys.command("list")
def list_keys() -> None:
    """Published keys: kid, when each signs from, retires and is unpublished."""
    from cleave.clock import utcnow
    from shop.identity import store

    async def work(context: ServiceContext) -> list[Any]:
        async with context.read() as connection:
            return await store.published_keys(connection, utcnow())

    for row in _run(work):
        _print(
            f"{row.kid}\t{row.activates_at:%Y-%m-%dT%H:%M:%S}\t"
            f"{row.retires_at or '-'}\t{row.expires_at or '-'}"
        )
