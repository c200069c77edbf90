"""Identity: the revocations in force (users, tokens, sign-ins ended before their tokens expire),
listed to every unit as it starts.

Revision ID: identity_0003
Revises: identity_0002
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from cleave.data.database import UtcDateTime

revision: str = "identity_0003"
down_revision: str | Sequence[str] | None = "identity_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revocations",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("value", sa.String(255), primary_key=True),
        sa.Column("until", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("revocations")
