"""The outbox, relay, inbox and dead letters, on the toy system, over SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from cleave.config import SystemConfig
from cleave.data.tables import inbox, outbox
from cleave.data.unit_of_work import OUTBOX_CHANNEL, UnitOfWork
from cleave.errors import ConfigError, DatabaseUnavailable
from cleave.events import Envelope
from cleave.messaging.consumer import Consumer, list_dead_letters
from cleave.messaging.relay import outbox_state
from cleave.runtime import Unit
from cleave.service import Subscription
from tests.conftest import eventually
from tests.integration import toy


async def started(config: SystemConfig, *, start: bool = True) -> Unit:
    unit = Unit(config, max_attempts=3)
    for consumer in unit.consumers.values():
        consumer.backoff_seconds = 0.01
    await unit.migrate()
    if start:
        await unit.start()
    return unit


async def tally_of(unit: Unit, word: str) -> int:
    async with unit.context("tally").read() as connection:
        count = (
            await connection.execute(select(toy.tallies.c.count).where(toy.tallies.c.word == word))
        ).scalar()
    return int(count or 0)


async def test_an_event_commits_with_its_aggregate_and_is_consumed(
    toy_config: SystemConfig,
) -> None:
    unit = await started(toy_config)
    try:
        async with unit.context("notes").unit_of_work() as uow:
            await toy.write_note(uow, "n1", "hello")
        assert await eventually(lambda: tally_of(unit, "hello")) == 1

        async def recorded() -> bool:  # the relay records the delivery just after the consumer
            state = await outbox_state(unit.context("notes"))
            return (state.pending, state.delivered) == (0, 1)

        assert await eventually(recorded)
    finally:
        await unit.stop()


async def test_a_rolled_back_unit_of_work_publishes_nothing(toy_config: SystemConfig) -> None:
    unit = await started(toy_config)
    try:

        async def failing_use_case() -> None:
            async with unit.context("notes").unit_of_work() as uow:
                await toy.write_note(uow, "n1", "never")
                raise RuntimeError("the use case failed after publishing")

        with pytest.raises(RuntimeError):
            await failing_use_case()
        async with unit.context("notes").read() as connection:
            assert (
                await connection.execute(select(func.count()).select_from(outbox))
            ).scalar() == 0
    finally:
        await unit.stop()


async def test_a_relay_that_dies_between_commit_and_delivery_delivers_on_restart(
    toy_config: SystemConfig,
) -> None:
    crashed = await started(toy_config, start=False)  # committed, but no relay ever ran
    async with crashed.context("notes").unit_of_work() as uow:
        await toy.write_note(uow, "n1", "survivor")
    assert (await outbox_state(crashed.context("notes"))).pending == 1
    await crashed.stop()

    restarted = await started(toy_config)
    try:
        assert await eventually(lambda: tally_of(restarted, "survivor")) == 1

        async def delivered() -> bool:
            # Marked delivered once the broker has it, which may be just after it was applied.
            return (await outbox_state(restarted.context("notes"))).pending == 0

        assert await eventually(delivered)
    finally:
        await restarted.stop()


async def test_a_delivery_is_recorded_once_the_broker_confirms_it_without_waiting_for_a_poll(
    toy_config: SystemConfig,
) -> None:
    unit = await started(toy_config, start=False)
    unit.relays["notes"].poll_seconds = 60  # only the confirm can get the delivery recorded
    await unit.start()
    try:
        async with unit.context("notes").unit_of_work() as uow:
            await toy.write_note(uow, "n1", "confirmed")

        async def recorded() -> bool:
            state = await outbox_state(unit.context("notes"))
            return (state.pending, state.delivered) == (0, 1)

        assert await eventually(recorded)
    finally:
        await unit.stop()


def down_for(unit: Unit, service: str) -> dict[str, int]:
    """Make the service's next `left` transactions fail as a database restart does."""
    database = unit.context(service).database
    failing = {"left": 0}

    def failing_while_down(
        real: Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]],
    ) -> Callable[[], contextlib.AbstractAsyncContextManager[AsyncConnection]]:
        def write() -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
            if failing["left"]:
                failing["left"] -= 1
                raise DatabaseUnavailable(f"the {service} database is restarting")
            return real()

        return write

    # Both ways to write: a transaction, and a single statement on its own.
    database.transaction = failing_while_down(database.transaction)  # type: ignore[method-assign,assignment]
    database.write_one = failing_while_down(database.write_one)  # type: ignore[method-assign,assignment]
    return failing


async def test_a_delivery_whose_bookkeeping_write_fails_is_recorded_by_the_next_one(
    toy_config: SystemConfig,
) -> None:
    unit = await started(toy_config)
    failing = down_for(unit, "notes")
    try:
        async with unit.context("notes").unit_of_work() as uow:
            await toy.write_note(uow, "n1", "kept")
        failing["left"] = 1  # the relay's next write, recording the delivery, fails once

        async def recorded() -> bool:
            state = await outbox_state(unit.context("notes"))
            return (state.pending, state.delivered) == (0, 1)

        assert await eventually(recorded, within=5)
        assert failing["left"] == 0
        assert await tally_of(unit, "kept") == 1
    finally:
        await unit.stop()


async def test_a_consumer_whose_database_is_down_waits_for_it_without_spending_attempts(
    toy_config: SystemConfig,
) -> None:
    """Down for more tries than the handler has attempts: the message is applied once the
    database is back, and nothing is dead-lettered (a restart is not the message's fault)."""
    unit = await started(toy_config)
    failing = down_for(unit, "tally")
    try:
        envelope = Envelope.of(toy.NoteWritten(note_id="n1", text="waited"), source="/t", trace={})
        failing["left"] = unit.consumers["tally"].max_attempts + 2
        await unit.consumers["tally"].deliver(envelope)
        assert failing["left"] == 0
        assert await tally_of(unit, "waited") == 1
        assert await list_dead_letters(unit.context("tally")) == []
    finally:
        await unit.stop()


