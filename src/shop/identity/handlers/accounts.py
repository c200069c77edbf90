"""Accounts and signing in: creating users, self-service sign-up, the password check with its
throttle, and the provider's own browser sessions."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.errors import Conflict
from cleave.service import ServiceContext, UnitOfWork
from shop.identity import store
from shop.identity.contract import UserRegistered
from shop.identity.domain import (
    Account,
    Attempts,
    ThrottlePolicy,
    after_failure,
    check_password_strength,
    is_locked,
    validate_account,
)
from shop.identity.handlers.passwords import hash_password, password_matches
from shop.identity.handlers.settings import lifetimes, throttle_policy
from shop.identity.tokens import digest, random_token


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
    if await store.user_by_email(uow.connection, account.email) is not None:
        raise Conflict("that email is registered already", code="email-taken")
    password_hash = password_hash or await hash_password(account.password)
    return await _insert_user(uow, account, password_hash, user_id=user_id, admin=admin)


async def _insert_user(
    uow: UnitOfWork,
    account: Account,
    password_hash: str,
    *,
    user_id: str | None = None,
    admin: bool = False,
) -> str:
    user_id = user_id or uuid.uuid4().hex
    await ensure_id_is_free(uow.connection, user_id)
    row = store.UserRow(
        id=user_id,
        email=account.email,
        name=account.name,
        password_hash=password_hash,
        disabled=False,
        created_at=utcnow(),
        admin=admin,
    )
    await store.insert_user(uow.connection, row)
    return user_id


async def sign_up(uow: UnitOfWork, account: Account) -> str | None:
    """Self-service sign-up. A taken email answers exactly like a new one (None here, and the
    same page to the person), so sign-up never reveals who is registered."""
    account = validate_account(account)
    await asyncio.to_thread(check_password_strength, account)  # CPU-bound: off the loop
    password_hash = await hash_password(account.password)
    if await store.user_by_email(uow.connection, account.email) is not None:
        return None
    user_id = await _insert_user(uow, account, password_hash)
    uow.publish(
        UserRegistered(user_id=user_id, email=account.email, name=account.name), subject=user_id
    )
    return user_id


async def ensure_id_is_free(connection: AsyncConnection, principal_id: str) -> None:
    """Users and clients share one namespace of subjects: a client id never equals a user id,
    so no client-credentials token can ever name a person (RFC 9700 §4.15)."""
    if await store.user_by_id(connection, principal_id) is not None:
        raise Conflict(f"{principal_id!r} is a user's id: no client may take it", code="id-taken")
    if await store.client_by_id(connection, principal_id) is not None:
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
        user = await store.user_by_email(connection, email.strip().lower())
        attempts = {key: await _attempts(connection, key) for key in keys}
    if any(is_locked(state, now) for state in attempts.values()):
        return SignIn(None, locked=True)
    delay = max(keys[key].delay(state.failures if state else 0) for key, state in attempts.items())
    if delay:
        await asyncio.sleep(delay)
    usable = user if user is not None and not user.disabled else None
    matches = await password_matches(usable.password_hash if usable else None, password)
    async with context.unit_of_work() as uow:
        if usable is not None and matches:
            await store.clear_attempts(uow.connection, next(iter(keys)))
            return SignIn(usable)
        for key, key_policy in keys.items():
            await _record_failure(uow.connection, key, key_policy, attempts[key], now)
    return SignIn(None)


async def _attempts(connection: AsyncConnection, key: str) -> Attempts | None:
    row = await store.attempts_by_key(connection, key)
    return None if row is None else Attempts(row.failures, row.first_failure_at, row.locked_until)


async def _record_failure(
    connection: AsyncConnection,
    key: str,
    policy: ThrottlePolicy,
    previous: Attempts | None,
    now: datetime,
) -> None:
    state = after_failure(previous, policy, now)
    row = store.SignInAttemptsRow(
        key=key,
        failures=state.failures,
        first_failure_at=state.first_failure_at,
        locked_until=state.locked_until,
    )
    if previous is None:
        await store.insert_attempts(connection, row)
    else:
        await store.update_attempts(connection, row)


async def start_session(uow: UnitOfWork, user_id: str, *, token: str | None = None) -> str:
    """A signed-in session; `token` is the cookie's value, new unless a pact's state names it."""
    token = token or random_token()
    now = utcnow()
    await store.insert_session(
        uow.connection,
        store.SessionRow(
            id_hash=digest(token),
            user_id=user_id,
            created_at=now,
            expires_at=now + lifetimes(uow.context).session,
        ),
    )
    return token


async def session_user(
    context: ServiceContext, token: str | None
) -> tuple[store.UserRow, datetime] | None:
    """The signed-in user of a session cookie, and when they signed in."""
    if not token:
        return None
    async with context.read() as connection:
        session = await store.session_by_hash(connection, digest(token))
        if session is None or session.expires_at <= utcnow():
            return None
        user = await store.user_by_id(connection, session.user_id)
    if user is None or user.disabled:
        return None
    return user, session.created_at


async def end_session(uow: UnitOfWork, token: str | None) -> None:
    if token:
        await store.delete_session(uow.connection, digest(token))
