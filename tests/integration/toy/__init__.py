"""A two-service toy system that exercises the chassis alone: `notes` publishes, `tally` consumes.

Its services are declared exactly like the shop's, through the same Service and migrations.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Column, Integer, MetaData, String, Table, select, update

from cleave.events import Event
from cleave.service import Service, Subscription, UnitOfWork

HERE = Path(__file__).parent


class NoteWritten(Event):
    event_type = "toy.notes.note_written.v1"

    note_id: str
    text: str


notes_metadata = MetaData()
notes = Table(
    "notes", notes_metadata, Column("id", String(64), primary_key=True), Column("text", String(200))
)

tally_metadata = MetaData()
tallies = Table(
    "tallies",
    tally_metadata,
    Column("word", String(200), primary_key=True),
    Column("count", Integer),
)

# Tests flip this to make the consumer fail, as a broken dependency would.
failures = {"poison": True}


async def count_note(event: NoteWritten, uow: UnitOfWork) -> None:
    if failures.get(event.text):
        raise RuntimeError(f"cannot count {event.text!r}")
    connection = uow.connection
    current = (
        await connection.execute(select(tallies.c.count).where(tallies.c.word == event.text))
    ).scalar()
    if current is None:
        await connection.execute(tallies.insert().values(word=event.text, count=1))
    else:
        await connection.execute(
            update(tallies).where(tallies.c.word == event.text).values(count=current + 1)
        )


async def write_note(uow: UnitOfWork, note_id: str, text: str) -> None:
    await uow.connection.execute(notes.insert().values(id=note_id, text=text))
    uow.publish(NoteWritten(note_id=note_id, text=text), subject=note_id)


notes_service = Service(
    name="notes",
    metadata=notes_metadata,
    migrations=HERE / "notes_migrations",
    publishes=(NoteWritten,),
)
tally_service = Service(
    name="tally",
    metadata=tally_metadata,
    migrations=HERE / "tally_migrations",
    subscriptions=(Subscription(NoteWritten, count_note, name="count_note"),),
)
