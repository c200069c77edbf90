"""Sagas: the time a step has really run, its last error, and a history of what went wrong.

Revision ID: c0003
Revises: c0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cleave.data.database import UtcDateTime

revision: str = "c0003"
down_revision: str | Sequence[str] | None = "c0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("cleave_sagas") as table:
        table.add_column(
            sa.Column("step_spent_seconds", sa.Float, nullable=False, server_default="0")
        )
        table.add_column(sa.Column("last_error", sa.Text, nullable=True))
    op.create_table(
        "cleave_saga_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("saga_id", sa.String(64), nullable=False),
        sa.Column("at", UtcDateTime, nullable=False),
        sa.Column("step", sa.String(100), nullable=True),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
    )
    op.create_index("ix_cleave_saga_history_saga", "cleave_saga_history", ["saga_id", "id"])


def downgrade() -> None:
    op.drop_table("cleave_saga_history")
    with op.batch_alter_table("cleave_sagas") as table:
        table.drop_column("last_error")
        table.drop_column("step_spent_seconds")
