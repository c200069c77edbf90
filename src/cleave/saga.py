"""Orchestrated sagas, persisted in the orchestrating service's own database.

A saga is a list of steps. Each step's action calls other services through their ports, outside
any transaction; its outcome is then recorded in one short transaction, together with whatever
the saga's hooks write (the order's status, the events it publishes). Steps are idempotent, so a
saga resumed after a crash (its lease ran out) may safely repeat the step it was in.

- A step that raises `StepFailed`, or runs past its deadline, starts compensation: the
  compensations of the steps already done run in reverse, then `on_failed`. A deadline counts
  only the time the step ran while an orchestrator was up: a crash and its lease never do.
- Any other error is transient: the step is retried with backoff until its deadline; a step
  that ran out of time that way fails as `<step>_unavailable`, one that hung as `<step>_timeout`.
- Steps marked `retriable` come after the pivot: they are retried, never compensated, because
  the saga can no longer go back. They and compensations are retried with backoff up to a
  ceiling (`max_attempts`); then the saga is parked as `needs_attention`, counted in
  `cleave_sagas_parked_total`, and waits for a person (`cleave sagas list` / `retry`).
- What went wrong is kept in the saga's history (`cleave_saga_history`): every failed attempt
  with its error, the start of compensation, parking and resuming.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import Row, and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.auth.units import acting_for, on_behalf_of
from cleave.clock import utcnow
from cleave.data.database import UtcDateTime
from cleave.data.statements import Prepared, by_shape
from cleave.data.tables import saga_history, sagas
from cleave.errors import CleaveError, NotFound
from cleave.service import ServiceContext, UnitOfWork
from cleave.telemetry import (
    SAGA_DURATION,
    SAGAS_FINISHED,
    SAGAS_PARKED,
    current_carrier,
    trace_context_of,
    tracer,
)

RUNNING, COMPENSATING, COMPLETED, FAILED = "running", "compensating", "completed", "failed"
NEEDS_ATTENTION = "needs_attention"
STATUSES = (RUNNING, COMPENSATING, COMPLETED, FAILED, NEEDS_ATTENTION)
TRACE_KEY = "_trace"
# The end user the saga acts for (who started it), so its calls to other units say so too.
ACTING_KEY = "_on_behalf_of"


class StepFailed(Exception):
    """A business failure: the saga cannot go on, and must compensate."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeaseLost(Exception):
    """The runner's lease on a saga ran out and another runner took it: this one must stop."""


class SagaRow(NamedTuple):
    """A row of the saga log (`cleave_sagas`), its fields the table's columns in order."""

    id: str
    name: str
    status: str
    step: int
    data: str
    failed_step: str | None
    reason: str | None
    attempts: int
    step_started_at: datetime | None
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    step_spent_seconds: float
    last_error: str | None


@dataclass
class SagaState:
    id: str
    data: dict[str, Any]
    status: str = RUNNING
    failed_step: str | None = None
    reason: str | None = None


Action = Callable[[SagaState], Awaitable[Mapping[str, Any] | None]]
Compensation = Callable[[SagaState], Awaitable[None]]
Hook = Callable[[UnitOfWork, SagaState], Awaitable[None]]


@dataclass(frozen=True)
class Step:
    name: str
    action: Action
    compensation: Compensation | None = None
    deadline_seconds: float | None = None
    retriable: bool = False


async def _nothing(_uow: UnitOfWork, _state: SagaState) -> None:
    return None


@dataclass(frozen=True)
class SagaDefinition:
    name: str
    steps: Sequence[Step]
    on_completed: Hook
    on_failed: Hook
    on_progress: Hook = field(default=_nothing)
    # Keys of `data` only the forward steps use (a card token, say): set to None in the saga log
    # as soon as it starts compensating or ends, so a failed saga keeps none of them.
    forward_only: frozenset[str] = frozenset()

    @property
    def signal(self) -> str:
        return saga_signal(self.name)


def saga_signal(name: str) -> str:
    return f"saga:{name}"


