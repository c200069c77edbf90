"""Statements built once, compiled once per dialect, and on SQLite run on the driver itself.

Building a Core statement, generating its cache key and going through SQLAlchemy's execution
machinery costs 70 to 180 µs a statement; the SQLite statement under it takes 5 µs. A hot path (the
saga log, the outbox, the inbox, an order's steps, a product read) declares its statement once,
with `bindparam`s for what varies, as a `Prepared`. It then runs straight on the driver under the
caller's SQLAlchemy connection, inside the same transaction, with the same type conversions
(SQLAlchemy's own bind and result processors) and the same exceptions: on SQLite (driven on the
loop's thread, `cleave.data.sqlite`) on the sqlite3 connection; on PostgreSQL on asyncpg, through
SQLAlchemy's own adapter of it (its transaction and prepared-statement cache).
"""

from __future__ import annotations

import re
from collections import namedtuple
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from sqlalchemy import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql import Executable

from cleave.data import sqlite

Processor = Callable[[Any], Any] | None
RowT = TypeVar("RowT")


@dataclass(frozen=True)
class _Plan:
    compiled: Any  # the dialect's SQLCompiler
    sql: str
    names: Sequence[str]
    binds: Mapping[str, Processor]
    results: list[Processor]  # asyncpg: filled at the first result
    row: Any


class Prepared(Generic[RowT]):
    """One statement, built once; `rows`, `one_or_none`, `rowcount` and `many` run it. An
    INSERT, UPDATE or DELETE with RETURNING gives its rows to `rows` and `one_or_none`.

    With `row`, a NamedTuple whose fields are the statement's columns in order, every row is one
    (on either database), so mypy sees the column names; a field list that differs from the
    columns is an error at the statement's first run, not a wrong attribute later."""

    @overload
    def __init__(self: Prepared[Any], statement: Executable) -> None: ...

    @overload
    def __init__(self, statement: Executable, row: type[RowT]) -> None: ...

    def __init__(self, statement: Executable, row: type[RowT] | None = None) -> None:
        self.statement: Any = statement
        self._row: Any = row
        self._checked = False  # the row type's fields against the columns, off SQLite
        self._plans: dict[str, _Plan] = {}

    def _plan(self, dialect: Dialect) -> _Plan:
        plan = self._plans.get(dialect.name)
        if plan is None:
            compiled: Any = self.statement.compile(dialect=dialect)
            if getattr(self.statement, "is_dml", False):
                # As SQLAlchemy's own path compiles it: a bound name that is also a column of the
                # table is refused there (PostgreSQL), so it is refused here too (SQLite).
                self.statement.compile(dialect=dialect, column_keys=list(compiled.binds))
            if compiled.literal_execute_params or compiled.post_compile_params:
                raise ValueError("a Prepared statement cannot hold an expanding IN")
            columns = _result_columns(self.statement)
            keys = self._keys()
            plan = _Plan(
                compiled=compiled,
                sql=compiled.string,
                names=list(compiled.positiontup or ()),
                binds=dict(compiled._bind_processors),
                # asyncpg's need the server's type of each column: found at the first result.
                results=[]
                if dialect.driver == "asyncpg"
                else [column.type._cached_result_processor(dialect, None) for column in columns],
                row=self._row or (namedtuple("Row", keys) if columns else None),
            )
            self._plans[dialect.name] = plan
        return plan

    def _asyncpg_results(
        self, dialect: Dialect, plan: _Plan, attributes: Sequence[Any]
    ) -> Sequence[Processor]:
        if not plan.results:
            columns = _result_columns(self.statement)
            oids = [attribute.type.oid for attribute in attributes]
            processors = [
                column.type._cached_result_processor(dialect, oid)
                for column, oid in zip(columns, oids, strict=True)
            ]
            plan.results.extend(processors)
        return plan.results

    def _keys(self) -> list[str]:
        """The result's column names, checked against the `row` type's fields."""
        keys = [column.key for column in _result_columns(self.statement)]
        if self._row is not None and list(self._row._fields) != keys:
            raise ValueError(f"{self._row.__name__} has fields {self._row._fields}, not {keys}")
        return keys

    def _arguments(self, plan: _Plan, params: Mapping[str, Any]) -> list[Any]:
        values = plan.compiled.construct_params(params, _check=False)
        arguments = []
        for name in plan.names:
            value = values[name]
            processor = plan.binds.get(name)
            arguments.append(processor(value) if processor is not None else value)
        return arguments

    async def rows(self, connection: AsyncConnection, **params: Any) -> list[RowT]:
        driver = _sqlite_driver(connection)
        if _is_asyncpg(connection):
            plan = self._plan(connection.dialect)
            records, _, attributes = await _on_asyncpg(
                connection, plan, self._arguments(plan, params)
            )
            if not records:
                return []
            processors = self._asyncpg_results(connection.dialect, plan, attributes)
            return [
                plan.row._make(
                    value if processor is None else processor(value)
                    for processor, value in zip(processors, record, strict=True)
                )
                for record in records
            ]
        if driver is None:
            found = (await connection.execute(self.statement, params)).all()
            if self._row is None:
                return list(found)  # type: ignore[arg-type]  # Prepared[Any]: SQLAlchemy's rows
            if not self._checked:
                self._keys()
                self._checked = True
            return [self._row._make(row) for row in found]
        plan = self._plan(connection.dialect)
        cursor = sqlite.on_driver(
            driver.execute, plan.sql, self._arguments(plan, params), sql=plan.sql
        )
        processors = plan.results
        return [
            plan.row._make(
                value if processor is None else processor(value)
                for processor, value in zip(processors, raw, strict=True)
            )
            for raw in cursor.fetchall()
        ]

    async def one_or_none(self, connection: AsyncConnection, **params: Any) -> RowT | None:
        found = await self.rows(connection, **params)
        if len(found) > 1:
            raise ValueError(f"more than one row for {self.statement}")
        return found[0] if found else None

    async def rowcount(self, connection: AsyncConnection, **params: Any) -> int:
        """Run an INSERT, UPDATE or DELETE; how many rows it touched."""
        driver = _sqlite_driver(connection)
        if _is_asyncpg(connection):
            plan = self._plan(connection.dialect)
            _, count, _ = await _on_asyncpg(connection, plan, self._arguments(plan, params))
            return count
        if driver is None:
            result: Any = await connection.execute(self.statement, params)
            return int(result.rowcount)
        plan = self._plan(connection.dialect)
        arguments = self._arguments(plan, params)
        return int(sqlite.on_driver(driver.execute, plan.sql, arguments, sql=plan.sql).rowcount)

    async def many(self, connection: AsyncConnection, params: Sequence[Mapping[str, Any]]) -> None:
        """Run it once per parameter set (an INSERT of several rows)."""
        driver = _sqlite_driver(connection)
        if _is_asyncpg(connection):
            plan = self._plan(connection.dialect)
            for each in params:  # an order's few lines: a round trip each, no batching protocol
                await _on_asyncpg(connection, plan, self._arguments(plan, each))
            return
        if driver is None:
            await connection.execute(self.statement, list(params))
            return
        plan = self._plan(connection.dialect)
        arguments = [self._arguments(plan, each) for each in params]
        sqlite.on_driver(driver.executemany, plan.sql, arguments, sql=plan.sql)


