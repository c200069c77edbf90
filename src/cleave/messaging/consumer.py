"""Idempotent consumers: the inbox row and the handler's effect commit in one transaction.

A delivery is retried with backoff; after `max_attempts` failures the message is parked in the
service's dead-letter table with its error, to be listed and replayed with `cleave dlq`; one
whose data breaks its event's schema is parked at the first failure. While the service's own
database is unreachable no attempt is spent: the message waits for it (it could not be parked
there either), so a database restart dead-letters nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.statements import Prepared
from cleave.data.tables import dead_letters, inbox
from cleave.errors import CleaveError, DatabaseUnavailable, NotFound
from cleave.events import Envelope, EnvelopeError
from cleave.service import ServiceContext, Subscription
from cleave.telemetry import EVENTS_CONSUMED, trace_context_of, tracer

# What a message that is not a CloudEvent is parked under: it names no handler and no type.
UNREADABLE = "(not a CloudEvent)"
# How long a message waits at most between two tries while its service's database is down.
STORE_WAIT_CAP_SECONDS = 2.0


class RetryLater(CleaveError):
    """A handler failed and has attempts left: the broker should deliver the message again."""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    service: str
    handler: str
    type: str
    message_id: str
    error: str
    attempts: int
    failed_at: datetime
    replayed_at: datetime | None


class Consumer:
    """Applies a service's subscriptions to delivered envelopes, at most once each."""

    def __init__(
        self,
        context: ServiceContext,
        subscriptions: Sequence[Subscription[Any]],
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 0.05,
    ) -> None:
        self.context = context
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._by_type: dict[str, list[Subscription[Any]]] = {}
        for subscription in subscriptions:
            self._by_type.setdefault(subscription.event.event_type, []).append(subscription)

    @property
    def types(self) -> list[str]:
        return list(self._by_type)

    async def deliver(self, envelope: Envelope) -> None:
        """The broker's callback: returns once every handler has applied or parked the message."""
        await asyncio.gather(
            *(self._deliver_to(sub, envelope) for sub in self._by_type.get(envelope.type, ()))
        )

    async def deliver_attempt(self, envelope: Envelope, attempt: int) -> None:
        """One delivery from a broker that counts the receives itself (an SQS event source):
        each handler tries once; one that fails before its last attempt raises `RetryLater`, so
        the broker delivers the message again later and the inbox skips the handlers that did."""
        settled = await asyncio.gather(
            *(
                self._attempt_unless_store_down(sub, envelope, attempt)
                for sub in self._by_type.get(envelope.type, ())
            )
        )
        if not all(settled):
            raise RetryLater(f"{envelope.type} {envelope.id}: attempt {attempt} failed")

    async def _attempt_unless_store_down(
        self, subscription: Subscription[Any], envelope: Envelope, attempt: int
    ) -> bool:
        try:
            return await self._attempt(subscription, envelope, attempt)
        except DatabaseUnavailable as error:
            self._waiting_for_store(subscription, envelope, error, waits=1)
            return False

    async def _deliver_to(self, subscription: Subscription[Any], envelope: Envelope) -> None:
        attempt, waits = 1, 0
        while True:
            try:
                if await self._attempt(subscription, envelope, attempt):
                    return
            except DatabaseUnavailable as error:
                waits += 1
                self._waiting_for_store(subscription, envelope, error, waits)
                await asyncio.sleep(
                    min(STORE_WAIT_CAP_SECONDS, self.backoff_seconds * 2 ** min(waits, 8))
                )
                continue
            await asyncio.sleep(self.backoff_seconds * 2 ** (attempt - 1))
            attempt += 1

    def _waiting_for_store(
        self, subscription: Subscription[Any], envelope: Envelope, error: Exception, waits: int
    ) -> None:
        self._count(subscription, "waited")
        if waits == 1 or waits % 30 == 0:  # a line when it starts, then one a minute or so
            self.context.log.warning(
                "database unavailable: the message waits for it",
                handler=subscription.name,
                message_id=envelope.id,
                waits=waits,
                error=_describe(error),
            )

    async def _attempt(
        self, subscription: Subscription[Any], envelope: Envelope, attempt: int
    ) -> bool:
        """Apply once: True when settled (applied, a duplicate, or parked), False to try again;
        `DatabaseUnavailable` (from the handler or from parking) is for the caller to wait out."""
        log = self.context.log.bind(handler=subscription.name, message_id=envelope.id)
        try:
            applied = await self.apply(subscription, envelope)
        except (asyncio.CancelledError, DatabaseUnavailable):
            raise
        except Exception as error:
            log.warning("handler failed", attempt=attempt, error=_describe(error))
            # Data that breaks the event's schema stays broken however often it is retried.
            if attempt < self.max_attempts and not isinstance(error, ValidationError):
                self._count(subscription, "retried")
                return False
            await self._park(subscription, envelope, error, attempt)
            self._count(subscription, "dead_lettered")
            log.error("message dead-lettered", attempts=attempt, type=envelope.type)
            return True
        self._count(subscription, "applied" if applied else "duplicate")
        return True

    def _count(self, subscription: Subscription[Any], outcome: str) -> None:
        EVENTS_CONSUMED.labels(self.context.name, subscription.name, outcome).inc()

    async def apply(
        self, subscription: Subscription[Any], envelope: Envelope, *, replaying: int | None = None
    ) -> bool:
        """Apply one message in one transaction; False if the inbox shows it was applied before."""
        with tracer.start_as_current_span(
            f"process {envelope.type}",
            context=trace_context_of(envelope.trace_carrier),
            kind=SpanKind.CONSUMER,
            attributes={
                "cleave.service": self.context.name,
                "messaging.operation.type": "process",
                "messaging.destination.name": envelope.type,
                "messaging.message.id": envelope.id,
                "messaging.consumer.group.name": self.context.name,
            },
        ):
            return await self._apply(subscription, envelope, replaying)

    async def _apply(
        self, subscription: Subscription[Any], envelope: Envelope, replaying: int | None
    ) -> bool:
        async with self.context.unit_of_work() as uow:
            if replaying is not None:
                await uow.connection.execute(
                    update(dead_letters)
                    .where(dead_letters.c.id == replaying)
                    .values(replayed_at=utcnow())
                )
            if not await _claim(uow.connection, envelope, subscription.name):
                return False
            event = subscription.event.model_validate(envelope.data)
            await subscription.handler(event, uow)
            return True

    async def _park(
        self, subscription: Subscription[Any], envelope: Envelope, error: Exception, attempts: int
    ) -> None:
        async with self.context.unit_of_work() as uow:
            if await _parked_before(uow.connection, envelope.id, subscription.name):
                return  # the same message delivered again after it was parked
            await uow.connection.execute(
                dead_letters.insert().values(
                    message_id=envelope.id,
                    handler=subscription.name,
                    type=envelope.type,
                    envelope=envelope.to_json(),
                    error=_describe(error),
                    attempts=attempts,
                    failed_at=utcnow(),
                )
            )

    async def park_unreadable(self, body: bytes, message_id: str, reason: str) -> None:
        """Keep a message that is not a CloudEvent in the dead-letter table, as received, for a
        person to read: where no broker-side parking queue is at hand (a function's event)."""
        async with self.context.unit_of_work() as uow:
            if await _parked_before(uow.connection, message_id[:64], UNREADABLE):
                return
            await uow.connection.execute(
                dead_letters.insert().values(
                    message_id=message_id[:64],
                    handler=UNREADABLE,
                    type=UNREADABLE,
                    envelope=body.decode("utf-8", errors="replace"),
                    error=reason,
                    attempts=1,
                    failed_at=utcnow(),
                )
            )

    async def replay(self, dead_letter_id: int) -> bool:
        """Apply a parked message again; True if it took effect, False if already applied."""
        async with self.context.read() as connection:
            row = (
                await connection.execute(
                    select(dead_letters).where(dead_letters.c.id == dead_letter_id)
                )
            ).one_or_none()
        if row is None:
            raise NotFound(f"no dead letter {dead_letter_id} in {self.context.name}")
        if row.replayed_at is not None:
            raise CleaveError(f"dead letter {dead_letter_id} was replayed at {row.replayed_at}")
        try:
            envelope = Envelope.from_json(row.envelope)
        except EnvelopeError as error:
            raise CleaveError(
                f"dead letter {dead_letter_id} is not a CloudEvent ({error}): it can only be read"
            ) from None
        for subscription in self._by_type.get(envelope.type, ()):
            if subscription.name == row.handler:
                return await self.apply(subscription, envelope, replaying=dead_letter_id)
        raise CleaveError(f"{self.context.name} no longer handles {row.handler} for {row.type}")


