"""Revocation: the tokens the provider has ended before their expiry, refused by every unit.

The provider publishes `SubjectRevoked` (a disabled user or a removed client: all its tokens so
far), `TokenRevoked` (one access token, by `jti`) and `SessionRevoked` (every token issued from
one sign-in, by its `sid`) through its outbox. Every unit keeps a `RevocationList` in memory, fed
by a broadcast subscription the chassis adds to each unit (each of its replicas gets every event),
and filled at start from the provider's listing, so a unit started later refuses them too. An
entry is dropped at its `until`: the latest expiry of a token it covers, after which the token
is refused for having expired anyway.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from cleave.errors import CleaveError, ServiceUnavailable
from cleave.events import Event

Kind = Literal["subject", "token", "session"]
# The access-token claim each kind of revocation matches.
CLAIMS: Mapping[Kind, str] = {"subject": "sub", "token": "jti", "session": "sid"}
LISTING_PATH = "/revocations"
# How long a token check waits for a unit's first fill from the provider before answering 503.
LOAD_WAIT_SECONDS = 5.0
# How often a unit reads the listing again: the bound for what an event did not bring it (one
# published while its broker connection was down; for a unit served as a function, one taken by
# another of its instances, which share one queue).
RELOAD_SECONDS = 30.0


def revocation_queue(unit: str) -> str:
    """The subscription of one unit's revocation list: a broadcast, so every replica of the unit
    gets every revocation, on a queue of its own (see `cleave.messaging.broker`)."""
    return f"revocations-{unit}"


class SubjectRevoked(Event):
    """Every token of `subject` is refused until `until` (a disabled user or removed client)."""

    event_type = "cleave.auth.subject_revoked.v1"

    subject: str
    until: datetime


class TokenRevoked(Event):
    """The access token `jti` is refused until `until`, its expiry."""

    event_type = "cleave.auth.token_revoked.v1"

    jti: str
    until: datetime


class SessionRevoked(Event):
    """Every access token of the sign-in `session` (its `sid` claim) is refused until `until`."""

    event_type = "cleave.auth.session_revoked.v1"

    session: str
    until: datetime


REVOCATION_EVENTS: tuple[type[Event], ...] = (SubjectRevoked, TokenRevoked, SessionRevoked)


class Revocation(BaseModel):
    """One entry of the provider's listing, as its endpoint returns it."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    value: str
    until: datetime

    @classmethod
    def of(cls, event: Event) -> Revocation:
        if isinstance(event, SubjectRevoked):
            return cls(kind="subject", value=event.subject, until=event.until)
        if isinstance(event, TokenRevoked):
            return cls(kind="token", value=event.jti, until=event.until)
        if isinstance(event, SessionRevoked):
            return cls(kind="session", value=event.session, until=event.until)
        raise TypeError(f"{type(event).__name__} is not a revocation")


Loader = Callable[[], Awaitable[list[Revocation]]]


class RevocationList:
    """The revocations a unit refuses, each until its `until` (seconds of the wall clock).

    With a `loader` (the provider's listing), the first token check waits for it, and answers
    503 if the provider cannot say what it revoked: a unit never guesses that nothing was."""

    def __init__(
        self,
        *,
        loader: Loader | None = None,
        clock: Callable[[], float] = time.time,
        load_wait_seconds: float = LOAD_WAIT_SECONDS,
    ) -> None:
        self._loader = loader
        self._clock = clock
        self.load_wait_seconds = load_wait_seconds
        self._until: dict[tuple[Kind, str], float] = {}
        self._filled = asyncio.Event()
        if loader is None:
            self._filled.set()
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._filled.is_set()

    async def ensure_loaded(self) -> None:
        """Fill the list from the loader once; concurrent callers share the one attempt."""
        if self._filled.is_set() or self._loader is None:
            return
        async with self._lock:
            if not self._filled.is_set():
                await self.reload()

    async def reload(self) -> None:
        """Read the provider's listing again and add what it holds (what is listed is in force)."""
        if self._loader is None:
            return
        try:
            async with asyncio.timeout(self.load_wait_seconds):
                self.extend(await self._loader())
        except (CleaveError, OSError, TimeoutError) as error:
            raise ServiceUnavailable(
                f"this unit cannot read the provider's revocations yet: {error or 'timeout'}",
                code="revocations-unavailable",
            ) from None
        self._filled.set()

    def add(self, revocation: Revocation) -> None:
        key = (revocation.kind, revocation.value)
        until = revocation.until.timestamp()
        now = self._clock()
        # Dropped here rather than by a timer: revocations are rare, a sweep per one is cheap.
        for stale in [k for k, ends in self._until.items() if ends <= now]:
            del self._until[stale]
        if until > now:
            self._until[key] = max(until, self._until.get(key, until))

    def extend(self, revocations: Iterable[Revocation]) -> None:
        for revocation in revocations:
            self.add(revocation)

    def revoked(self, claims: Mapping[str, Any]) -> Kind | None:
        """Which revocation covers a token with these claims, if any."""
        now = self._clock()
        for kind, claim in CLAIMS.items():
            value = claims.get(claim)
            if value is None:
                continue
            ends = self._until.get((kind, str(value)))
            if ends is not None:
                if ends > now:
                    return kind
                del self._until[(kind, str(value))]
        return None

    def __len__(self) -> int:
        now = self._clock()
        return sum(1 for ends in self._until.values() if ends > now)


async def fetch_revocations(
    issuer: str, token: str, *, transport: httpx.AsyncBaseTransport | None = None
) -> list[Revocation]:
    """The provider's current revocations, read with a unit's own token."""
    url = issuer.rstrip("/") + LISTING_PATH
    try:
        async with httpx.AsyncClient(transport=transport, timeout=10) as http:
            response = await http.get(url, headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as error:
        raise CleaveError(f"cannot read the revocations at {url}: {error}") from None
    if response.status_code != 200:
        raise CleaveError(f"the revocations at {url} answered {response.status_code}")
    body = response.json()
    return [Revocation.model_validate(entry) for entry in body.get("revocations", ())]
