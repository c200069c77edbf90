"""`cleave token` and `cleave clients|users|keys`: the identity provider from the command line.

Registered through `[commands]` in cleave.toml; only Typer is imported until a command runs.
Every command acts on one system (`--topology`, else the one running here, else the default) and
says which on stderr. Generated secrets are printed once, to stdout, and never logged.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from cleave.cli.app import TopologyOption, acting_on, out, run_sync, table, when, with_service

if TYPE_CHECKING:
    from cleave.service import ServiceContext

T = TypeVar("T")
SERVICE = "identity"

clients = typer.Typer(help="OAuth clients of the identity provider.", no_args_is_help=True)
users = typer.Typer(help="User accounts of the identity provider.", no_args_is_help=True)
keys = typer.Typer(help="The provider's signing keys.", no_args_is_help=True)


def _run(topology: str | None, work: Callable[[ServiceContext], Awaitable[T]]) -> T:
    with acting_on(topology) as config:
        return run_sync(lambda: with_service(config, SERVICE, work))


def _print(text: str) -> None:
    typer.echo(text)


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
    topology: TopologyOption = None,
) -> None:
    """Print an access token from the running identity provider, for curl."""
    from cleave.auth.client import authorization_code_token, client_credentials_token
    from cleave.errors import CleaveError
    from shop.identity.contract.credentials import (
        ADMIN_CLIENT,
        CLI_CLIENT,
        CREDENTIALS_FILE,
        read_credentials,
    )
    from shop.identity.domain import ADMIN_SCOPE, USER_SCOPES

    if customer is None and client is None and not scope:
        raise CleaveError("name a --customer, or the --scope to grant (for example --scope admin)")
    with acting_on(topology) as config:
        credentials = read_credentials(config.var_dir)
        where = config.var_dir / CREDENTIALS_FILE
        if customer is not None:
            user = credentials["users"].get(customer)
            cli = credentials["clients"].get(CLI_CLIENT)
            if user is None or cli is None:
                raise CleaveError(
                    f"no development password for {customer!r} in {where}: run `cleave seed "
                    f"-t {config.topology.name}` (the demo users are alice, bob and carol)"
                )
            asked = scope or sorted(USER_SCOPES - {"openid"})
            issued = authorization_code_token(
                config.issuer,
                client_id=CLI_CLIENT,
                redirect_uri=cli["redirect_uri"],
                email=user["email"],
                password=user["password"],
                scopes=["openid", *asked],
            )
        elif client is None:
            if scope != [ADMIN_SCOPE]:
                raise CleaveError(
                    f"a token for the scopes {' '.join(scope or [])!r} needs a --customer or a "
                    "--client ID --secret-stdin (only --scope admin alone uses the admin client)"
                )
            secret = credentials["clients"].get(ADMIN_CLIENT, {}).get("secret")
            if secret is None:
                raise CleaveError(
                    f"no secret for the {ADMIN_CLIENT} client in {where}: run `cleave seed "
                    f"-t {config.topology.name}`"
                )
            issued = client_credentials_token(config.issuer, ADMIN_CLIENT, secret, scope)
        elif secret_stdin:
            issued = client_credentials_token(
                config.issuer, client, sys.stdin.readline().strip(), scope or ()
            )
        else:
            raise CleaveError("pass the client's secret on stdin with --secret-stdin")
        typer.echo(issued["access_token"])


@clients.command("create")
def create_client(
    client_id: Annotated[str, typer.Argument(help="The client id, e.g. the calling service.")],
    scope: Annotated[list[str], typer.Option(help="A scope it may ask for (repeatable).")],
    name: Annotated[str | None, typer.Option(help="A readable name.")] = None,
    redirect_uri: Annotated[
        list[str] | None, typer.Option(help="An exact redirect URI (repeatable).")
    ] = None,
    public: Annotated[bool, typer.Option(help="A public client: PKCE, no secret.")] = False,
    topology: TopologyOption = None,
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

    secret = _run(topology, work)
    _print(f"client {client_id} created" + (f"\nsecret: {secret}" if secret else " (public)"))


@clients.command("list")
def list_clients(topology: TopologyOption = None) -> None:
    """Every client: id, kind, allowed scopes, grant types and redirect URIs."""
    from shop.identity import store

    async def work(context: ServiceContext) -> list[store.ClientRow]:
        async with context.read() as connection:
            return await store.all_clients(connection)

    listing = table("id", "kind", "scopes", "grant types", "redirect URIs", "created")
    for row in _run(topology, work):
        kind = "public" if row.secret_hash is None else "confidential"
        listing.add_row(
            row.id,
            kind,
            row.scopes,
            row.grant_types,
            row.redirect_uris or "-",
            when(row.created_at),
        )
    out.print(listing)


@clients.command("delete")
def delete_client(
    client_id: Annotated[str, typer.Argument()], topology: TopologyOption = None
) -> None:
    """Remove a client; its tokens, and those people hold through it, stop working everywhere."""
    from cleave.errors import CleaveError
    from shop.identity import handlers, store

    async def work(context: ServiceContext) -> int:
        async with context.unit_of_work() as uow:
            if not await store.delete_client(uow.connection, client_id):
                raise CleaveError(f"no client {client_id!r}")
            for grant in await store.grants_of(uow.connection, client_id):
                if grant.revoked_at is None:
                    await handlers.revoke_grant(uow, grant.id)
            await handlers.revoke_subject(uow, client_id)
            return 1

    _run(topology, work)
    _print(f"client {client_id} deleted")


@users.command("create")
def create_user(
    email: Annotated[str, typer.Argument()],
    name: Annotated[str, typer.Option(help="The person's name.")],
    user_id: Annotated[str | None, typer.Option("--id", help="Defaults to a new id.")] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="An administrator (the console, admin routes).")
    ] = False,
    topology: TopologyOption = None,
) -> None:
    """Create an account; its generated password is printed once."""
    import secrets

    from shop.identity import handlers
    from shop.identity.domain import Account

    password = secrets.token_urlsafe(12)

    async def work(context: ServiceContext) -> str:
        async with context.unit_of_work() as uow:
            return await handlers.create_user(
                uow, Account(email, name, password), user_id=user_id, admin=admin
            )

    created = _run(topology, work)
    _print(f"user {created} created\npassword: {password}")


@users.command("list")
def list_users(topology: TopologyOption = None) -> None:
    """Every account: id, email, name, whether it is disabled, and administrators."""
    from shop.identity import store

    async def work(context: ServiceContext) -> list[store.UserRow]:
        async with context.read() as connection:
            return await store.all_users(connection)

    listing = table("id", "email", "name", "state", "role")
    for row in _run(topology, work):
        state = "disabled" if row.disabled else "active"
        listing.add_row(row.id, row.email, row.name, state, "admin" if row.admin else "")
    out.print(listing)


@users.command("disable")
def disable_user(
    user: Annotated[str, typer.Argument(help="The account's email or id.")],
    topology: TopologyOption = None,
) -> None:
    """Disable an account: it cannot sign in, its grants are revoked, and every unit refuses its
    tokens within seconds (the revocation goes out through the outbox)."""
    from shop.identity import handlers

    async def work(context: ServiceContext) -> str:
        async with context.unit_of_work() as uow:
            return await handlers.disable_user(uow, user)

    _print(f"user {_run(topology, work)} disabled")


@keys.command("rotate")
def rotate_keys(
    publish_lead: Annotated[
        int, typer.Option(min=0, help="Seconds the new key is published before it signs.")
    ] = 300,
    topology: TopologyOption = None,
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

    kid, activates_at = _run(topology, work)
    _print(f"key {kid} published; it signs from {when(activates_at)}")


@keys.command("list")
def list_keys(topology: TopologyOption = None) -> None:
    """Published keys: kid, when each signs from, retires and is unpublished."""
    from cleave.clock import utcnow
    from shop.identity import store

    async def work(context: ServiceContext) -> list[store.SigningKeyRow]:
        async with context.read() as connection:
            return await store.published_keys(connection, utcnow())

    listing = table("kid", "signs from", "retires", "unpublished")
    for row in _run(topology, work):
        listing.add_row(row.kid, when(row.activates_at), when(row.retires_at), when(row.expires_at))
    out.print(listing)
