"""Identity use cases: accounts, sessions, the authorization code, refresh and client credentials
grants, revocation and introspection (docs/handlers.md). Handlers take the caller's unit of work
and never commit; `sign_in` checks the password between a read and a write, so it takes the
context, as the queries (introspection, userinfo) do to read."""

from __future__ import annotations

import asyncio
import hmac
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.auth.revocation import Revocation, SessionRevoked, SubjectRevoked, TokenRevoked
from cleave.auth.tokens import CLIENT, LEEWAY_SECONDS, USER, TokenVerifier
from cleave.clock import utcnow
from cleave.errors import Conflict, NotFound, Unauthorized
from cleave.service import ServiceContext, UnitOfWork
from shop.identity import store, tokens
from shop.identity.contract import UserRegistered
from shop.identity.domain import (
    GRANT_TYPES,
    Account,
    Attempts,
    OAuthError,
    ThrottlePolicy,
    after_failure,
    check_password_strength,
    granted_scopes,
    is_locked,
    pkce_matches,
    validate_account,
    validate_client_id,
)
from shop.identity.tokens import Lifetimes, digest, random_token

HASHER = PasswordHasher()
# Verified against when the email is unknown, so both answers take the same time: the hash of a
# random secret that was thrown away, made once with the hasher's parameters (hashing at import
# cost a function's cold start 0.6 s); made afresh should the parameters ever change.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$WnolEHxclWz1nyTzZvu0ww$"
    "kBOFMhVCgVeK+xHOXqcnGyFVcUlXegwM8IQq5FS083E"
)
if HASHER.check_needs_rehash(_DUMMY_HASH):
    _DUMMY_HASH = HASHER.hash(uuid.uuid4().hex)


def lifetimes(context: ServiceContext) -> Lifetimes:
    return Lifetimes(access=timedelta(seconds=context.setting("access_token_seconds", 600)))


def throttle_policy(context: ServiceContext) -> ThrottlePolicy:
    return ThrottlePolicy(
        slow_after=int(context.setting("sign_in_slow_after", 3)),
        lock_after=int(context.setting("sign_in_lock_after", 5)),
        lock_for=timedelta(seconds=context.setting("sign_in_lock_seconds", 900)),
    )


async def hash_password(password: str) -> str:
    # Argon2 is deliberately slow: off the event loop.
    return await asyncio.to_thread(HASHER.hash, password)


async def password_matches(password_hash: str, password: str) -> bool:
    def verify() -> bool:
        try:
            return HASHER.verify(password_hash, password)
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(verify)


# --- accounts -------------------------------------------------------------------------------


async def create_user(
    uow: UnitOfWork,
    account: Account,
    *,
    user_id: str | None = None,
    admin: bool = False,
    password_hash: str | None = None,
) -> str:
    """An account made by an operator or the seeder: a taken email is a plain conflict.
    `password_hash` is `hash_password(account.password)` made beforehand, out of the transaction
    (the seeder hashes all its accounts at once)."""
    account = validate_account(account)
    await asyncio.to_thread(check_password_strength, account)  # CPU-bound: off the loop
    if await store.one(uow.connection, store.UserRow, email=account.email) is not None:
        raise Conflict("that email is registered already", code="email-taken")
    user_id = user_id or uuid.uuid4().hex
    await _id_is_free(uow.connection, user_id)
    await store.insert(
        uow.connection,
        store.users,
        id=user_id,
        email=account.email,
        name=account.name,
        password_hash=password_hash or await hash_password(account.password),
        disabled=False,
        created_at=utcnow(),
        admin=admin,
    )
    return user_id


async def sign_up(uow: UnitOfWork, account: Account) -> str | None:
    """Self-service sign-up. A taken email answers exactly like a new one (None here, and the
    same page to the person), so sign-up never reveals who is registered."""
    account = validate_account(account)
    await asyncio.to_thread(check_password_strength, account)  # CPU-bound: off the loop
    password_hash = await hash_password(account.password)
    if await store.one(uow.connection, store.UserRow, email=account.email) is not None:
        return None
    user_id = uuid.uuid4().hex
    await _id_is_free(uow.connection, user_id)
    await store.insert(
        uow.connection,
        store.users,
        id=user_id,
        email=account.email,
        name=account.name,
        password_hash=password_hash,
        disabled=False,
        created_at=utcnow(),
    )
    uow.publish(
        UserRegistered(user_id=user_id, email=account.email, name=account.name), subject=user_id
    )
    return user_id


