"""The saga runner on a toy saga of its own (tests/integration/toy/errand.py), over SQLite and
PostgreSQL: the happy path and its end in one transaction, compensation in reverse, a crash inside
a step and the lease that hands the saga to another orchestrator, retries and parking, and two
orchestrators on one database that never run the same step at once.

Each orchestrator is a unit of its own (its own engine on the shared database) running one
SagaRunner; killing it cancels the runner mid-await, which is what a dead process leaves behind."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from cleave.config import SystemConfig
from cleave.data.tables import sagas
from cleave.runtime import Unit
from cleave.saga import (
    COMPLETED,
    FAILED,
    NEEDS_ATTENTION,
    RUNNING,
    SagaDefinition,
    SagaRow,
    SagaRunner,
    SagaSummary,
    retry_saga,
    saga_history_of,
    saga_status,
    start_saga,
)
from cleave.service import ServiceContext
from tests.conftest import eventually
from tests.integration import toy
from tests.integration.toy.errand import CARD, NAME, Behaviour, Script, errand

HAPPY = ["reserve", "charge", "ship", "completed"]
# Small enough that every test takes well under a second or two; the behaviour is the same.
FAST: dict[str, Any] = {
    "deadline_seconds": 5.0,
    "retry_seconds": 0.01,
    "max_retry_seconds": 0.05,
    "lease_seconds": 1.0,
    "poll_seconds": 0.02,
}


@dataclass
class Orchestrator:
    unit: Unit
    runner: SagaRunner
    task: asyncio.Task[None] | None = None

    @property
    def context(self) -> ServiceContext:
        return self.unit.context("notes")

    def start(self) -> None:
        self.task = asyncio.create_task(self.runner.run())

    async def kill(self) -> None:
        """Stop the runner wherever it is, writing nothing more: a process that died."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


@contextlib.asynccontextmanager
async def orchestrator(
    config: SystemConfig, saga: SagaDefinition, *, run: bool = True, **settings: Any
) -> AsyncIterator[Orchestrator]:
    """An orchestrator of `saga` on the toy system's database: a unit of its own and a runner."""
    unit = Unit(config)
    await unit.migrate()
    running = Orchestrator(unit, SagaRunner(unit.context("notes"), saga, **{**FAST, **settings}))
    if run:
        running.start()
    try:
        yield running
    finally:
        await running.kill()
        await unit.stop()


async def begin(context: ServiceContext, *saga_ids: str) -> None:
    async with context.unit_of_work() as uow:
        for saga_id in saga_ids:
            await start_saga(uow, NAME, saga_id, {CARD: "tok_visa"})


async def summary(context: ServiceContext, saga_id: str) -> SagaSummary:
    found = await saga_history_of(context, saga_id)
    assert found is not None
    return found[0]


async def history(context: ServiceContext, saga_id: str) -> list[tuple[str | None, str]]:
    found = await saga_history_of(context, saga_id)
    assert found is not None
    return [(event.step, event.event) for event in found[1]]


async def settled(context: ServiceContext, saga_id: str, status: str) -> SagaSummary:
    """The saga once it is in `status` (the test fails if it never gets there)."""

    async def arrived() -> SagaSummary | None:
        found = await summary(context, saga_id)
        return found if found.status == status else None

    result: SagaSummary = await eventually(arrived, within=15)
    return result


async def until(condition: Callable[[], bool]) -> None:
    async def check() -> bool:
        return condition()

    await eventually(check, within=15)


async def notes_of(context: ServiceContext) -> dict[str, str]:
    """The notes the saga's end hooks wrote, committed with the saga's end or not at all."""
    async with context.read() as connection:
        rows = await connection.execute(select(toy.notes.c.id, toy.notes.c.text))
        return {row.id: row.text for row in rows}


async def lease_of(context: ServiceContext, saga_id: str) -> datetime:
    """Until when the saga's runner holds it: no other runner may take it before."""
    async with context.read() as connection:
        query = select(sagas.c.next_attempt_at).where(sagas.c.id == saga_id)
        until_at: datetime = (await connection.execute(query)).scalar_one()
        return until_at


async def test_a_saga_runs_its_steps_once_in_order_and_completes_once(
    toy_config: SystemConfig,
) -> None:
    script = Script()
    async with orchestrator(toy_config, errand(script), lease_seconds=0.2) as shop:
        await begin(shop.context, "s1")
        done = await settled(shop.context, "s1", COMPLETED)
        await asyncio.sleep(0.3)  # past the last lease: a completed saga is never taken up again
        assert script.of("s1") == HAPPY
        assert (done.step, done.attempts, done.last_error) == (3, 0, None)
        assert await notes_of(shop.context) == {"s1:completed": "completed"}
        state = await saga_status(shop.context, "s1")
        assert state is not None
        assert state.data[CARD] is None  # forward-only: an ended saga keeps none of it
        assert {state.data[f"{step}_done"] for step in ("reserve", "charge", "ship")} == {True}
        assert await history(shop.context, "s1") == []  # nothing went wrong