async def test_duplicate_deliveries_are_applied_once(toy_config: SystemConfig) -> None:
    unit = await started(toy_config)
    try:
        envelope = Envelope.of(
            toy.NoteWritten(note_id="n1", text="twice"), source="/test", trace={}
        )
        consumer = unit.consumers["tally"]
        await consumer.deliver(envelope)
        await consumer.deliver(envelope)
        await asyncio.gather(*(consumer.deliver(envelope) for _ in range(5)))
        assert await tally_of(unit, "twice") == 1
        async with unit.context("tally").read() as connection:
            assert (await connection.execute(select(func.count()).select_from(inbox))).scalar() == 1
    finally:
        await unit.stop()


async def test_a_renamed_handler_keeps_its_inbox_identity(toy_config: SystemConfig) -> None:
    """The next release renames the handler's function; an event delivered again after the
    deploy is recognised by the subscription's declared name and not applied twice."""
    unit = await started(toy_config)
    try:
        envelope = Envelope.of(toy.NoteWritten(note_id="n1", text="once"), source="/test", trace={})
        await unit.consumers["tally"].deliver(envelope)

        async def count_written_note(event: toy.NoteWritten, uow: UnitOfWork) -> None:
            await toy.count_note(event, uow)

        renamed = Subscription(toy.NoteWritten, count_written_note, name="count_note")
        next_release = Consumer(unit.context("tally"), [renamed])
        await next_release.deliver(envelope)
        assert await tally_of(unit, "once") == 1
    finally:
        await unit.stop()


def test_a_subscription_name_is_declared_and_unique_in_its_service() -> None:
    with pytest.raises(ConfigError, match="lower-case"):
        Subscription(toy.NoteWritten, toy.count_note, name="Count Note")
    twice = Subscription(toy.NoteWritten, toy.count_note, name="count_note")
    with pytest.raises(ConfigError, match="two subscriptions named 'count_note'"):
        replace(toy.tally_service, subscriptions=(twice, twice))


async def test_a_failing_message_is_parked_then_replayed_once(toy_config: SystemConfig) -> None:
    unit = await started(toy_config)
    try:
        async with unit.context("notes").unit_of_work() as uow:
            await toy.write_note(uow, "n1", "poison")
        letters = await eventually(lambda: list_dead_letters(unit.context("tally")))
        assert len(letters) == 1
        assert letters[0].attempts == 3
        assert "cannot count 'poison'" in letters[0].error

        async def relay_done() -> bool:
            return (await outbox_state(unit.context("notes"))).pending == 0

        assert await eventually(relay_done)  # parked in tally's database, so the relay is done

        toy.failures["poison"] = False  # the broken dependency is fixed
        assert await unit.consumers["tally"].replay(letters[0].id) is True
        assert await tally_of(unit, "poison") == 1
        assert await list_dead_letters(unit.context("tally")) == []
        with pytest.raises(Exception, match="was replayed"):
            await unit.consumers["tally"].replay(letters[0].id)
    finally:
        toy.failures["poison"] = True
        await unit.stop()


async def test_migrations_are_idempotent(toy_config: SystemConfig) -> None:
    unit = Unit(toy_config)
    try:
        first = await unit.migrate()
        assert set(first["notes"]) == {"c0001", "c0002", "c0003", "c0004", "notes_0001"}
        assert await unit.migrate() == {"notes": [], "tally": []}
    finally:
        await unit.stop()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_the_outbox_notify_names_the_database_that_committed_so_a_relay_skips_its_own(
    toy_config: SystemConfig,
) -> None:
    unit = await started(toy_config, start=False)
    elsewhere = Unit(toy_config)
    heard: list[str] = []
    notes = unit.context("notes")
    try:
        async with notes.database.listen(OUTBOX_CHANNEL, heard.append):
            for writer, word in ((unit, "here"), (elsewhere, "there")):
                async with writer.context("notes").unit_of_work() as uow:
                    await toy.write_note(uow, f"n-{word}", word)
                    await toy.write_note(uow, f"n-{word}-2", word)  # one NOTIFY a transaction

            async def both() -> bool:
                return len(heard) >= 2

            assert await eventually(both)
        assert heard == [notes.database.origin, elsewhere.context("notes").database.origin]
        relay = unit.relays["notes"]
        await relay._signal.wait(0)  # cleared: the commit here set it, in-process
        relay._on_notify(notes.database.origin)
        assert not await relay._signal.wait(0)  # its own commits woke it already
        relay._on_notify(elsewhere.context("notes").database.origin)
        assert await relay._signal.wait(0)
    finally:
        await elsewhere.stop()
        await unit.stop()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_commit_in_another_process_wakes_the_relay_through_notify(
    toy_config: SystemConfig,
) -> None:
    running = await started(toy_config, start=False)
    running.relays["notes"].poll_seconds = 60  # so only a notification can explain a quick delivery
    await running.start()
    elsewhere = Unit(toy_config)  # another process's view: its own engines, no relay of its own
    try:
        async with elsewhere.context("notes").unit_of_work() as uow:
            await toy.write_note(uow, "n1", "notified")
        assert await eventually(lambda: tally_of(running, "notified"), within=10) == 1
    finally:
        await elsewhere.stop()
        await running.stop()