async def _id_is_free(connection: AsyncConnection, principal_id: str) -> None:
    """Users and clients share one namespace of subjects: a client id never equals a user id,
    so no client-credentials token can ever name a person (RFC 9700 §4.15)."""
    if await store.one(connection, store.UserRow, id=principal_id) is not None:
        raise Conflict(f"{principal_id!r} is a user's id: no client may take it", code="id-taken")
    if await store.one(connection, store.ClientRow, id=principal_id) is not None:
        raise Conflict(f"{principal_id!r} is a client's id: no user may take it", code="id-taken")


@dataclass(frozen=True)
class SignIn:
    user: store.UserRow | None
    locked: bool = False


async def sign_in(context: ServiceContext, email: str, password: str, address: str) -> SignIn:
    """Check a password, slowing down and then locking on repeated failures per account and per
    address. The answer is the same whether or not the email is registered."""
    policy = throttle_policy(context)
    address_policy = ThrottlePolicy(
        slow_after=policy.slow_after * 4,
        lock_after=policy.lock_after * 4,
        lock_for=policy.lock_for,
    )
    keys = {f"account:{email.strip().lower()}": policy, f"address:{address}": address_policy}
    now = utcnow()
    async with context.read() as connection:
        user = await store.one(connection, store.UserRow, email=email.strip().lower())
        attempts = {key: await _attempts(connection, key) for key in keys}
    if any(is_locked(state, now) for state in attempts.values()):
        return SignIn(None, locked=True)
    delay = max(keys[key].delay(state.failures if state else 0) for key, state in attempts.items())
    if delay:
        await asyncio.sleep(delay)
    usable = user if user is not None and not user.disabled else None
    hashed = usable.password_hash if usable is not None else _DUMMY_HASH
    matches = await password_matches(hashed, password)
    async with context.unit_of_work() as uow:
        if usable is not None and matches:
            await store.remove(uow.connection, store.sign_in_attempts, key=next(iter(keys)))
            return SignIn(usable)
        for key, key_policy in keys.items():
            await _record_failure(uow.connection, key, key_policy, attempts[key], now)
    return SignIn(None)


async def _attempts(connection: AsyncConnection, key: str) -> Attempts | None:
    row = await store.one(connection, store.SignInAttemptsRow, key=key)
    return None if row is None else Attempts(row.failures, row.first_failure_at, row.locked_until)


async def _record_failure(
    connection: AsyncConnection,
    key: str,
    policy: ThrottlePolicy,
    previous: Attempts | None,
    now: datetime,
) -> None:
    state = after_failure(previous, policy, now)
    values = {
        "failures": state.failures,
        "first_failure_at": state.first_failure_at,
        "locked_until": state.locked_until,
    }
    if previous is None:
        await store.insert(connection, store.sign_in_attempts, key=key, **values)
    else:
        await store.set_values(connection, store.sign_in_attempts, {"key": key}, **values)


async def start_session(uow: UnitOfWork, user_id: str, *, token: str | None = None) -> str:
    """A signed-in session; `token` is the cookie's value, new unless a pact's state names it."""
    token = token or random_token()
    now = utcnow()
    await store.insert(
        uow.connection,
        store.sessions,
        id_hash=digest(token),
        user_id=user_id,
        created_at=now,
        expires_at=now + lifetimes(uow.context).session,
    )
    return token


async def session_user(
    context: ServiceContext, token: str | None
) -> tuple[store.UserRow, datetime] | None:
    """The signed-in user of a session cookie, and when they signed in."""
    if not token:
        return None
    async with context.read() as connection:
        session = await store.one(connection, store.SessionRow, id_hash=digest(token))
        if session is None or session.expires_at <= utcnow():
            return None
        user = await store.one(connection, store.UserRow, id=session.user_id)
    if user is None or user.disabled:
        return None
    return user, session.created_at


async def end_session(uow: UnitOfWork, token: str | None) -> None:
    if token:
        await store.remove(uow.connection, store.sessions, id_hash=digest(token))


