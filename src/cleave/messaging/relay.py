"""The outbox relay: delivers committed outbox rows to the broker, at least once.

It is woken by the committing unit of work, so an event leaves within milliseconds; the poll
interval is only a safety net (rows committed by another process, a broker that was down). A row
is marked delivered only after the broker has confirmed it, so a crash between commit and
delivery loses nothing: the relay sends it again on restart, and the consumer's inbox drops the
duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, NamedTuple

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from sqlalchemy import BigInteger, String, any_, bindparam, column, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.clock import utcnow
from cleave.data.database import UtcDateTime
from cleave.data.statements import Prepared
from cleave.data.tables import outbox
from cleave.data.unit_of_work import OUTBOX_CHANNEL, OUTBOX_SIGNAL
from cleave.events import Envelope
from cleave.messaging.broker import Broker
from cleave.service import ServiceContext
from cleave.telemetry import EVENTS_PUBLISHED, trace_context_of, tracer


@dataclass(frozen=True)
class OutboxState:
    pending: int
    delivered: int
    oldest_pending_age_seconds: float | None


class OutboxRelay:
    def __init__(
        self,
        context: ServiceContext,
        broker: Broker,
        *,
        poll_seconds: float = 1.0,
        max_in_flight: int = 256,
        retry_seconds: float = 0.5,
    ) -> None:
        self.context = context
        self.broker = broker
        self.poll_seconds = poll_seconds
        self.max_in_flight = max_in_flight
        self.retry_seconds = retry_seconds
        self._signal = context.signal(OUTBOX_SIGNAL)
        self._in_flight: set[int] = set()
        self._delivered: list[int] = []
        self._failed: dict[int, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # Whether the last read filled the room: then more rows may wait, to be read once it
        # frees; else every pending row is in flight, or wakes the relay when it commits.
        self._backlog = False
        self._recording = asyncio.Lock()
        self.published = 0

    async def run(self) -> None:
        """Deliver until cancelled."""
        async with self.context.database.listen(OUTBOX_CHANNEL, self._on_notify):
            try:
                while True:
                    await self.drain_once()
                    backing_off = bool(self._failed) and not self._in_flight
                    await self._signal.wait(
                        self.retry_seconds if backing_off else self.poll_seconds
                    )
            finally:
                for task in self._tasks:
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                with contextlib.suppress(Exception):
                    await self._record_outcomes()

    def _on_notify(self, origin: str) -> None:
        # Commits made through this database woke the relay already, in-process.
        if origin != self.context.database.origin:
            self._signal.set()

    async def deliver_pending(self) -> int:
        """Deliver what is pending now, wait for the broker and record it, then return how many
        were published (a scheduled function's tick: no loop, no wake-up). Stops at the first
        round with a failure, leaving the row for the next tick, as the loop would back off."""
        published = self.published
        while await self.drain_once():
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._failed:
                break
        await self._record_outcomes()
        return self.published - published

    async def drain_once(self) -> int:
        """Record finished deliveries, then start publishing what is pending; returns how many."""
        await self._record_outcomes()
        room = self.max_in_flight - len(self._in_flight)
        if room <= 0:
            return 0
        async with self.context.read() as connection:
            found = await _PENDING.rows(connection, limit=room + len(self._in_flight))
        self._backlog = len(found) >= room + len(self._in_flight)
        # Filtered here, not with a NOT IN that grows with the rows in flight (a statement built
        # and its cache key computed at every drain, its parameters growing with each row).
        rows = [row for row in found if row.id not in self._in_flight][:room]
        if not rows:
            return 0
        batch = _Batch(
            tracer.start_span(
                f"relay publish {self.context.name}",
                attributes={
                    "cleave.service": self.context.name,
                    "messaging.system": self.broker.name,
                    "messaging.operation.type": "publish",
                    "messaging.batch.message_count": len(rows),
                },
            ),
            len(rows),
        )
        for row in rows:
            self._in_flight.add(row.id)
            task = asyncio.create_task(self._publish(row.id, row.envelope, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return len(rows)

    async def _publish(self, row_id: int, raw: str, batch: _Batch) -> None:
        failed = True
        try:
            envelope = Envelope.from_json(raw)
            # In the trace of the work that published the event, linked to the relay's batch;
            # an event published outside any trace hangs under the batch instead.
            carrier = envelope.trace_carrier
            with tracer.start_as_current_span(
                f"publish {envelope.type}",
                context=trace_context_of(carrier)
                if carrier
                else trace.set_span_in_context(batch.span),
                links=[Link(batch.span.get_span_context())],
                kind=SpanKind.PRODUCER,
                attributes={
                    "cleave.service": self.context.name,
                    "messaging.system": self.broker.name,
                    "messaging.operation.type": "publish",
                    "messaging.destination.name": envelope.type,
                    "messaging.message.id": envelope.id,
                },
            ):
                await self.broker.publish(envelope)
            EVENTS_PUBLISHED.labels(self.context.name, envelope.type).inc()
        except asyncio.CancelledError:
            self._in_flight.discard(row_id)
            raise
        except Exception as error:
            self._failed[row_id] = f"{type(error).__name__}: {error}"
            self.context.log.warning("relay publish failed", row=row_id, error=str(error))
        else:
            failed = False
            self._delivered.append(row_id)
            self.published += 1
        finally:
            batch.done(failed=failed)
        # Woken to record outcomes and refill once half the room is free, not at every confirm:
        # a transaction per confirm (and a refill of one row) would cap the rate at the database's.
        # With nothing left to read (no backlog, no failure to publish again), the last confirm
        # only records: the outbox is not read again for rows that would have woken the relay.
        outstanding = self._outstanding()
        if self._failed or self._backlog:
            if outstanding <= self.max_in_flight // 2:
                self._signal.set()
        elif outstanding == 0:
            task = asyncio.create_task(self._record_or_wake())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _record_or_wake(self) -> None:
        try:
            await self._record_outcomes()
        except Exception as error:  # the loop's next drain records them, as after any failure
            self.context.log.warning("relay could not record deliveries", error=str(error))
            self._signal.set()

    def _outstanding(self) -> int:
        """Publishes started and not yet answered by the broker."""
        return len(self._in_flight) - len(self._delivered) - len(self._failed)

    async def _record_outcomes(self) -> None:
        """Write what finished to the outbox. The rows stay in flight, and in these lists, until
        that write commits: if it fails they are written at the next drain, never forgotten."""
        async with self._recording:  # the loop's drain and a last confirm's, one at a time
            await self._record_held()

    async def _record_held(self) -> None:
        delivered, failed = list(self._delivered), dict(self._failed)
        if not delivered and not failed:
            return
        # One UPDATE, atomic on its own, when nothing failed (the usual case): no BEGIN/COMMIT.
        database = self.context.database
        async with database.write_one() if not failed else database.transaction() as connection:
            if delivered:
                await _mark_delivered(connection, delivered)
            for row_id, error in failed.items():
                await connection.execute(_FAILED, {"row_id": row_id, "error": error})
        # Only what was written: publishes that finished meanwhile wait for the next drain.
        del self._delivered[: len(delivered)]
        for row_id in failed:
            self._failed.pop(row_id, None)
        self._in_flight.difference_update(delivered)
        self._in_flight.difference_update(failed)


class _PendingRow(NamedTuple):
    id: int
    envelope: str


_PENDING = Prepared(
    select(outbox.c.id, outbox.c.envelope)
    .where(outbox.c.delivered_at.is_(None))
    .order_by(outbox.c.id)
    .limit(bindparam("limit")),
    _PendingRow,
)


def _marking_delivered(which: Any) -> Prepared[Any]:
    return Prepared(
        update(outbox)
        .where(which)
        .values(delivered_at=bindparam("now", type_=UtcDateTime), attempts=outbox.c.attempts + 1)
    )


# The ids as one parameter whatever their number, so the statement is built once: an array on
# PostgreSQL, a JSON array read by json_each on SQLite.
_MARK_DELIVERED = {
    "postgresql": _marking_delivered(
        outbox.c.id == any_(bindparam("ids", type_=ARRAY(BigInteger)))
    ),
    "sqlite": _marking_delivered(
        outbox.c.id.in_(
            select(column("value")).select_from(func.json_each(bindparam("ids", type_=String)))
        )
    ),
}


_FAILED = (
    update(outbox)
    .where(outbox.c.id == bindparam("row_id"))
    .values(attempts=outbox.c.attempts + 1, last_error=bindparam("error"))
)


async def _mark_delivered(connection: AsyncConnection, ids: list[int]) -> None:
    postgresql = connection.dialect.name == "postgresql"
    await _MARK_DELIVERED[connection.dialect.name].rowcount(
        connection, ids=ids if postgresql else json.dumps(ids), now=utcnow()
    )


class _Batch:
    """One drain's publishing, a root span of its own that ends when its last publish does."""

    def __init__(self, span: Span, size: int) -> None:
        self.span = span
        self.left = size
        self.failed = 0

    def done(self, *, failed: bool) -> None:
        self.left -= 1
        self.failed += failed
        if self.left == 0:
            if self.failed:
                self.span.set_attribute("cleave.relay.failed", self.failed)
                self.span.set_status(StatusCode.ERROR, f"{self.failed} not published")
            self.span.end()


async def outbox_state(context: ServiceContext) -> OutboxState:
    async with context.read() as connection:
        pending, oldest = (
            await connection.execute(
                select(func.count(), func.min(outbox.c.created_at)).where(
                    outbox.c.delivered_at.is_(None)
                )
            )
        ).one()
        delivered = (
            await connection.execute(select(func.count()).where(outbox.c.delivered_at.is_not(None)))
        ).scalar_one()
    age = None
    if oldest is not None:
        oldest_at = oldest if oldest.tzinfo else oldest.replace(tzinfo=utcnow().tzinfo)
        age = (utcnow() - oldest_at).total_seconds()
    return OutboxState(pending=pending, delivered=delivered, oldest_pending_age_seconds=age)
