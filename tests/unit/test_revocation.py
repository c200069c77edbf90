"""The revocation list: each kind refuses the tokens it covers until its `until`, then forgets it;
the verifier answers a revoked token with `token-revoked`, and waits for a unit's first fill."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cleave import runtime
from cleave.auth.revocation import (
    Revocation,
    RevocationList,
    SessionRevoked,
    SubjectRevoked,
    TokenRevoked,
)
from cleave.auth.tokens import DevIssuer, TokenVerifier
from cleave.config import SystemConfig
from cleave.errors import CleaveError, ServiceUnavailable, Unauthorized
from cleave.events import Envelope
from cleave.runtime import Unit
from tests.conftest import eventually

ISSUER, AUDIENCE = "urn:cleave:test", "cleave"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def revocations(clock: Clock) -> RevocationList:
    return RevocationList(clock=clock)


@pytest.mark.parametrize(
    ("event", "claims"),
    [
        (SubjectRevoked(subject="dan", until=at(1_000_600)), {"sub": "dan", "jti": "j1"}),
        (TokenRevoked(jti="j1", until=at(1_000_600)), {"sub": "dan", "jti": "j1"}),
        (SessionRevoked(session="g1", until=at(1_000_600)), {"sub": "dan", "sid": "g1"}),
    ],
)
def test_each_kind_refuses_what_it_covers_until_its_end_then_forgets_it(
    revocations: RevocationList, clock: Clock, event: object, claims: dict[str, str]
) -> None:
    revocations.add(Revocation.of(event))  # type: ignore[arg-type]
    assert revocations.revoked(claims) is not None
    assert revocations.revoked({"sub": "erin", "jti": "j2", "sid": "g2"}) is None
    clock.now = 1_000_599.0
    assert revocations.revoked(claims) is not None
    clock.now = 1_000_600.0
    assert revocations.revoked(claims) is None
    assert len(revocations) == 0


def test_a_revocation_already_over_is_never_kept_and_a_later_one_extends(
    revocations: RevocationList, clock: Clock
) -> None:
    revocations.add(Revocation(kind="token", value="old", until=at(clock.now - 1)))
    assert len(revocations) == 0
    revocations.add(Revocation(kind="subject", value="dan", until=at(clock.now + 600)))
    revocations.add(Revocation(kind="subject", value="dan", until=at(clock.now + 60)))
    clock.now += 300
    assert revocations.revoked({"sub": "dan"}) == "subject"  # the earlier end did not shorten it
    revocations.add(Revocation(kind="token", value="j9", until=at(clock.now + 10)))
    clock.now += 301
    revocations.add(Revocation(kind="token", value="j10", until=at(clock.now + 10)))
    assert len(revocations) == 1  # the ended ones were swept as the new one came


async def test_the_verifier_refuses_a_revoked_token_with_token_revoked(
    tmp_path: Path, revocations: RevocationList
) -> None:
    issuer = DevIssuer.load_or_create(tmp_path, ISSUER, AUDIENCE)
    verifier = TokenVerifier(ISSUER, AUDIENCE, issuer, revocations=revocations)
    kept, revoked = issuer.issue("alice", ["openid"]), issuer.issue("dan", ["openid"])
    revocations.add(Revocation(kind="subject", value="dan", until=at(2_000_000_000)))
    assert (await verifier.verify(kept)).subject == "alice"
    with pytest.raises(Unauthorized) as refused:
        await verifier.verify(revoked)
    assert refused.value.code == "token-revoked"


async def test_a_unit_that_cannot_read_the_revocations_answers_503_then_reads_them(
    tmp_path: Path,
) -> None:
    issuer = DevIssuer.load_or_create(tmp_path, ISSUER, AUDIENCE)
    answers: list[list[Revocation] | None] = [None]
    calls = 0

    async def listing() -> list[Revocation]:
        nonlocal calls
        calls += 1
        if (answer := answers[-1]) is None:
            raise CleaveError("the provider is not answering")
        return answer

    revocations = RevocationList(loader=listing, load_wait_seconds=0.2)
    verifier = TokenVerifier(ISSUER, AUDIENCE, issuer, revocations=revocations)
    token, revoked = issuer.issue("alice", ["openid"]), issuer.issue("dan", ["openid"])
    with pytest.raises(ServiceUnavailable) as unavailable:
        await verifier.verify(token)  # never as if nothing were revoked
    assert unavailable.value.code == "revocations-unavailable"
    answers.append([Revocation(kind="subject", value="dan", until=at(2_000_000_000))])
    results = await asyncio.gather(verifier.verify(token), verifier.verify(token))
    assert {principal.subject for principal in results} == {"alice"}
    with pytest.raises(Unauthorized, match="revoked"):
        await verifier.verify(revoked)
    assert calls == 2  # read once it answered, then kept (events keep it current)
    answers.append([Revocation(kind="token", value="j7", until=at(2_000_000_000))])
    await revocations.reload()  # as every unit does now and then
    assert revocations.revoked({"jti": "j7"}) == "token"
    assert revocations.revoked({"sub": "dan"}) == "subject"


async def test_every_unit_subscribes_its_list_and_drops_a_malformed_revocation(
    base_config: SystemConfig,
) -> None:
    unit = Unit(base_config)  # the monolith's one unit, on its in-process broker
    try:
        until = datetime.fromtimestamp(time.time() + 600, tz=UTC)
        await unit.broker.publish(
            Envelope.of(TokenRevoked(jti="j1", until=until), source="/test", trace={})
        )
        await unit.broker.publish(
            Envelope(type=TokenRevoked.event_type, source="/test", data={"jti": "j2"})
        )
        assert unit.revocations.revoked({"jti": "j1"}) == "token"
        assert unit.revocations.revoked({"jti": "j2"}) is None  # no `until`: dropped, not retried
    finally:
        await unit.stop()


class Lines:
    """Stands in for a module's structlog logger: what it was asked to log, in order."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, str | None]] = []

    def warning(self, event: str, **fields: str) -> None:
        self.lines.append(("warning", event, fields.get("error")))

    def info(self, event: str, **fields: str) -> None:
        self.lines.append(("info", event, fields.get("error")))