# --- clients --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Client:
    id: str
    name: str
    public: bool
    redirect_uris: tuple[str, ...]
    scopes: frozenset[str]
    grant_types: frozenset[str]


def _client(row: store.ClientRow) -> Client:
    return Client(
        id=row.id,
        name=row.name,
        public=row.secret_hash is None,
        redirect_uris=tuple(row.redirect_uris.split()),
        scopes=frozenset(row.scopes.split()),
        grant_types=frozenset(row.grant_types.split()),
    )


async def create_client(
    uow: UnitOfWork,
    client_id: str,
    *,
    name: str,
    scopes: frozenset[str],
    redirect_uris: tuple[str, ...] = (),
    public: bool = False,
    secret: str | None = None,
    secret_hash: str | None = None,
) -> str | None:
    """Register a client; returns its generated secret (shown once), or None for a public one.
    `secret_hash` is `hash_password(secret)` made beforehand, out of the transaction."""
    if secret_hash is not None and secret is None:
        raise ValueError("a secret's hash comes with the secret it is the hash of")
    validate_client_id(client_id)
    if await store.one(uow.connection, store.ClientRow, id=client_id) is not None:
        raise Conflict(f"client {client_id} exists already", code="client-exists")
    await _id_is_free(uow.connection, client_id)
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    grant_types = {"authorization_code", "refresh_token"} if redirect_uris else set()
    if not public:
        grant_types.add("client_credentials")
        secret = secret or random_token()
    await store.insert(
        uow.connection,
        store.clients,
        id=client_id,
        name=name,
        secret_hash=None if public else secret_hash or await hash_password(secret or ""),
        redirect_uris=" ".join(redirect_uris),
        scopes=" ".join(sorted(scopes)),
        grant_types=" ".join(sorted(grant_types & GRANT_TYPES)),
        created_at=utcnow(),
    )
    return None if public else secret


async def add_redirect_uris(uow: UnitOfWork, client_id: str, uris: tuple[str, ...]) -> None:
    """Register more exact redirect URIs for a client (as when the system moves address)."""
    row = await store.one(uow.connection, store.ClientRow, id=client_id)
    if row is None:
        raise NotFound(f"no client {client_id}")
    for uri in uris:
        _check_redirect_uri(uri)
    known = row.redirect_uris.split()
    merged = known + [uri for uri in uris if uri not in known]
    await store.set_values(
        uow.connection, store.clients, {"id": client_id}, redirect_uris=" ".join(merged)
    )


async def new_client_secret(uow: UnitOfWork, client_id: str, secret: str | None = None) -> str:
    """Replace a confidential client's secret (with `secret`, or a new one, returned once); it is
    kept hashed."""
    secret = secret or random_token()
    changed = await store.set_values(
        uow.connection,
        store.clients,
        {"id": client_id},
        secret_hash=await hash_password(secret),
    )
    if not changed:
        raise NotFound(f"no client {client_id}")
    return secret


def _check_redirect_uri(uri: str) -> None:
    if not uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise OAuthError("invalid_redirect_uri", f"{uri} must be https or a loopback URL")


async def find_client(connection: AsyncConnection, client_id: str) -> Client | None:
    row = await store.one(connection, store.ClientRow, id=client_id)
    return None if row is None else _client(row)


async def authenticate_client(
    connection: AsyncConnection, client_id: str | None, secret: str | None
) -> Client:
    """A confidential client proves its secret; a public client only names itself."""
    row = await store.one(connection, store.ClientRow, id=client_id) if client_id else None
    if row is None:
        raise OAuthError("invalid_client", "unknown client", status=401)
    if row.secret_hash is not None and not (
        secret and await password_matches(row.secret_hash, secret)
    ):
        raise OAuthError("invalid_client", "client authentication failed", status=401)
    if row.secret_hash is None and secret:
        raise OAuthError("invalid_client", "a public client has no secret", status=401)
    return _client(row)


# --- the authorization code grant ------------------------------------------------------------


