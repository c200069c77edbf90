"""Each service's own database: an engine, transactions, and the unit of work.

SQLite is the embedded default: one file per service, WAL, driven on the event loop's thread
(`cleave.data.sqlite`: a statement takes microseconds, a hop to a driver thread costs more). One
writer connection per service, held open, takes one transaction at a time, serialised
in-process by an asyncio lock and across processes by `BEGIN IMMEDIATE`; a few reader
connections, held open too, read without a transaction. PostgreSQL is the deployed choice; plain
reads there run in AUTOCOMMIT, which skips a BEGIN/ROLLBACK round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import BigInteger, DateTime, Dialect, Integer, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.types import TypeDecorator

from cleave.data import sqlite
from cleave.errors import DatabaseUnavailable
from cleave.files import private_file

_READ_ONLY = "cleave_read_only"
# The PostgreSQL setting that holds a connection's origin: which Database object opened it.
ORIGIN_SETTING = "cleave.origin"
MAX_SQLITE_READERS = 4
# Commits between two WAL checkpoints (each in a thread: it syncs the disk).
CHECKPOINT_EVERY = 1000


class Database:
    """One service's database. Hand out connections only through `transaction` and `read`."""

    def __init__(self, service: str, url: str, *, pool_size: int = 5) -> None:
        self.service = service
        self.url = make_url(url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self._writer = asyncio.Lock() if self.is_sqlite else None
        namespace = Path(self.url.database or "").name if self.is_sqlite else self.url.database
        # OpenTelemetry database attributes, for the spans of this database's transactions.
        self.span_attributes = {
            "db.system.name": "sqlite" if self.is_sqlite else "postgresql",
            "db.namespace": str(namespace),
            "cleave.service": service,
        }
        # The payload of the outbox NOTIFYs of commits made here, for which a relay here was
        # woken in-process already.
        self.origin = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._readers: asyncio.Queue[AsyncConnection] = asyncio.Queue()
        self._reader_count = 0
        self._writer_connection: AsyncConnection | None = None
        self._commits = 0
        self._checkpointing: asyncio.Task[None] | None = None
        if self.is_sqlite:
            if self.url.database and self.url.database != ":memory:":
                private_file(Path(self.url.database))
            self.engine: AsyncEngine = create_async_engine(sqlite.inline_url(self.url))
            _configure_sqlite(self.engine)
        else:
            # `pool_size` connections, each kept once opened: no overflow, since an overflow
            # connection closed at its return is reopened at the next burst (a connect,
            # authentication and the statements prepared again), and a burst waits instead.
            self.engine = create_async_engine(
                self.url,
                pool_size=pool_size,
                max_overflow=0,
                pool_pre_ping=False,
                connect_args=_asyncpg_connect_args(self.url, self.origin),
            )

    @property
    def display_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """A read-write transaction: committed when the block ends, rolled back if it raises."""
        if self._writer is None:
            async with _translate_unavailable(self), self.engine.begin() as connection:
                yield connection
            return
        async with self._writer, _translate_unavailable(self):
            connection = await self._checkout_writer()
            try:
                async with sqlite.writer_transaction(connection):
                    yield connection
            except BaseException:
                if connection.invalidated or connection.in_transaction():
                    # The rollback did not go through: never hand it to the next writer.
                    self._writer_connection = None
                    await _close_quietly(connection)
                raise
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            self._start_checkpoint()

    @contextlib.asynccontextmanager
    async def write_one(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one write statement, atomic on its own: on PostgreSQL in AUTOCOMMIT,
        which saves the BEGIN and COMMIT round trips; on SQLite the writer's transaction."""
        if self.is_sqlite:
            async with self.transaction() as connection:
                yield connection
            return
        async with self.read() as connection:
            yield connection

    async def _checkout_writer(self) -> AsyncConnection:
        if self._writer_connection is None:
            connection = await self.engine.connect()
            raw = await connection.get_raw_connection()
            sqlite.configure_writer(raw.dbapi_connection)  # type: ignore[arg-type]
            self._writer_connection = connection
        return self._writer_connection

    def _start_checkpoint(self) -> None:
        if self._checkpointing is not None and not self._checkpointing.done():
            return
        path = self.url.database
        if path and path != ":memory:":
            self._checkpointing = asyncio.create_task(asyncio.to_thread(sqlite.checkpoint, path))

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reads only. Each statement sees the latest commit on its own.

        PostgreSQL: AUTOCOMMIT, which skips a BEGIN/ROLLBACK round trip. SQLite: a few reader
        connections held open without a transaction, which saves a checkout and a ROLLBACK.
        """
        if not self.is_sqlite:
            async with _translate_unavailable(self), self.engine.connect() as connection:
                await connection.execution_options(isolation_level="AUTOCOMMIT")
                yield connection
            return
        connection = await self._checkout_reader()
        try:
            yield connection
        except BaseException:
            # It may be mid-statement (a cancelled task): never hand it to the next reader.
            self._reader_count -= 1
            await _close_quietly(connection)
            raise
        self._readers.put_nowait(connection)

    async def _checkout_reader(self) -> AsyncConnection:
        with contextlib.suppress(asyncio.QueueEmpty):
            return self._readers.get_nowait()
        if self._reader_count >= MAX_SQLITE_READERS:
            return await self._readers.get()
        self._reader_count += 1
        try:
            async with _translate_unavailable(self):
                connection = await self.engine.connect()
                return await connection.execution_options(**{_READ_ONLY: True})
        except BaseException:
            self._reader_count -= 1
            raise

    @contextlib.asynccontextmanager
    async def listen(self, channel: str, on_notify: Callable[[str], None]) -> AsyncIterator[None]:
        """Call `on_notify` with the payload whenever a transaction on this database NOTIFYs
        `channel`.

        PostgreSQL only (SQLite has no such thing, and its writers share this process). If the
        listening connection cannot be had, the caller's polling carries on alone.
        """
        if self.is_sqlite:
            yield
            return
        connection = None
        try:
            connection = await self.engine.connect()
            driver: Any = (await connection.get_raw_connection()).driver_connection

            def listener(_connection: object, _pid: int, _channel: str, payload: str) -> None:
                on_notify(payload)

            await driver.add_listener(channel, listener)
        except Exception as error:
            structlog.get_logger("cleave.data.database").warning(
                "cannot listen for notifications; polling only",
                service=self.service,
                error=str(error),
            )
            if connection is not None:
                await _close_quietly(connection)
            yield
            return
        except BaseException:  # cancelled while setting up: leave no connection behind
            if connection is not None:
                await _close_quietly(connection)
            raise
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                await driver.remove_listener(channel, listener)
            await _close_quietly(connection)

    @property
    def connections_in_use(self) -> int:
        """Connections checked out of the pool now (held SQLite readers wait in their queue)."""
        checked_out: int = self.engine.pool.checkedout()  # type: ignore[attr-defined]
        idle_writer = self._writer is not None and not self._writer.locked()
        held_writer = 1 if self._writer_connection is not None and idle_writer else 0
        return checked_out - self._readers.qsize() - held_writer

    async def ping(self) -> None:
        async with self.read() as connection:
            await connection.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self._checkpointing is not None:
            with contextlib.suppress(Exception):
                await self._checkpointing
            self._checkpointing = None
        if self._writer_connection is not None:
            await _close_quietly(self._writer_connection)
            self._writer_connection = None
        while not self._readers.empty():
            with contextlib.suppress(Exception):
                await self._readers.get_nowait().close()
        self._reader_count = 0
        await self.engine.dispose()


_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def _asyncpg_connect_args(url: URL, origin: str) -> dict[str, Any]:
    """Each connection names its origin (the outbox trigger's NOTIFY payload), in the startup
    message, so at no round trip. No TLS attempt on loopback unless the URL or PGSSLMODE asks
    for one: asyncpg's default (`prefer`) asks the server for TLS at every new connection, and
    builds a TLS context first."""
    arguments: dict[str, Any] = {"server_settings": {ORIGIN_SETTING: origin}}
    asks = {"ssl", "sslmode"} & set(url.query) or os.environ.get("PGSSLMODE")
    host = url.host or ""
    if (host in _LOOPBACK or host.startswith("/")) and not asks:
        arguments["ssl"] = False
    return arguments


async def _close_quietly(connection: AsyncConnection) -> None:
    with contextlib.suppress(Exception):
        await asyncio.shield(connection.close())


@contextlib.asynccontextmanager
async def _translate_unavailable(database: Database) -> AsyncIterator[None]:
    try:
        yield
    except (OperationalError, DBAPIError) as error:
        if _is_connection_error(error):
            raise DatabaseUnavailable(
                f"cannot reach the database of {database.service} at {database.display_url}: "
                f"{_first_line(error.orig)}"
            ) from error
        raise
    except OSError as error:
        raise DatabaseUnavailable(
            f"cannot reach the database of {database.service} at {database.display_url}: {error}"
        ) from error


# SQLSTATE classes that mean "not now", not "wrong": connection exceptions (08), the server
# shutting down, crashed or still starting up (57P01-57P03), too many connections (53300), and a
# database or role that is not there yet (3D000, 28xxx: provisioning has not run).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "57P05", "53300", "3D000", "28")
# SQLite has no SQLSTATE: only a file that cannot be opened means the database is unreachable.
_SQLITE_UNAVAILABLE = ("unable to open database",)


# Of those, the ones a retry never fixes by itself: no such database, no such role or a wrong
# password (28xxx), until someone provisions or corrects them.
_MISCONFIGURED_SQLSTATES = ("3D000", "28")


def is_misconfigured(error: DatabaseUnavailable) -> bool:
    """Whether the database is unreachable because of how it is configured, not for now."""
    cause = error.__cause__
    if isinstance(cause, socket.gaierror):  # a host name that does not resolve: a wrong URL
        return True
    sqlstate = _sqlstate_of(cause.orig if isinstance(cause, DBAPIError) else cause)
    return sqlstate is not None and sqlstate.startswith(_MISCONFIGURED_SQLSTATES)


def _is_connection_error(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    sqlstate = _sqlstate_of(error.orig)
    if sqlstate is not None:
        return sqlstate.startswith(_UNAVAILABLE_SQLSTATES)
    message = str(error.orig).lower()
    if any(marker in message for marker in _SQLITE_UNAVAILABLE):
        return True
    # asyncpg's own connection errors before any SQLSTATE: a closed or lost connection.
    return isinstance(error.orig, OSError) or "connection is closed" in message


def _sqlstate_of(error: BaseException | None) -> str | None:
    """The SQLSTATE the driver reported, on the DB-API error or the asyncpg error it wraps."""
    while error is not None:
        sqlstate = getattr(error, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate:
            return sqlstate
        error = error.__cause__
    return None


def _first_line(value: object) -> str:
    return str(value).strip().splitlines()[0] if str(value).strip() else type(value).__name__


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        sqlite.configure(dbapi_connection)

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Readers run each statement on its own; writers take the write lock up front, so two
        # writers never deadlock upgrading a read lock.
        if not connection.get_execution_options().get(_READ_ONLY, False):
            sqlite.begin_immediate(connection.connection.driver_connection)


# A 64-bit integer (money in minor units): BIGINT, and on SQLite its INTEGER, 64-bit already.
BigInt = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """A timestamp stored as naive UTC and read back as aware UTC, on SQLite and PostgreSQL."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)
