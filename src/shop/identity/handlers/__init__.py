"""Identity's use cases (docs/handlers.md), a module per part of the provider: `accounts`
(users, sign-up, sign-in and its throttle, the provider's sessions), `clients`, `grants` (the
token endpoint's authorization code, refresh and client credentials grants), `revocations`
and `introspection` (what a token is: introspection, userinfo); `passwords` and `settings`
serve them. Handlers take the caller's unit of work and never commit; `sign_in` checks the
password between a read and a write, so it takes the context, as the queries do to read.
Callers use the names below, `handlers.sign_in`, whichever module holds them."""

from shop.identity.handlers.accounts import (
    SignIn,
    create_user,
    end_session,
    session_user,
    sign_in,
    sign_up,
    start_session,
)
from shop.identity.handlers.clients import (
    Client,
    add_redirect_uris,
    authenticate_client,
    create_client,
    find_client,
    new_client_secret,
)
from shop.identity.handlers.grants import client_credentials, exchange_code, issue_code, refresh
from shop.identity.handlers.introspection import (
    OwnKeys,
    introspect,
    userinfo,
)
from shop.identity.handlers.passwords import hash_password, password_matches
from shop.identity.handlers.revocations import (
    disable_user,
    revocations_in_force,
    revoke,
    revoke_grant,
    revoke_subject,
)
from shop.identity.handlers.settings import lifetimes

__all__ = [
    "Client",
    "OwnKeys",
    "SignIn",
    "add_redirect_uris",
    "authenticate_client",
    "client_credentials",
    "create_client",
    "create_user",
    "disable_user",
    "end_session",
    "exchange_code",
    "find_client",
    "hash_password",
    "introspect",
    "issue_code",
    "lifetimes",
    "new_client_secret",
    "password_matches",
    "refresh",
    "revocations_in_force",
    "revoke",
    "revoke_grant",
    "revoke_subject",
    "session_user",
    "sign_in",
    "sign_up",
    "start_session",
    "userinfo",
]
