"""Catalog: each reserved order gets its mark row (sku ''), which a reserve arriving after its
order's release finds; existing reservations are marked in the state of their lines.

Revision ID: catalog_0003
Revises: catalog_0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "catalog_0003"
down_revision: str | Sequence[str] | None = "catalog_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # An order's lines move between states together, so any line's state is the order's.
    op.execute(
        "INSERT INTO reservations (order_id, sku, quantity, state, updated_at) "
        "SELECT order_id, '', 0, max(state), max(updated_at) FROM reservations "
        "WHERE sku <> '' GROUP BY order_id"
    )


def downgrade() -> None:
    op.execute("DELETE FROM reservations WHERE sku = ''")