async def issue_code(
    uow: UnitOfWork,
    client: Client,
    *,
    user_id: str,
    redirect_uri: str,
    scopes: frozenset[str],
    code_challenge: str,
    nonce: str | None,
    auth_time: datetime,
    code: str | None = None,
) -> str:
    """A new authorization code (or `code`, where a pact's state names it)."""
    code = code or random_token()
    now = utcnow()
    await store.insert(
        uow.connection,
        store.authorization_codes,
        code_hash=digest(code),
        grant_id=uuid.uuid4().hex,
        client_id=client.id,
        user_id=user_id,
        redirect_uri=redirect_uri,
        scope=" ".join(sorted(scopes)),
        code_challenge=code_challenge,
        nonce=nonce,
        auth_time=auth_time,
        expires_at=now + lifetimes(uow.context).code,
    )
    return code


async def exchange_code(uow: UnitOfWork, client: Client, form: dict[str, str]) -> dict[str, Any]:
    code, verifier = form.get("code", ""), form.get("code_verifier", "")
    row = await store.one(uow.connection, store.AuthorizationCodeRow, code_hash=digest(code))
    now = utcnow()
    if row is None or row.client_id != client.id:
        raise OAuthError("invalid_grant", "unknown authorization code")
    if not await store.claim_code(uow.connection, row.code_hash, now):
        # A replayed code means it leaked: end every token issued from it (RFC 6749 §4.1.2).
        await revoke_grant(uow, row.grant_id)
        raise OAuthError("invalid_grant", "the authorization code was used already")
    if row.expires_at <= now:
        raise OAuthError("invalid_grant", "the authorization code has expired")
    if not hmac.compare_digest(row.redirect_uri, form.get("redirect_uri", "")):
        raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
    if not pkce_matches(verifier, row.code_challenge):
        raise OAuthError("invalid_grant", "the PKCE code_verifier does not match")
    await store.insert(
        uow.connection,
        store.grants,
        id=row.grant_id,
        client_id=client.id,
        user_id=row.user_id,
        scope=row.scope,
        auth_time=row.auth_time,
        created_at=now,
        revoked_at=None,
    )
    user = await store.one(uow.connection, store.UserRow, id=row.user_id)
    if user is None or user.disabled:
        raise OAuthError("invalid_grant", "the account is not active")
    return await _user_tokens(
        uow, client, user, row.grant_id, frozenset(row.scope.split()), row.auth_time, row.nonce
    )


async def refresh(uow: UnitOfWork, client: Client, form: dict[str, str]) -> dict[str, Any]:
    token_hash = digest(form.get("refresh_token", ""))
    row = await store.one(uow.connection, store.RefreshTokenRow, token_hash=token_hash)
    grant = row and await store.one(uow.connection, store.GrantRow, id=row.grant_id)
    now = utcnow()
    if row is None or grant is None or grant.client_id != client.id:
        raise OAuthError("invalid_grant", "unknown refresh token")
    if not await store.claim_refresh_token(uow.connection, token_hash, now):
        # A rotated token came back: someone holds a copy. The whole family ends.
        await revoke_grant(uow, grant.id)
        raise OAuthError("invalid_grant", "the refresh token was used already")
    if grant.revoked_at is not None or row.expires_at <= now:
        raise OAuthError("invalid_grant", "the refresh token is no longer valid")
    scopes = granted_scopes(form.get("scope"), frozenset(grant.scope.split()))
    if scopes is None:
        raise OAuthError("invalid_scope", "a refresh cannot widen the granted scopes")
    user = await store.one(uow.connection, store.UserRow, id=grant.user_id)
    if user is None or user.disabled:
        raise OAuthError("invalid_grant", "the account is not active")
    return await _user_tokens(uow, client, user, grant.id, scopes, grant.auth_time, None)


async def _user_tokens(
    uow: UnitOfWork,
    client: Client,
    user: store.UserRow,
    grant_id: str,
    scopes: frozenset[str],
    auth_time: datetime,
    nonce: str | None,
) -> dict[str, Any]:
    context, now, spans = uow.context, utcnow(), lifetimes(uow.context)
    key = await _signing_key(uow.connection, now)
    access, _jti = tokens.access_token(
        key,
        issuer=context.system.issuer,
        audience=context.system.audience,
        subject=user.id,
        client_id=client.id,
        subject_type=USER,
        scopes=scopes,
        now=now,
        lifetimes=spans,
        grant_id=grant_id,
        auth_time=auth_time,
    )
    refresh_token = random_token()
    await store.insert(
        uow.connection,
        store.refresh_tokens,
        token_hash=digest(refresh_token),
        grant_id=grant_id,
        created_at=now,
        expires_at=now + spans.refresh,
    )
    response: dict[str, Any] = {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(spans.access.total_seconds()),
        "scope": " ".join(sorted(scopes)),
        "refresh_token": refresh_token,
    }
    if "openid" in scopes:
        response["id_token"] = tokens.id_token(
            key,
            issuer=context.system.issuer,
            client_id=client.id,
            user=user,
            scopes=scopes,
            now=now,
            lifetimes=spans,
            auth_time=auth_time,
            nonce=nonce,
            access=access,
        )
    return response


