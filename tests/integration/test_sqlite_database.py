"""The embedded SQLite database, driven on the event loop's thread: another process's writer
never stalls the loop, transactions stay atomic, and the WAL is checkpointed off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, text
from sqlalchemy.exc import IntegrityError

from cleave.data import database as database_module
from cleave.data.database import Database
from cleave.data.statements import Prepared

NOTES = Table("notes", MetaData(), Column("id", Integer, primary_key=True), Column("body", String))
# Run on sqlite3 itself, in the transaction the writer began there.
INSERT_NOTE = Prepared(NOTES.insert().values(body=bindparam("body")))
LINKS = Table(
    "links", MetaData(), Column("id", Integer, primary_key=True), Column("note_id", Integer)
)
INSERT_LINK = Prepared(LINKS.insert().values(note_id=bindparam("note_id")))


async def make(tmp_path: Path) -> Database:
    database = Database("notes", f"sqlite+aiosqlite:///{tmp_path}/notes.db")
    async with database.transaction() as connection:
        await connection.execute(text("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)"))
    return database


def hold_write_lock(path: Path, seconds: float, held: threading.Event) -> None:
    """Another writer (as a `cleave` command in another process would be) holding the lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO notes (body) VALUES ('theirs')")
    held.set()
    time.sleep(seconds)
    other.execute("COMMIT")
    other.close()


async def test_a_writer_of_another_connection_does_not_stall_the_loop(tmp_path: Path) -> None:
    database = await make(tmp_path)
    held = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(tmp_path / "notes.db", 0.4, held))
    holder.start()
    await asyncio.to_thread(held.wait)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        async with database.transaction() as connection:
            waited = time.monotonic() - started
            await connection.execute(text("INSERT INTO notes (body) VALUES ('ours')"))
        # Meanwhile the loop went on: a reader was answered while the writer waited.
        async with database.read() as connection:
            bodies = (await connection.execute(text("SELECT body FROM notes"))).scalars().all()
    finally:
        ticker.cancel()
        holder.join()
        await database.dispose()
    assert waited >= 0.3  # it did wait for the other writer…
    assert ticks >= 15  # …without blocking the loop while it did
    assert sorted(bodies) == ["ours", "theirs"]


async def test_a_failed_transaction_leaves_nothing_and_the_next_one_commits(
    tmp_path: Path,
) -> None:
    database = await make(tmp_path)
    try:

        async def failing() -> None:
            async with database.transaction() as connection:
                await connection.execute(text("INSERT INTO notes (body) VALUES ('half')"))
                raise RuntimeError("the handler failed")

        with pytest.raises(RuntimeError):
            await failing()
        async with database.transaction() as connection:
            await connection.execute(text("INSERT INTO notes (body) VALUES ('whole')"))
        async with database.read() as connection:
            bodies = (await connection.execute(text("SELECT body FROM notes"))).scalars().all()
    finally:
        await database.dispose()
    assert bodies == ["whole"]


async def test_statements_on_the_driver_and_built_by_sqlalchemy_commit_or_roll_back_together(
    tmp_path: Path,
) -> None:
    database = await make(tmp_path)

    async def write(*bodies: str, built: str | None = None, fail: bool = False) -> None:
        async with database.transaction() as connection:
            for body in bodies:
                await INSERT_NOTE.rowcount(connection, body=body)
            if built is not None:
                await connection.execute(text("INSERT INTO notes (body) VALUES (:b)"), {"b": built})
            if fail:
                raise RuntimeError("the handler failed")

    try:
        with pytest.raises(RuntimeError):
            await write("prepared, rolled back", built="built, rolled back", fail=True)
        await write("prepared", built="built")
        await write("prepared alone")
        with pytest.raises(RuntimeError):
            await write("prepared alone, rolled back", fail=True)
        async with database.read() as connection:
            bodies = (await connection.execute(text("SELECT body FROM notes"))).scalars().all()
    finally:
        await database.dispose()
    assert bodies == ["prepared", "built", "prepared alone"]


async def test_a_commit_that_fails_rolls_back_and_the_writer_goes_on(tmp_path: Path) -> None:
    database = await make(tmp_path)
    try:
        async with database.transaction() as connection:
            await connection.execute(
                text(
                    "CREATE TABLE links (id INTEGER PRIMARY KEY, note_id INTEGER"
                    " REFERENCES notes (id) DEFERRABLE INITIALLY DEFERRED)"
                )
            )

        async def link_to_nothing() -> None:
            async with database.transaction() as connection:
                await INSERT_NOTE.rowcount(connection, body="linked")
                await INSERT_LINK.rowcount(connection, note_id=999)  # checked at the commit

        with pytest.raises(IntegrityError):
            await link_to_nothing()
        await write_note(database, "after")
        async with database.read() as connection:
            bodies = (await connection.execute(text("SELECT body FROM notes"))).scalars().all()
    finally:
        await database.dispose()
    assert bodies == ["after"]


async def write_note(database: Database, body: str) -> None:
    async with database.transaction() as connection:
        await INSERT_NOTE.rowcount(connection, body=body)


async def test_the_wal_is_checkpointed_so_it_stops_growing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "CHECKPOINT_EVERY", 20)
    database = await make(tmp_path)
    wal = tmp_path / "notes.db-wal"
    sizes = []
    try:
        for _ in range(8):
            for _ in range(20):
                async with database.transaction() as connection:
                    await connection.execute(
                        text("INSERT INTO notes (body) VALUES (:body)"), {"body": "x" * 4000}
                    )
            if database._checkpointing is not None:
                await database._checkpointing
            sizes.append(wal.stat().st_size)
    finally:
        await database.dispose()
    # Without checkpoints the WAL holds every page written (160 rows of 4 KB and more); with them
    # it is reused from its start once copied into the database file.
    assert max(sizes) < 8 * 20 * 4000