async def test_a_saga_ends_in_the_transaction_of_its_last_step(toy_config: SystemConfig) -> None:
    """on_completed raises once, as a crash just before the commit would: the last step's
    outcome is rolled back with it, so the saga is never left done but unhooked; the last step
    runs again once the lease is out, and then the saga completes, hooked, once."""
    script = Script()
    script.plan("completed", "raise")
    async with orchestrator(toy_config, errand(script), lease_seconds=0.3) as crashed:
        await begin(crashed.context, "s1")
        await until(lambda: script.of("s1")[-1:] == ["completed"])
        await crashed.kill()
        left = await summary(crashed.context, "s1")
        assert (left.status, left.step) == (RUNNING, 2)  # still at ship, not past it
        assert await notes_of(crashed.context) == {}
    async with orchestrator(toy_config, errand(script), lease_seconds=0.3) as restarted:
        await settled(restarted.context, "s1", COMPLETED)
        assert script.of("s1") == ["reserve", "charge", "ship", "completed", "ship", "completed"]
        assert await notes_of(restarted.context) == {"s1:completed": "completed"}


async def test_a_step_that_fails_compensates_every_step_in_reverse_and_fails_once(
    toy_config: SystemConfig,
) -> None:
    script = Script()
    script.plan("ship", "fail")
    async with orchestrator(toy_config, errand(script), lease_seconds=0.2) as shop:
        await begin(shop.context, "s1")
        done = await settled(shop.context, "s1", FAILED)
        await asyncio.sleep(0.3)
        # The failed step's own compensation runs too: its call may have taken effect.
        assert script.of("s1") == [
            "reserve",
            "charge",
            "ship",
            "undo ship",
            "undo charge",
            "undo reserve",
            "failed",
        ]
        assert (done.failed_step, done.reason, done.step) == ("ship", "ship_refused", -1)
        assert await notes_of(shop.context) == {"s1:failed": "ship: ship_refused"}
        state = await saga_status(shop.context, "s1")
        assert state is not None
        assert state.data[CARD] is None
        assert await history(shop.context, "s1") == [("ship", "compensating")]


async def test_an_orchestrator_that_dies_inside_a_step_hands_the_saga_over_once_its_lease_ends(
    toy_config: SystemConfig,
) -> None:
    script = Script()
    script.plan("charge", "hang")
    lease = 0.5
    async with (
        orchestrator(toy_config, errand(script), lease_seconds=lease) as first,
        orchestrator(toy_config, errand(script), lease_seconds=lease, run=False) as second,
    ):
        await begin(first.context, "s1")
        await asyncio.wait_for(script.hanging.wait(), 15)
        held_until = await lease_of(first.context, "s1")
        second.start()  # looking for due sagas while the first one still holds this one
        await first.kill()  # dead in the middle of charge
        await settled(second.context, "s1", COMPLETED)
        # charge is repeated (its idempotency is its own job), and only after the lease ran out.
        assert script.of("s1") == ["reserve", "charge", "charge", "ship", "completed"]
        died_in, taken_over = script.times_of("s1", "charge")
        assert died_in < held_until <= taken_over
        assert held_until - died_in < timedelta(seconds=lease)  # the lease renewed at reserve
        assert script.running == []  # the dead one's call was cut off, not left running
        assert await notes_of(second.context) == {"s1:completed": "completed"}
        assert await history(second.context, "s1") == []  # a crash is no failure of the step


async def test_transient_errors_are_retried_with_growing_waits_until_the_step_succeeds(
    toy_config: SystemConfig,
) -> None:
    script = Script()
    script.plan("charge", "raise", "raise", "raise")
    retry = 0.04
    # Before the pivot only the deadline bounds the retries, not max_attempts.
    saga = errand(script)
    async with orchestrator(
        toy_config, saga, retry_seconds=retry, max_retry_seconds=1.0, max_attempts=2
    ) as shop:
        await begin(shop.context, "s1")
        await settled(shop.context, "s1", COMPLETED)
        assert script.of("s1") == ["reserve", *["charge"] * 4, "ship", "completed"]
        tries = script.times_of("s1", "charge")
        waits = [later - earlier for earlier, later in itertools.pairwise(tries)]
        # Backoff with jitter: the n-th wait is at least half of retry * 2^(n-1).
        for attempt, wait in enumerate(waits, start=1):
            assert wait >= timedelta(seconds=retry * 2 ** (attempt - 1) / 2), (attempt, waits)
        found = await saga_history_of(shop.context, "s1")
        assert found is not None
        assert [(event.step, event.event, event.detail) for event in found[1]] == [
            ("charge", "retry", f"attempt {n}: ConnectionError: charge is unreachable")
            for n in (1, 2, 3)
        ]


