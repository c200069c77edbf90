"""The chassis tables every service database carries: outbox, inbox, dead letters.

Revision ID: c0001
Revises:
Create Date: 2026-11-28
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cleave.data.database import UtcDateTime

revision: str = "c0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("cleave",)
depends_on: str | Sequence[str] | None = None

_Serial = sa.BigInteger().with_variant(sa.INTEGER(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "cleave_outbox",
        sa.Column("id", _Serial, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False, unique=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("delivered_at", UtcDateTime, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index(
        "ix_cleave_outbox_pending",
        "cleave_outbox",
        ["id"],
        sqlite_where=sa.text("delivered_at IS NULL"),
        postgresql_where=sa.text("delivered_at IS NULL"),
    )
    op.create_table(
        "cleave_inbox",
        sa.Column("message_id", sa.String(64), primary_key=True),
        sa.Column("handler", sa.String(200), primary_key=True),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("received_at", UtcDateTime, nullable=False),
    )
    op.create_table(
        "cleave_dead_letters",
        sa.Column("id", _Serial, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(64), nullable=False),
        sa.Column("handler", sa.String(200), nullable=False),
        sa.Column("type", sa.String(200), nullable=False),
        sa.Column("envelope", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("failed_at", UtcDateTime, nullable=False),
        sa.Column("replayed_at", UtcDateTime, nullable=True),
    )


def downgrade() -> None:
    op.drop_table("cleave_dead_letters")
    op.drop_table("cleave_inbox")
    op.drop_index("ix_cleave_outbox_pending", table_name="cleave_outbox")
    op.drop_table("cleave_outbox")