async def start_saga(uow: UnitOfWork, name: str, saga_id: str, data: Mapping[str, Any]) -> None:
    """Record a new saga in the caller's transaction; its runner picks it up once that commits."""
    now = utcnow()
    await _START.rowcount(
        uow.connection,
        **SagaRow(
            id=saga_id,
            name=name,
            status=RUNNING,
            step=0,
            # The saga's steps continue the trace of the request that started it.
            data=json.dumps({**data, TRACE_KEY: current_carrier(), ACTING_KEY: on_behalf_of()}),
            failed_step=None,
            reason=None,
            attempts=0,
            step_started_at=None,  # the first step's clock starts when a runner takes it up
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
            step_spent_seconds=0.0,
            last_error=None,
        )._asdict(),
    )
    uow.notify(saga_signal(name))


async def _note(
    connection: AsyncConnection, saga_id: str, step: str | None, event: str, detail: str | None
) -> None:
    await connection.execute(
        saga_history.insert().values(
            saga_id=saga_id, at=utcnow(), step=step, event=event, detail=detail
        )
    )


def describe(error: BaseException) -> str:
    """An error as one line that is never empty (a bare TimeoutError has no message)."""
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class SagaRunner:
    """Advances every due saga of one definition. Runs as a worker of the orchestrating service."""

    def __init__(
        self,
        context: ServiceContext,
        definition: SagaDefinition,
        *,
        deadline_seconds: float = 5.0,
        retry_seconds: float = 0.2,
        max_retry_seconds: float = 10.0,
        max_attempts: int = 10,
        lease_seconds: float | None = None,
        poll_seconds: float = 1.0,
        max_in_flight: int = 64,
    ) -> None:
        self.context = context
        self.definition = definition
        self.deadline_seconds = deadline_seconds
        self.retry_seconds = retry_seconds
        self.max_retry_seconds = max_retry_seconds
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.max_in_flight = max_in_flight
        self._signal = context.signal(definition.signal)
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _deadline(self, step: Step) -> float:
        return step.deadline_seconds or self.deadline_seconds

    def _lease(self) -> timedelta:
        if self.lease_seconds is not None:
            return timedelta(seconds=self.lease_seconds)
        # Long enough for the slowest step; a saga whose lease runs out is resumed elsewhere.
        longest = max((self._deadline(step) for step in self.definition.steps), default=1.0)
        return timedelta(seconds=longest * 2 + 5)

    async def run(self) -> None:
        try:
            while True:
                await self.advance_due()
                await self._signal.wait(self.poll_seconds)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_due(self) -> int:
        """Advance every saga due now until none is, waiting for each (a scheduled function's
        tick, where nothing runs between invocations); returns how many advances started.
        A saga retrying later is due at a later tick."""
        started = 0
        while advanced := await self.advance_due():
            started += advanced
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return started

    async def advance_due(self) -> int:
        """Claim the sagas that are due and advance each in its own task; returns how many."""
        room = self.max_in_flight - len(self._in_flight)
        if room <= 0:
            return 0
        async with self.context.read() as connection:
            due = await _DUE.rows(
                connection,
                name=self.definition.name,
                now=utcnow(),
                room=room + len(self._in_flight),
            )
        started = 0
        for saga_id, due_at in due:
            # Filtered here, not with a NOT IN that grows with the sagas in flight (its cache key
            # and its bound parameters cost more with each one).
            if saga_id in self._in_flight or started >= room:
                continue
            if await self._claim(saga_id, due_at):
                self._in_flight.add(saga_id)
                task = asyncio.create_task(self._advance(saga_id))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                started += 1
        return started

    async def _claim(self, saga_id: str, due_at: datetime) -> bool:
        now = utcnow()
        async with self.context.database.write_one() as connection:
            claimed = await _CLAIM.rowcount(
                connection, saga_id=saga_id, due_at=due_at, lease_until=now + self._lease(), now=now
            )
        return claimed == 1

    async def _advance(self, saga_id: str) -> None:
        try:
            # Read once: while this runner holds the lease, the saga changes only by its hand.
            row: SagaRow | None = await self._load(saga_id)
            while row is not None:
                row = await self._advance_one_step(row)
        except asyncio.CancelledError:
            raise
        except LeaseLost:
            self.context.log.warning("saga taken over by another runner; left to it", saga=saga_id)
        except Exception:
            self.context.log.exception(
                "saga step crashed; it resumes when its lease ends", saga=saga_id
            )
        finally:
            self._in_flight.discard(saga_id)
            self._signal.set()

    async def _load(self, saga_id: str) -> SagaRow:
        async with self.context.read() as connection:
            row = await _LOAD.one_or_none(connection, saga_id=saga_id)
        if row is None:
            raise LookupError(f"no saga {saga_id}")
        return row

    async def _advance_one_step(self, row: SagaRow) -> SagaRow | None:
        """Run one step or one compensation; the saga as it then stands while there is more to
        do right now, else None."""
        state = SagaState(
            id=row.id,
            data=json.loads(row.data),
            status=row.status,
            failed_step=row.failed_step,
            reason=row.reason,
        )
        steps = self.definition.steps
        name = self.definition.name
        with (
            acting_for(state.data.get(ACTING_KEY)),
            tracer.start_as_current_span(
                _span_name(name, row.status, row.step, steps),
                context=trace_context_of(state.data.get(TRACE_KEY) or {}),
                attributes={
                    "cleave.service": self.context.name,
                    "cleave.saga.name": name,
                    "cleave.saga.id": row.id,
                },
            ),
        ):
            if row.status == RUNNING:
                if row.step >= len(steps):  # left so by a release that ended sagas apart
                    await self._finish(row, state, COMPLETED, self.definition.on_completed)
                    return None
                return await self._run_action(row, state, steps[row.step])
            if row.status == COMPENSATING:
                if row.step < 0:
                    await self._finish(row, state, FAILED, self.definition.on_failed)
                    return None
                return await self._run_compensation(row, state, steps[row.step])
        return None

    async def _run_action(self, row: SagaRow, state: SagaState, step: Step) -> SagaRow | None:
        running = (utcnow() - (row.step_started_at or utcnow())).total_seconds()
        remaining = self._deadline(step) - row.step_spent_seconds - running
        try:
            if remaining <= 0 and not step.retriable:
                # Out of time after failed attempts: the far side could not be reached.
                outcome = "unavailable" if row.last_error else "timeout"
                raise StepFailed(f"{step.name}_{outcome}")
            async with asyncio.timeout(
                max(remaining, self._deadline(step)) if step.retriable else remaining
            ):
                updates = await step.action(state)
        except StepFailed as failure:
            # Definitive even after the pivot: the far side said no, so there is nothing to retry.
            return await self._begin_compensation(row, state, step, failure.reason)
        except TimeoutError:
            if step.retriable:
                await self._retry_later(row, step, f"{step.name} timed out")
                return None
            return await self._begin_compensation(row, state, step, f"{step.name}_timeout")
        except asyncio.CancelledError:
            raise
        except Exception as error:
            self.context.log.warning(
                "saga step failed; retrying", saga=row.id, step=step.name, error=describe(error)
            )
            await self._retry_later(row, step, describe(error))
            return None
        state.data.update(updates or {})
        done = {
            "step": row.step + 1,
            "data": state.data,
            "attempts": 0,
            "step_started_at": utcnow(),
            "step_spent_seconds": 0.0,
            "last_error": None,
        }
        if row.step + 1 < len(self.definition.steps):
            async with self.context.unit_of_work() as uow:
                await self.definition.on_progress(uow, state)  # first: the hook may note in `data`
                return await self._save(uow, row, **done)
        # The last step done: the saga ends in the same transaction as it.
        with self._ending(COMPLETED):
            async with self.context.unit_of_work() as uow:
                await self.definition.on_progress(uow, state)
                ended = await self._end(
                    uow, row, state, COMPLETED, self.definition.on_completed, done
                )
        self._count_end(ended)
        return None

    async def _run_compensation(self, row: SagaRow, state: SagaState, step: Step) -> SagaRow | None:
        if step.compensation is not None:
            try:
                async with asyncio.timeout(self._deadline(step)):
                    await step.compensation(state)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                # A compensation must eventually succeed: retried with backoff, never skipped,
                # and parked for a person once the ceiling is reached.
                self.context.log.warning(
                    "saga compensation failed; retrying",
                    saga=row.id,
                    step=step.name,
                    error=describe(error),
                )
                await self._retry_later(row, step, describe(error), compensating=True)
                return None
        done = {"step": row.step - 1, "attempts": 0, "last_error": None}
        if row.step > 0:
            async with self.context.unit_of_work() as uow:
                return await self._save(uow, row, **done)
        # Every compensation done: the saga ends in the same transaction as the last one.
        with self._ending(FAILED):
            async with self.context.unit_of_work() as uow:
                ended = await self._end(uow, row, state, FAILED, self.definition.on_failed, done)
        self._count_end(ended)
        return None

    async def _begin_compensation(
        self, row: SagaRow, state: SagaState, step: Step, reason: str
    ) -> SagaRow:
        self.context.log.info("saga compensating", saga=row.id, step=step.name, reason=reason)
        state.status, state.failed_step, state.reason = COMPENSATING, step.name, reason
        forgotten = self._forget(state)
        async with self.context.unit_of_work() as uow:
            await _note(uow.connection, row.id, step.name, "compensating", reason)
            # The failed step's own compensation runs too: a timed-out call may have taken effect.
            return await self._save(
                uow,
                row,
                status=COMPENSATING,
                step=row.step,
                failed_step=step.name,
                reason=reason,
                attempts=0,
                last_error=None,
                **forgotten,
            )

    def _forget(self, state: SagaState) -> dict[str, Any]:
        """The `data` to save once the saga goes forward no more, without its forward-only keys."""
        kept = set(self.definition.forward_only) & {k for k, v in state.data.items() if v}
        if not kept:
            return {}
        state.data.update(dict.fromkeys(kept))
        return {"data": state.data}

    def _delay(self, attempts: int) -> float:
        ceiling = min(self.retry_seconds * 2.0 ** min(attempts - 1, 16), self.max_retry_seconds)
        return ceiling / 2 + random.uniform(0, ceiling / 2)  # jitter spreads a burst apart

    async def _retry_later(
        self, row: SagaRow, step: Step, error: str, *, compensating: bool = False
    ) -> None:
        attempts = row.attempts + 1
        bounded = step.retriable or compensating  # before the pivot, the deadline bounds retries
        if bounded and attempts >= self.max_attempts:
            await self._park(row, step, attempts, error)
            return
        delay = self._delay(attempts)
        running = (utcnow() - (row.step_started_at or utcnow())).total_seconds()
        async with self.context.database.transaction() as connection:
            await _note(connection, row.id, step.name, "retry", f"attempt {attempts}: {error}")
            await _held(
                connection,
                row,
                attempts=attempts,
                last_error=error,
                # The wait before the next attempt counts as time spent; downtime never does.
                step_spent_seconds=row.step_spent_seconds + running + delay,
                next_attempt_at=utcnow() + timedelta(seconds=delay),
                updated_at=utcnow(),
            )
        # Woken once the new due time is committed, or the runner would look too early.
        asyncio.get_running_loop().call_later(delay, self._signal.set)

    async def _park(self, row: SagaRow, step: Step, attempts: int, error: str) -> None:
        self.context.log.error(
            "saga needs attention: retries exhausted",
            saga=row.id,
            step=step.name,
            attempts=attempts,
            error=error,
        )
        async with self.context.database.transaction() as connection:
            await _note(connection, row.id, step.name, "retry", f"attempt {attempts}: {error}")
            await _note(
                connection,
                row.id,
                step.name,
                NEEDS_ATTENTION,
                f"gave up after {attempts} attempts; `cleave sagas retry {row.id}` resumes it",
            )
            await _held(
                connection,
                row,
                status=NEEDS_ATTENTION,
                attempts=attempts,
                last_error=error,
                updated_at=utcnow(),
            )
        SAGAS_PARKED.labels(self.context.name, self.definition.name, step.name).inc()

    async def _finish(self, row: SagaRow, state: SagaState, status: str, hook: Hook) -> None:
        async with self.context.unit_of_work() as uow:
            ended = await self._end(uow, row, state, status, hook, {})
        self._count_end(ended)

    async def _end(
        self,
        uow: UnitOfWork,
        row: SagaRow,
        state: SagaState,
        status: str,
        hook: Hook,
        values: Mapping[str, Any],
    ) -> SagaRow:
        """End the saga in `uow` as `status`, saving `values` too, without its forward-only
        data; then its hook, in the same transaction."""
        state.status = status
        ended = await self._save(uow, row, **{**values, **self._forget(state)}, status=status)
        await hook(uow, state)
        return ended

    def _ending(self, status: str) -> AbstractContextManager[Any]:
        """The span of the saga's end (`saga <name> completed` or `failed`), in the trace of the
        step whose transaction ends it, so a trace still says how the saga ended."""
        return tracer.start_as_current_span(f"saga {self.definition.name} {status}")

    def _count_end(self, row: SagaRow) -> None:
        labels = (self.context.name, self.definition.name, row.status)
        SAGAS_FINISHED.labels(*labels).inc()
        SAGA_DURATION.labels(*labels).observe((utcnow() - row.created_at).total_seconds())

    async def _save(self, uow: UnitOfWork, row: SagaRow, **values: Any) -> SagaRow:
        """Save `values` (and renew the lease); the saga as it now stands."""
        if "data" in values:
            values["data"] = json.dumps(values["data"])
        now = utcnow()
        lease_until = now + self._lease()
        saved = await _SAVE(tuple(sorted(values))).rowcount(
            uow.connection,
            **{f"new_{column}": value for column, value in values.items()},
            saga_id=row.id,
            held_until=row.next_attempt_at,
            now=now,
            lease_until=lease_until,
        )
        _still_held(saved, row)  # or the hooks' writes roll back with the rest
        return row._replace(**values, updated_at=now, next_attempt_at=lease_until)


