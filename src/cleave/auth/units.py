"""Who a unit is to the other units: its confidential client at the provider (`unit-<unit>`),
the secret it proves itself with, and the client-credentials tokens it sends with every call.

Secrets come from `CLEAVE_CLIENT_SECRET_UNIT_<UNIT>` (a Kubernetes Secret hands them over), else
from `var/<topology>/unit-clients.json`, which the provider's unit writes owner-only when it
registers the clients. A token is fetched once for every concurrent caller and again before it
expires, so a call never waits on the provider while its token is still good.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cleave.errors import CleaveError, ServiceUnavailable

UNIT_SCOPE = "cleave:unit"
CLIENT_PREFIX = "unit-"
SECRETS_FILE = "unit-clients.json"

# The end user a call acts for: set from the request's principal, carried to other units.
_on_behalf_of: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cleave_on_behalf_of", default=None
)


def unit_client_id(unit: str) -> str:
    return f"{CLIENT_PREFIX}{unit}"


def is_unit(subject: str, client_id: str | None, scopes: frozenset[str]) -> bool:
    """Whether a verified token is a unit's own: its client's, for itself, with the unit scope
    (a person's token names the client they signed in through, never themselves)."""
    return subject == client_id and subject.startswith(CLIENT_PREFIX) and UNIT_SCOPE in scopes


def secret_variable(client_id: str) -> str:
    """The environment variable holding a client's secret, as every client's is named."""
    return "CLEAVE_CLIENT_SECRET_" + "".join(c if c.isalnum() else "_" for c in client_id).upper()


def unit_secret(state_dir: Path, unit: str) -> str | None:
    client_id = unit_client_id(unit)
    if secret := os.environ.get(secret_variable(client_id)):
        return secret
    secret = _read(state_dir / SECRETS_FILE).get(client_id)
    return str(secret) if secret else None


def ensure_unit_secrets(state_dir: Path, units: Iterable[str]) -> dict[str, str]:
    """Every unit's client id and secret: from the environment, the file, or generated now (and
    kept in the file, owner-only). Units starting together agree, through a lock on the file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / SECRETS_FILE
    with _locked(state_dir / f".{SECRETS_FILE}.lock"):
        kept = _read(path)
        wanted: dict[str, str] = {}
        generated: dict[str, str] = {}
        for unit in units:
            client_id = unit_client_id(unit)
            if given := os.environ.get(secret_variable(client_id)):
                wanted[client_id] = given  # never written down: its Secret holds it
                continue
            if not kept.get(client_id):
                generated[client_id] = secrets.token_urlsafe(32)
            wanted[client_id] = kept.get(client_id) or generated[client_id]
        if generated:
            draft = path.with_suffix(".tmp")
            descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                json.dump({**kept, **generated}, handle, indent=2)
            draft.replace(path)
    return wanted


def _read(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(key): str(value) for key, value in data.items()} if isinstance(data, dict) else {}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


# --- the end user a call acts for --------------------------------------------------------------


def on_behalf_of() -> str | None:
    """The end user the current call acts for, if any (a person's request, or a saga of theirs)."""
    return _on_behalf_of.get()


@contextlib.contextmanager
def acting_for(subject: str | None) -> Iterator[None]:
    token = _on_behalf_of.set(subject)
    try:
        yield
    finally:
        _on_behalf_of.reset(token)


def act_for(subject: str | None) -> None:
    """Act for `subject` for the rest of the current task (a request, once its token is checked)."""
    _on_behalf_of.set(subject)


# --- the unit's tokens -------------------------------------------------------------------------

Fetch = Callable[[], Awaitable[tuple[str, float]]]


class UnitTokens:
    """One unit's token cache: fetched once for all concurrent callers, refreshed once `refresh_at`
    of its lifetime has passed, so calls keep their token while a new one is on its way."""

    def __init__(
        self,
        client_id: str,
        fetch: Fetch,
        *,
        refresh_at: float = 0.8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self._fetch = fetch
        self._refresh_at = refresh_at
        self._clock = clock
        self._token: str | None = None
        self._stale_at = float("-inf")
        self._expires_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0  # what tests read

    async def token(self) -> str:
        if self._token is not None and self._clock() < self._stale_at:
            return self._token
        async with self._lock:
            now = self._clock()
            if self._token is None or now >= self._stale_at:
                try:
                    token, lifetime = await self._fetch()
                except (CleaveError, OSError) as error:
                    if self._token is not None and now < self._expires_at:
                        return self._token  # the old one is still good: try again next call
                    raise ServiceUnavailable(
                        f"{self.client_id} has no token for calls to other units: {error}",
                        code="credentials-unavailable",
                    ) from None
                self.fetches += 1
                self._token = token
                self._stale_at = now + lifetime * self._refresh_at
                self._expires_at = now + lifetime
            return self._token


def client_credentials(
    issuer: str,
    client_id: str,
    secret: Callable[[], str | None],
    *,
    transport: Any = None,
) -> Fetch:
    """Fetch a unit's token with the client credentials grant; the secret is read at each fetch
    (the provider's unit may write it after this unit has started)."""
    from cleave.auth.client import fetch_client_credentials

    async def fetch() -> tuple[str, float]:
        known = secret()
        if not known:
            raise CleaveError(f"no secret for {client_id} (set {secret_variable(client_id)})")
        issued = await fetch_client_credentials(
            issuer, client_id, known, [UNIT_SCOPE], transport=transport
        )
        return str(issued["access_token"]), float(issued.get("expires_in") or 60)

    return fetch
