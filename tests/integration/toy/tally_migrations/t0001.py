"""tally

Revision ID: tally_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "tally_0001"
down_revision = None
branch_labels = ("tally",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tallies",
        sa.Column("word", sa.String(200), primary_key=True),
        sa.Column("count", sa.Integer),
    )


def downgrade() -> None:
    op.drop_table("tallies")