async def test_a_failing_read_of_the_revocations_is_logged_once_per_error_and_once_at_its_end(
    base_config: SystemConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first fill fails a dozen times alike (a toy unit without its client secret, retried
    # every fraction of a second), then with another error; later reloads fail eight times alike.
    # Each run of one error is one line, and each recovery one more.
    script = ["no secret"] * 12 + ["502"] * 5 + [None] + ["timeout"] * 8 + [None] * 50
    monkeypatch.setattr(runtime, "FIRST_FILL_RETRY_SECONDS", 0.001)
    monkeypatch.setattr(runtime, "FIRST_FILL_RETRY_MOST_SECONDS", 0.001)
    logged = Lines()
    monkeypatch.setattr(runtime, "log", logged)

    async def listing() -> list[Revocation]:
        if error := script.pop(0):
            raise CleaveError(error)
        return []

    unit = Unit(base_config)
    unit.revocations = RevocationList(loader=listing)
    loading = asyncio.create_task(unit.keep_revocations_loaded(every=0.001))
    try:

        async def read_again() -> bool:
            return len(script) < 40

        await eventually(read_again)
    finally:
        loading.cancel()
        await asyncio.gather(loading, return_exceptions=True)
        await unit.stop()
    said = "this unit cannot read the provider's revocations yet: "
    assert logged.lines == [
        ("warning", "revocations not loaded yet", said + "no secret"),
        ("warning", "revocations not loaded yet", said + "502"),
        ("info", "revocations loaded", None),
        ("warning", "revocations not read again", said + "timeout"),
        ("info", "revocations read again", None),
    ]
