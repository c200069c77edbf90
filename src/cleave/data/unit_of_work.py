"""The unit of work: one transaction on a service's database, with the events it publishes.

The events go to the outbox in the same transaction, so an event leaves if and only if the change
that caused it committed; after the commit the relay is woken at once instead of at its next poll.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.statements import Prepared
from cleave.data.tables import outbox
from cleave.events import Envelope, Event
from cleave.telemetry import current_carrier, tracer

if TYPE_CHECKING:
    # Only the type: at run time the unit of work needs the context's database, name and signals.
    from cleave.service.context import ServiceContext

OUTBOX_SIGNAL = "outbox"
# On PostgreSQL the outbox's trigger NOTIFYs this channel with the inserting connection's origin
# (migration c0004), which wakes relays in other processes; the one here is woken in-process.
OUTBOX_CHANNEL = "cleave_outbox"
_INSERT_OUTBOX = Prepared(
    outbox.insert().values(
        {
            column: bindparam(f"new_{column}", type_=outbox.c[column].type)
            for column in ("message_id", "type", "envelope", "created_at", "attempts")
        }
    )
)


class UnitOfWork:
    """One transaction on the service's database, with the events it publishes.

    Handlers never commit: the block that opened the unit of work commits on a clean exit, and the
    collected events are written to the outbox in that same transaction. After the commit, the
    relay (and any worker named with `notify`) is woken at once instead of at its next poll.
    """

    def __init__(self, context: ServiceContext) -> None:
        self.context = context
        self._events: list[Envelope] = []
        self._notify: set[str] = set()
        self._transaction: contextlib.AbstractAsyncContextManager[AsyncConnection] | None = None
        self._connection: AsyncConnection | None = None

    @property
    def connection(self) -> AsyncConnection:
        if self._connection is None:
            raise RuntimeError("the unit of work is not open: use `async with`")
        return self._connection

    def publish(self, event: Event, *, subject: str | None = None) -> Envelope:
        envelope = Envelope.of(
            event, source=f"/cleave/{self.context.name}", subject=subject, trace=current_carrier()
        )
        self._events.append(envelope)
        return envelope

    def notify(self, signal: str) -> None:
        """Wake the named worker of this service once the transaction has committed."""
        self._notify.add(signal)

    async def __aenter__(self) -> Self:
        # One span per transaction, not per statement: a hop to the database, and the parent of
        # the events it publishes.
        self._span = tracer.start_span(
            f"transaction {self.context.name}",
            kind=SpanKind.CLIENT,
            attributes=self.context.database.span_attributes,
        )
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        self._transaction = self.context.database.transaction()
        try:
            self._connection = await self._transaction.__aenter__()
        except BaseException:
            self._end_span()
            raise
        return self

    def _end_span(self) -> None:
        otel_context.detach(self._token)
        self._span.end()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._transaction is not None
        transaction, self._transaction = self._transaction, None
        if exc is None and self._events:
            try:
                await _INSERT_OUTBOX.many(self.connection, _outbox_rows(self._events))
            except BaseException as error:
                try:
                    await transaction.__aexit__(type(error), error, error.__traceback__)
                finally:
                    self._end_span()
                raise
            self._notify.add(OUTBOX_SIGNAL)
        try:
            suppressed = await transaction.__aexit__(exc_type, exc, tb)
        finally:
            self._connection = None
            self._end_span()
        if exc is None:
            for name in self._notify:
                self.context.signal(name).set()
        return suppressed


def _outbox_rows(envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
    now = utcnow()
    return [
        {
            "new_message_id": envelope.id,
            "new_type": envelope.type,
            "new_envelope": envelope.to_json(),
            "new_created_at": now,
            "new_attempts": 0,
        }
        for envelope in envelopes
    ]
