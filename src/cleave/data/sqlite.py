"""SQLite driven on the event loop's own thread, behind SQLAlchemy's asyncio API.

A statement on a local SQLite file takes microseconds; aiosqlite hands each one to a thread and
wakes the loop when it is done, and under load that hop (two context switches and a GIL hand-over
per statement, per BEGIN and per COMMIT) costs more than the statement itself and leaves the loop
waiting. This dialect is pysqlite, marked asynchronous: SQLAlchemy's `AsyncConnection` runs it in
its greenlet as usual, and each call simply returns at once. The writer's transactions are begun
and committed on sqlite3 itself (`writer_transaction`), which spares SQLAlchemy's transaction
machinery and its greenlet hops around statements that mostly run on the driver already
(`cleave.data.statements`).

What keeps this from blocking the loop:
- In this process, writers to one file are serialised by the database's asyncio lock before they
  reach SQLite, and readers in WAL mode never wait for a writer.
- A writer of another process (a `cleave` command beside a running server) holds the file's write
  lock at most a few milliseconds: `BEGIN IMMEDIATE` is tried without SQLite's busy handler and,
  while it is refused, retried after an asyncio sleep, so the loop keeps serving meanwhile.
- `synchronous=NORMAL` in WAL mode syncs the disk only at checkpoints, which the database runs
  in a thread of their own (`checkpoint`), not at a commit on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, TypeVar

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

DRIVER = "cleave"
# How long a transaction waits in all for another process's writer before it gives up.
BUSY_SECONDS = 10.0
# Readers in WAL mode meet a lock only while a crashed writer's WAL is recovered: a short wait.
READER_BUSY_MILLISECONDS = 200
T = TypeVar("T")


class InlineCursor(sqlite3.Cursor):
    """A sqlite3 cursor with what SQLAlchemy's asyncio results ask of an async driver's."""

    async def _async_soft_close(self) -> None:
        # Rows are read from SQLite on this thread as the result is consumed: nothing to buffer.
        return None


class InlineConnection(sqlite3.Connection):
    def cursor(self, factory: Any = InlineCursor) -> Any:
        return super().cursor(factory)


class SQLiteDialect_inline(SQLiteDialect_pysqlite):
    """pysqlite on the loop thread; SQLAlchemy's asyncio extension accepts it as async."""

    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        return sqlite3.connect(*cargs, factory=InlineConnection, **cparams)

    # SQLAlchemy's AsyncConnection insists that a statement switch greenlets at least once, as a
    # driver's would while awaiting its I/O: one switch to a ready awaitable, no loop iteration.
    def do_execute(self, cursor: Any, statement: Any, parameters: Any, context: Any = None) -> None:
        cursor.execute(statement, parameters)
        _switch_once()

    def do_execute_no_params(self, cursor: Any, statement: Any, context: Any = None) -> None:
        cursor.execute(statement)
        _switch_once()

    def do_executemany(
        self, cursor: Any, statement: Any, parameters: Any, context: Any = None
    ) -> None:
        cursor.executemany(statement, parameters)
        _switch_once()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool


class _Ready(Awaitable[None]):
    """An awaitable that is done already, and can be awaited again."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return iter(())  # type: ignore[return-value]


_READY = _Ready()


def _switch_once() -> None:
    if in_greenlet():
        await_only(_READY)


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")


def inline_url(url: URL) -> URL:
    """The same database, through this driver."""
    return url.set(drivername=f"sqlite+{DRIVER}")


def configure(dbapi_connection: sqlite3.Connection) -> None:
    """Per connection: we issue BEGIN ourselves, WAL, no disk sync but at checkpoints."""
    dbapi_connection.isolation_level = None
    for pragma in (
        "journal_mode=WAL",
        "synchronous=NORMAL",
        f"busy_timeout={READER_BUSY_MILLISECONDS}",
        "foreign_keys=ON",
        # Checkpoints run in a thread (`checkpoint`), never inside a commit on the loop.
        "wal_autocheckpoint=0",
    ):
        dbapi_connection.execute(f"PRAGMA {pragma}")


def configure_writer(dbapi_connection: sqlite3.Connection) -> None:
    """The writer waits for another process's lock on the loop (`begin_immediate`), not here."""
    dbapi_connection.execute("PRAGMA busy_timeout=0")


def _begin_immediate_pauses(dbapi_connection: sqlite3.Connection) -> Iterator[float]:
    """Try `BEGIN IMMEDIATE` until it takes the write lock: the pause before each next try while
    another process holds the lock, up to `BUSY_SECONDS` in all."""
    deadline = time.monotonic() + BUSY_SECONDS
    pause = 0.001
    while True:
        try:
            dbapi_connection.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() >= deadline:
                raise
        yield pause
        pause = min(pause * 2, 0.05)


def begin_immediate(dbapi_connection: sqlite3.Connection) -> None:
    """Take the write lock up front, waiting on the loop while another process holds it.

    Runs inside SQLAlchemy's greenlet (its `begin` event), so it may await. A statement built by
    SQLAlchemy inside `writer_transaction` finds the transaction open already, and joins it.
    """
    if dbapi_connection.in_transaction:
        return
    for pause in _begin_immediate_pauses(dbapi_connection):
        await_only(asyncio.sleep(pause))


@contextlib.asynccontextmanager
async def writer_transaction(connection: AsyncConnection) -> AsyncIterator[AsyncConnection]:
    """A write transaction on the writer's connection, begun and ended on sqlite3 itself.

    SQLAlchemy's own (`connection.begin()`) costs some 45 µs more a transaction, in its
    machinery and two greenlet hops, around statements that take a few. A statement built by
    SQLAlchemy inside it autobegins SQLAlchemy's transaction on the one already open here
    (`begin_immediate`), and is then committed or rolled back through SQLAlchemy, so either
    side's state stays true.
    """
    raw: sqlite3.Connection = connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr,assignment]
    for pause in _begin_immediate_pauses(raw):
        await asyncio.sleep(pause)
    try:
        yield connection
        if connection.in_transaction():
            await connection.commit()
        else:
            on_driver(raw.commit, sql="COMMIT")
    except BaseException:  # in the block, or a commit that failed
        try:
            if connection.in_transaction():
                await connection.rollback()
            else:
                on_driver(raw.rollback, sql="ROLLBACK")
        finally:
            if raw.in_transaction:  # the rollback did not go through: the caller drops it
                await connection.invalidate()
        raise


def on_driver(run: Callable[..., T], *arguments: Any, sql: str) -> T:
    """Run on sqlite3 (`run(*arguments)`: a statement and its parameters, or a commit), its
    errors raised as SQLAlchemy raises them (an `IntegrityError` a caller catches is the same
    whichever path the statement took)."""
    try:
        return run(*arguments)
    except sqlite3.Error as error:
        params = arguments[1] if len(arguments) > 1 else None
        raise DBAPIError.instance(sql, params, error, sqlite3.Error) from error


def checkpoint(path: str) -> None:
    """Copy the WAL into the database file and sync it: blocking, so run it in a thread."""
    connection = sqlite3.connect(path, timeout=BUSY_SECONDS, isolation_level=None)
    try:
        connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    finally:
        connection.close()