async def list_dead_letters(
    context: ServiceContext, *, include_replayed: bool = False
) -> list[DeadLetter]:
    query = select(dead_letters).order_by(dead_letters.c.id)
    if not include_replayed:
        query = query.where(dead_letters.c.replayed_at.is_(None))
    async with context.read() as connection:
        rows = (await connection.execute(query)).all()
    return [
        DeadLetter(
            id=row.id,
            service=context.name,
            handler=row.handler,
            type=row.type,
            message_id=row.message_id,
            error=row.error,
            attempts=row.attempts,
            failed_at=row.failed_at,
            replayed_at=row.replayed_at,
        )
        for row in rows
    ]


async def count_dead_letters(context: ServiceContext) -> int:
    """Dead letters not yet replayed."""
    query = select(func.count()).where(dead_letters.c.replayed_at.is_(None))
    async with context.read() as connection:
        return int((await connection.execute(query)).scalar_one())


def _inbox_claim(dialect: Any) -> Prepared[Any]:
    columns = ("message_id", "handler", "type", "received_at")
    values = {column: bindparam(f"new_{column}", type_=inbox.c[column].type) for column in columns}
    return Prepared(dialect.insert(inbox).values(values).on_conflict_do_nothing())


_CLAIMS = {"postgresql": _inbox_claim(postgresql), "sqlite": _inbox_claim(sqlite)}


async def _claim(connection: AsyncConnection, envelope: Envelope, handler: str) -> bool:
    claimed = await _CLAIMS[connection.dialect.name].rowcount(
        connection,
        new_message_id=envelope.id,
        new_handler=handler,
        new_type=envelope.type,
        new_received_at=utcnow(),
    )
    return claimed == 1


async def _parked_before(connection: AsyncConnection, message_id: str, handler: str) -> bool:
    """Whether this message is parked for this handler and not replayed yet."""
    query = select(dead_letters.c.id).where(
        dead_letters.c.message_id == message_id,
        dead_letters.c.handler == handler,
        dead_letters.c.replayed_at.is_(None),
    )
    return (await connection.execute(query.limit(1))).first() is not None


def _describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