async def client_credentials(
    uow: UnitOfWork, client: Client, form: dict[str, str]
) -> dict[str, Any]:
    if client.public:
        raise OAuthError("unauthorized_client", "a public client cannot use client credentials")
    scopes = granted_scopes(form.get("scope"), client.scopes - {"openid"})
    if scopes is None:
        raise OAuthError("invalid_scope", f"{client.id} may not ask for those scopes")
    now, spans = utcnow(), lifetimes(uow.context)
    access, _jti = tokens.access_token(
        await _signing_key(uow.connection, now),
        issuer=uow.context.system.issuer,
        audience=uow.context.system.audience,
        subject=client.id,
        client_id=client.id,
        subject_type=CLIENT,
        scopes=scopes,
        now=now,
        lifetimes=spans,
    )
    return {
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": int(spans.access.total_seconds()),
        "scope": " ".join(sorted(scopes)),
    }


async def _signing_key(connection: AsyncConnection, now: datetime) -> Any:
    await tokens.ensure_signing_key(connection, now)
    return await tokens.signing_key(connection, now)


# --- revocation, introspection, userinfo ------------------------------------------------------


class OwnKeys:
    """The provider verifies its own tokens against its own published keys, read from its table:
    on the caller's `connection` when a unit of work holds one, else in a read of their own."""

    def __init__(self, context: ServiceContext, connection: AsyncConnection | None = None) -> None:
        self.context = context
        self.connection = connection

    async def key_set(self, kid: str | None) -> Any:
        if self.connection is not None:
            return await tokens.public_key_set(self.connection, utcnow())
        async with self.context.read() as connection:
            return await tokens.public_key_set(connection, utcnow())


def own_verifier(keys: OwnKeys) -> TokenVerifier:
    system = keys.context.system
    return TokenVerifier(system.issuer, system.audience, keys, algorithms=["RS256"])


async def revoke(uow: UnitOfWork, client: Client, token: str) -> None:
    """RFC 7009: revoke a refresh token's family or one access token; unknown tokens are fine."""
    row = await store.one(uow.connection, store.RefreshTokenRow, token_hash=digest(token))
    if row is not None:
        grant = await store.one(uow.connection, store.GrantRow, id=row.grant_id)
        if grant is not None and grant.client_id == client.id:
            await revoke_grant(uow, grant.id)  # and the access tokens issued from it (RFC 7009 §2)
        return
    try:
        principal_claims = await _access_claims(OwnKeys(uow.context, uow.connection), token)
    except Unauthorized:
        return
    if principal_claims.get("client_id") != client.id:
        return
    jti = str(principal_claims.get("jti", ""))
    expires_at = datetime.fromtimestamp(int(principal_claims["exp"]), tz=utcnow().tzinfo)
    if jti and await store.one(uow.connection, store.RevokedAccessTokenRow, jti=jti) is None:
        await store.insert(
            uow.connection, store.revoked_access_tokens, jti=jti, expires_at=expires_at
        )
    if jti:
        until = await store.record_revocation(
            uow.connection, "token", jti, expires_at + timedelta(seconds=LEEWAY_SECONDS)
        )
        uow.publish(TokenRevoked(jti=jti, until=until), subject=jti)


# --- revocations every unit refuses (cleave.auth.revocation) ----------------------------------


def _outlives_tokens(uow: UnitOfWork) -> datetime:
    """When every access token issued until now has expired, to every verifier's clock."""
    return utcnow() + lifetimes(uow.context).access + timedelta(seconds=LEEWAY_SECONDS)