async def test_a_step_past_the_pivot_out_of_attempts_is_parked_until_retried(
    toy_config: SystemConfig,
) -> None:
    script = Script()
    script.plan("ship", "raise", "raise", "raise")
    saga = errand(script, retriable={"ship"})
    async with orchestrator(toy_config, saga, max_attempts=3) as shop:
        await begin(shop.context, "s1")
        parked = await settled(shop.context, "s1", NEEDS_ATTENTION)
        assert (parked.attempts, parked.stopped_at) == (3, "ship")
        assert parked.last_error == "ConnectionError: ship is unreachable"
        await asyncio.sleep(0.3)  # parked: no attempt more, however long it waits
        # Past the pivot nothing is compensated, and neither end is reached: a person decides.
        assert script.of("s1") == ["reserve", "charge", *["ship"] * 3]
        assert await notes_of(shop.context) == {}
        assert await history(shop.context, "s1") == [
            ("ship", "retry"),
            ("ship", "retry"),
            ("ship", "retry"),
            ("ship", NEEDS_ATTENTION),
        ]

        assert await retry_saga(shop.context, "s1", by="the operator") == RUNNING
        await settled(shop.context, "s1", COMPLETED)
        assert script.of("s1") == ["reserve", "charge", *["ship"] * 4, "completed"]
        assert (await history(shop.context, "s1"))[-1] == (None, "resumed")
        assert await notes_of(shop.context) == {"s1:completed": "completed"}


def claiming_once_all_have_looked(runners: list[SagaRunner]) -> None:
    """Hold every runner's first claim until each has read the sagas due: all of them then try
    to claim the same sagas, with the same due times."""
    looked: set[int] = set()
    everyone = asyncio.Event()
    for runner in runners:
        claim = runner._claim

        async def claim_once_all_have_looked(
            due: Sequence[tuple[str, datetime]], runner: SagaRunner = runner, claim: Any = claim
        ) -> list[SagaRow]:
            looked.add(id(runner))
            if len(looked) == len(runners):
                everyone.set()
            await everyone.wait()
            claimed: list[SagaRow] = await claim(due)
            return claimed

        runner._claim = claim_once_all_have_looked  # type: ignore[method-assign]


async def test_two_orchestrators_on_one_database_never_run_a_step_of_one_saga_twice(
    toy_config: SystemConfig,
) -> None:
    """Both see the same sagas due at once and try to claim each; one of them gets it. A saga
    due again after a transient error is claimed again by only one."""
    script = Script(pause_seconds=0.01)
    saga_ids = [f"s{n}" for n in range(20)]
    failing_once: list[Behaviour] = ["raise"] * (len(saga_ids) // 2)
    script.plan("charge", *failing_once)
    async with (
        orchestrator(toy_config, errand(script, by="one"), run=False) as one,
        orchestrator(toy_config, errand(script, by="other"), run=False) as other,
    ):
        await begin(one.context, *saga_ids)
        claiming_once_all_have_looked([one.runner, other.runner])
        one.start()
        other.start()
        for saga_id in saga_ids:
            await settled(one.context, saga_id, COMPLETED)
        assert script.overlaps == []
        retried = 0
        for saga_id in saga_ids:
            charges = script.of(saga_id).count("charge")
            assert script.of(saga_id) == ["reserve", *["charge"] * charges, "ship", "completed"]
            assert len(await history(one.context, saga_id)) == charges - 1
            retried += charges - 1
        assert retried == len(saga_ids) // 2
        assert len(await notes_of(one.context)) == len(saga_ids)


@pytest.mark.parametrize("late", ["stall", "stall then raise"])
async def test_an_orchestrator_that_outlives_its_lease_leaves_the_saga_to_the_one_that_took_it(
    toy_config: SystemConfig, late: Behaviour
) -> None:
    """The first orchestrator stalls in charge past its lease (a frozen process, a step slower
    than the lease), and the second takes the saga over and completes it. When the first one's
    charge returns (or raises) at last, its late outcome is refused: it neither rewinds the
    completed saga nor runs ship or on_completed again, nor schedules a retry of it."""
    script = Script(stall_seconds=0.8)
    script.plan("charge", late)
    async with (
        orchestrator(toy_config, errand(script), lease_seconds=0.3) as first,
        orchestrator(toy_config, errand(script), lease_seconds=0.3, run=False) as second,
    ):
        await begin(first.context, "s1")
        await until(lambda: script.of("s1") == ["reserve", "charge"])
        second.start()
        await settled(second.context, "s1", COMPLETED)
        await until(lambda: not script.running)  # the first one's charge has returned
        await asyncio.sleep(0.3)  # time for whatever it would do next
        assert script.of("s1") == ["reserve", "charge", "charge", "ship", "completed"]
        done = await summary(second.context, "s1")
        assert (done.status, done.step, done.attempts, done.last_error) == (COMPLETED, 3, 0, None)
        assert await history(second.context, "s1") == []
        assert await notes_of(second.context) == {"s1:completed": "completed"}
