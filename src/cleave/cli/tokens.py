"""`cleave token`: an access token from the running identity provider, for curl."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cleave.cli.app import (
    app,
    out,
    running_system_config,
)
from cleave.errors import CleaveError

if TYPE_CHECKING:
    from cleave.config import SystemConfig


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
    from cleave.auth.client import authorization_code_token, client_credentials_token
    from cleave.auth.tokens import ADMIN_SCOPE, CUSTOMER_SCOPES

    if customer is None and client is None and not scope:
        raise CleaveError("name a --customer, or the --scope to grant (for example --scope admin)")
    config = running_system_config()
    credentials = dev_credentials(config)
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


def dev_credentials(config: SystemConfig) -> dict[str, Any]:
    from cleave.auth.credentials import read_credentials

    return read_credentials(config.var_dir)