_DUE = Prepared(
    select(sagas.c.id, sagas.c.next_attempt_at)
    .where(
        sagas.c.name == bindparam("name"),
        or_(sagas.c.status == RUNNING, sagas.c.status == COMPENSATING),  # no expanding IN
        sagas.c.next_attempt_at <= bindparam("now", type_=UtcDateTime),
    )
    .order_by(sagas.c.next_attempt_at)
    .limit(bindparam("room"))
)
_CLAIM = Prepared(
    update(sagas)
    .where(
        and_(
            sagas.c.id == bindparam("saga_id"),
            sagas.c.next_attempt_at == bindparam("due_at", type_=UtcDateTime),
        )
    )
    .values(
        next_attempt_at=bindparam("lease_until", type_=UtcDateTime),
        # The step's clock restarts at every claim: time spent before is in step_spent_seconds,
        # and the time a crashed orchestrator held the lease is not counted anywhere.
        step_started_at=bindparam("now", type_=UtcDateTime),
    )
)
_START = Prepared(sagas.insert().values({c.key: bindparam(c.key, type_=c.type) for c in sagas.c}))
_LOAD = Prepared(select(sagas).where(sagas.c.id == bindparam("saga_id")), SagaRow)
# The UPDATE that `_save` runs for a set of columns, while the runner's lease is still the one
# in the row: once it ran out and another runner claimed the saga, the row is no longer its own.
_SAVE = by_shape(
    lambda columns: (
        update(sagas)
        .where(
            sagas.c.id == bindparam("saga_id"),
            sagas.c.next_attempt_at == bindparam("held_until", type_=UtcDateTime),
        )
        .values(
            {
                **{c: bindparam(f"new_{c}", type_=sagas.c[c].type) for c in columns},
                "updated_at": bindparam("now", type_=UtcDateTime),
                "next_attempt_at": bindparam("lease_until", type_=UtcDateTime),
            }
        )
    )
)


