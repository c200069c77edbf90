"""notes

Revision ID: notes_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "notes_0001"
down_revision = None
branch_labels = ("notes",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "notes", sa.Column("id", sa.String(64), primary_key=True), sa.Column("text", sa.String(200))
    )


def downgrade() -> None:
    op.drop_table("notes")
