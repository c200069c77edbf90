"""The unit of work: one transaction on a service's database, with the events it publishes.

The events go to the outbox in the same transaction, so an event leaves if and only if the change
that caused it committed; after the commit the relay is woken at once instead of at its next poll.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from opentelemetry import trace
from sqlalchemy import bindparam
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.statements import Prepared
from cleave.data.tables import outbox
from cleave.events import Envelope, Event
from cleave.telemetry import current_carrier

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
        self._after_commit: list[Callable[[], None]] = []
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

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once the transaction has committed (never if it rolls back)."""
        self._after_commit.append(callback)

    async def __aenter__(self) -> Self:
        self._started = time.perf_counter()
        self._transaction = self.context.database.transaction()
        self._connection = await self._transaction.__aenter__()
        return self

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
                    self._note(committed=False)
                raise
            self._notify.add(OUTBOX_SIGNAL)
        committed = False
        try:
            suppressed = await transaction.__aexit__(exc_type, exc, tb)
            committed = exc is None
        finally:
            self._connection = None
            self._note(committed=committed)
        if exc is None:
            for name in self._notify:
                self.context.signal(name).set()
            for callback in self._after_commit:
                callback()
        return suppressed

    def _note(self, *, committed: bool) -> None:
        """The transaction as an event of the span it ran in (the request, saga step or message
        it was part of), not a span of its own: an event costs 6 µs, a span 14, and a trace
        reader follows an order by those hops, each of which now lists what it committed."""
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(
                f"transaction {self.context.name}",
                {
                    **self.context.database.span_attributes,
                    "cleave.transaction.committed": committed,
                    "cleave.transaction.duration_ms": (time.perf_counter() - self._started) * 1e3,
                    "cleave.transaction.events": len(self._events),
                },
            )


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