@overload
def by_shape(build: Callable[..., Executable]) -> Callable[..., Prepared[Any]]: ...


@overload
def by_shape(
    build: Callable[..., Executable], row: type[RowT]
) -> Callable[..., Prepared[RowT]]: ...


def by_shape(
    build: Callable[..., Executable], row: type[RowT] | None = None
) -> Callable[..., Prepared[RowT]]:
    """Statements whose shape varies a little (which columns an UPDATE sets, how many states it
    may leave): one `Prepared` per shape, built the first time that shape is asked for."""
    made: dict[tuple[Hashable, ...], Prepared[RowT]] = {}

    def prepared(*shape: Hashable) -> Prepared[RowT]:
        statement = made.get(shape)
        if statement is None:
            statement = made[shape] = Prepared(build(*shape), row)  # type: ignore[arg-type]
        return statement

    return prepared


def _result_columns(statement: Any) -> list[Any]:
    """What a row of the statement holds: a SELECT's columns, or what DML RETURNs."""
    if getattr(statement, "is_select", False):
        return list(statement.selected_columns)
    if getattr(statement, "is_dml", False) and statement._returning:
        return list(statement.exported_columns)
    return []


_ROWCOUNT = re.compile(r"(?:SELECT|UPDATE|DELETE|INSERT \d+) (\d+)")


def _is_asyncpg(connection: AsyncConnection) -> bool:
    return connection.dialect.driver == "asyncpg"


async def _on_asyncpg(
    connection: AsyncConnection, plan: _Plan, arguments: list[Any]
) -> tuple[list[Any], int, Sequence[Any]]:
    """Run on asyncpg through SQLAlchemy's adapter of it (its transaction, begun as SQLAlchemy
    begins it; its prepared-statement cache; its error translation), without the execution
    machinery around it: the records, how many rows it touched, and the result's attributes."""
    adapted: Any = connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
    failure: DBAPIError | None = None
    async with adapted._execute_mutex:
        try:
            if adapted._transaction is None:
                await adapted._start_transaction()
            statement, attributes = await adapted._prepare(
                plan.sql,
                connection.dialect._invalidate_schema_cache_asof,  # type: ignore[attr-defined]
            )
            records = await statement.fetch(*arguments)
            status = statement.get_statusmsg()
        except Exception as error:
            try:
                adapted._handle_exception(error)  # raises it as the DBAPI's error
            except adapted.dbapi.Error as translated:
                lost = connection.dialect.is_disconnect(translated, adapted, None)
                failure = DBAPIError.instance(
                    plan.sql,
                    arguments,
                    translated,
                    adapted.dbapi.Error,
                    connection_invalidated=lost,
                )
                failure.__cause__ = error
            if failure is None:
                raise
    if failure is not None:
        if failure.connection_invalidated:
            # As SQLAlchemy's own execution does: the pool then replaces the lost connection,
            # instead of handing it out again after the server restarted.
            await connection.invalidate(failure)
        raise failure
    counted = _ROWCOUNT.match(status or "")
    return records, int(counted.group(1)) if counted else -1, attributes


def _sqlite_driver(connection: AsyncConnection) -> Any:
    """The sqlite3 connection under a connection of the in-loop SQLite driver, else None."""
    if connection.dialect.driver != "cleave":
        return None
    return connection.sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
