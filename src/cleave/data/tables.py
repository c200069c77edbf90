"""The chassis's own tables in every service database (the `cleave` migration branch)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.dialects import sqlite

from cleave.data.database import UtcDateTime

metadata = MetaData()

# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL wants BIGINT for a growing log.
_Serial = BigInteger().with_variant(sqlite.INTEGER(), "sqlite")

outbox = Table(
    "cleave_outbox",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False, unique=True),
    Column("type", String(200), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
)
Index(
    "ix_cleave_outbox_pending",
    outbox.c.id,
    sqlite_where=outbox.c.delivered_at.is_(None),
    postgresql_where=outbox.c.delivered_at.is_(None),
)

inbox = Table(
    "cleave_inbox",
    metadata,
    Column("message_id", String(64), primary_key=True),
    Column("handler", String(200), primary_key=True),
    Column("type", String(200), nullable=False),
    Column("received_at", UtcDateTime, nullable=False),
)

dead_letters = Table(
    "cleave_dead_letters",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),
    Column("message_id", String(64), nullable=False),
    Column("handler", String(200), nullable=False),
    Column("type", String(200), nullable=False),
    Column("envelope", Text, nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("failed_at", UtcDateTime, nullable=False),
    Column("replayed_at", UtcDateTime, nullable=True),
)

sagas = Table(
    "cleave_sagas",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("status", String(16), nullable=False),
    Column("step", Integer, nullable=False),
    Column("data", Text, nullable=False),
    Column("failed_step", String(100), nullable=True),
    Column("reason", String(200), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("step_started_at", UtcDateTime, nullable=True),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    # How long the current step has run in this orchestrator's life: its downtime never counts.
    Column("step_spent_seconds", Float, nullable=False, server_default="0"),
    Column("last_error", Text, nullable=True),
)
Index("ix_cleave_sagas_due", sagas.c.status, sagas.c.next_attempt_at)

# What went wrong in a saga, and what was done about it: retries, compensation, parking, resuming.
saga_history = Table(
    "cleave_saga_history",
    metadata,
    Column("id", _Serial, primary_key=True, autoincrement=True),
    Column("saga_id", String(64), nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("step", String(100), nullable=True),
    Column("event", String(32), nullable=False),
    Column("detail", Text, nullable=True),
)
Index("ix_cleave_saga_history_saga", saga_history.c.saga_id, saga_history.c.id)
