"""Storefront: browser sessions, carts and checkouts.

Revision ID: storefront_0001
Revises:
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cleave.data.database import UtcDateTime

revision: str = "storefront_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("storefront",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("expires_at", UtcDateTime, nullable=False),
    )
    op.create_index("ix_sessions_expires_at", "sessions", ["expires_at"])
    op.create_table(
        "cart_lines",
        sa.Column("owner", sa.String(80), primary_key=True),
        sa.Column("sku", sa.String(64), primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("added_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("quantity > 0", name="ck_cart_lines_quantity_positive"),
    )
    op.create_index("ix_cart_lines_added_at", "cart_lines", ["added_at"])
    op.create_table(
        "checkouts",
        sa.Column("owner", sa.String(80), primary_key=True),
        sa.Column("idempotency_key", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("checkouts")
    op.drop_table("cart_lines")
    op.drop_table("sessions")