async def _held(connection: AsyncConnection, row: SagaRow, **values: Any) -> None:
    """Update the saga while the lease `row` was read with is still its own (as `_SAVE` does)."""
    changed = await connection.execute(
        update(sagas)
        .where(sagas.c.id == row.id, sagas.c.next_attempt_at == row.next_attempt_at)
        .values(**values)
    )
    _still_held(changed.rowcount, row)  # or the history noted with it rolls back too


def _still_held(updated: int, row: SagaRow) -> None:
    if updated != 1:
        raise LeaseLost(f"saga {row.id} was taken over by another runner")


def _span_name(saga: str, status: str, step: int, steps: Sequence[Step]) -> str:
    if status == RUNNING:
        return f"saga {saga} {steps[step].name}" if step < len(steps) else f"saga {saga} completed"
    return f"saga {saga} compensate {steps[step].name}" if step >= 0 else f"saga {saga} failed"


@dataclass(frozen=True)
class SagaSummary:
    id: str
    name: str
    status: str
    step: int
    failed_step: str | None
    reason: str | None
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    stopped_at: str | None = None  # the step a parked saga gave up on


@dataclass(frozen=True)
class SagaEvent:
    at: datetime
    step: str | None
    event: str
    detail: str | None


def _summary(row: Row[Any], stopped_at: str | None = None) -> SagaSummary:
    return SagaSummary(
        id=row.id,
        name=row.name,
        status=row.status,
        step=row.step,
        failed_step=row.failed_step,
        reason=row.reason,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        updated_at=row.updated_at,
        stopped_at=stopped_at,
    )