async def revoke_grant(uow: UnitOfWork, grant_id: str) -> None:
    """End a sign-in: its refresh tokens here, its access tokens (their `sid`) at every unit."""
    await store.revoke_grant(uow.connection, grant_id)
    until = await store.record_revocation(
        uow.connection, "session", grant_id, _outlives_tokens(uow)
    )
    uow.publish(SessionRevoked(session=grant_id, until=until), subject=grant_id)


async def revoke_subject(uow: UnitOfWork, subject: str) -> None:
    """End every token of a user or client so far, at every unit, and the user's grants."""
    for grant in await store.all_rows(uow.connection, store.GrantRow, "id"):
        if subject in (grant.user_id, grant.client_id):
            await store.revoke_grant(uow.connection, grant.id)  # its tokens: covered below
    until = await store.record_revocation(uow.connection, "subject", subject, _outlives_tokens(uow))
    uow.publish(SubjectRevoked(subject=subject, until=until), subject=subject)


async def disable_user(uow: UnitOfWork, user: str) -> str:
    """Disable an account, by id or email: it cannot sign in, and its tokens stop working
    everywhere within moments. Returns its id."""
    row = await store.one(uow.connection, store.UserRow, id=user) or await store.one(
        uow.connection, store.UserRow, email=user.strip().lower()
    )
    if row is None:
        raise NotFound(f"no user {user!r}", code="user-not-found")
    await store.set_values(uow.connection, store.users, {"id": row.id}, disabled=True)
    await store.remove(uow.connection, store.sessions, user_id=row.id)
    await revoke_subject(uow, row.id)
    return row.id


async def revocations_in_force(context: ServiceContext) -> list[Revocation]:
    """What every unit must refuse now: read by each unit as it starts."""
    async with context.read() as connection:
        rows = await store.revocations_in_force(connection, utcnow())
    return [Revocation(kind=row.kind, value=row.value, until=row.until) for row in rows]


async def _access_claims(keys: OwnKeys, token: str) -> dict[str, Any]:
    from joserfc import jwt

    await own_verifier(keys).verify(token)  # raises Unauthorized when not a valid access token
    return dict(jwt.decode(token, await keys.key_set(None)).claims)


async def access_token_active(context: ServiceContext, token: str) -> dict[str, Any] | None:
    """The claims of a valid access token that was not revoked (directly or with its grant)."""
    try:
        claims = await _access_claims(OwnKeys(context), token)
    except Unauthorized:
        return None
    async with context.read() as connection:
        if await store.one(connection, store.RevokedAccessTokenRow, jti=claims.get("jti")):
            return None
        if sid := claims.get("sid"):
            grant = await store.one(connection, store.GrantRow, id=sid)
            if grant is None or grant.revoked_at is not None:
                return None
    return claims


async def introspect(context: ServiceContext, token: str) -> dict[str, Any]:
    """RFC 7662: what a token is, for an authenticated client; `{"active": false}` otherwise."""
    if claims := await access_token_active(context, token):
        return {"active": True, "token_type": "access_token", **claims}
    async with context.read() as connection:
        row = await store.one(connection, store.RefreshTokenRow, token_hash=digest(token))
        grant = row and await store.one(connection, store.GrantRow, id=row.grant_id)
    now = utcnow()
    if row is None or grant is None or row.used_at or grant.revoked_at or row.expires_at <= now:
        return {"active": False}
    return {
        "active": True,
        "token_type": "refresh_token",
        "client_id": grant.client_id,
        "sub": grant.user_id,
        "scope": grant.scope,
        "exp": int(row.expires_at.timestamp()),
        "iss": context.system.issuer,
    }


async def userinfo(context: ServiceContext, token: str) -> dict[str, Any]:
    claims = await access_token_active(context, token)
    if claims is None:
        raise Unauthorized("the access token is not valid", code="invalid-token")
    scopes = frozenset(str(claims.get("scope", "")).split())
    if "openid" not in scopes:
        raise Unauthorized("userinfo needs a token with the openid scope", code="invalid-token")
    async with context.read() as connection:
        user = await store.one(connection, store.UserRow, id=claims["sub"])
    if user is None or user.disabled:
        raise NotFound("no such user")
    return {"sub": user.id, **tokens.profile_claims(user, scopes)}