async def _stopped_at(connection: AsyncConnection, saga_id: str) -> str | None:
    query = (
        select(saga_history.c.step)
        .where(saga_history.c.saga_id == saga_id, saga_history.c.event == NEEDS_ATTENTION)
        .order_by(saga_history.c.id.desc())
        .limit(1)
    )
    return (await connection.execute(query)).scalar()


async def list_sagas(
    context: ServiceContext, *, status: str | None = NEEDS_ATTENTION, limit: int = 100
) -> list[SagaSummary]:
    """The service's sagas in `status` (every status for None), oldest change first."""
    query = select(sagas).order_by(sagas.c.updated_at, sagas.c.id).limit(limit)
    if status is not None:
        query = query.where(sagas.c.status == status)
    async with context.read() as connection:
        rows = (await connection.execute(query)).all()
        return [
            _summary(
                row,
                await _stopped_at(connection, row.id) if row.status == NEEDS_ATTENTION else None,
            )
            for row in rows
        ]


async def count_sagas(context: ServiceContext, status: str) -> int:
    query = select(func.count()).select_from(sagas).where(sagas.c.status == status)
    async with context.read() as connection:
        return int((await connection.execute(query)).scalar_one())


async def saga_history_of(
    context: ServiceContext, saga_id: str
) -> tuple[SagaSummary, list[SagaEvent]] | None:
    async with context.read() as connection:
        row = (await connection.execute(select(sagas).where(sagas.c.id == saga_id))).one_or_none()
        if row is None:
            return None
        events = await connection.execute(
            select(saga_history)
            .where(saga_history.c.saga_id == saga_id)
            .order_by(saga_history.c.id)
        )
        history = [SagaEvent(e.at, e.step, e.event, e.detail) for e in events]
    parked = next((e.step for e in reversed(history) if e.event == NEEDS_ATTENTION), None)
    return _summary(row, parked if row.status == NEEDS_ATTENTION else None), history


async def retry_saga(context: ServiceContext, saga_id: str, *, by: str = "an admin") -> str:
    """Resume a saga parked as needs_attention where it stopped, with its retries counted anew.

    Returns the status it resumes in (running, or compensating if it was going back)."""
    async with context.database.transaction() as connection:
        row = (await connection.execute(select(sagas).where(sagas.c.id == saga_id))).one_or_none()
        if row is None:
            raise NotFound(f"no saga {saga_id} in {context.name}")
        if row.status != NEEDS_ATTENTION:
            raise CleaveError(f"saga {saga_id} is {row.status}, not {NEEDS_ATTENTION}")
        resumed = COMPENSATING if row.failed_step is not None else RUNNING
        now = utcnow()
        await connection.execute(
            update(sagas)
            .where(sagas.c.id == saga_id, sagas.c.status == NEEDS_ATTENTION)
            .values(
                status=resumed,
                attempts=0,
                step_started_at=None,
                step_spent_seconds=0.0,
                next_attempt_at=now,
                updated_at=now,
            )
        )
        await _note(connection, saga_id, None, "resumed", f"resumed by {by}")
    return resumed


async def saga_status(context: ServiceContext, saga_id: str) -> SagaState | None:
    async with context.read() as connection:
        row = (await connection.execute(select(sagas).where(sagas.c.id == saga_id))).one_or_none()
    if row is None:
        return None
    return SagaState(
        id=row.id,
        data=json.loads(row.data),
        status=row.status,
        failed_step=row.failed_step,
        reason=row.reason,
    )
