"""Outbox: on PostgreSQL a trigger NOTIFYs relays of new rows, naming the connection's origin.

The NOTIFY was a statement of its own in every transaction that published events, a round trip
each; the trigger sends it in the INSERT's. Its payload is the `cleave.origin` setting each
connection of a chassis database is opened with, so a relay can ignore its own process's commits,
for which it was woken in-process. SQLite has no NOTIFY: nothing to do there.

Revision ID: c0004
Revises: c0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c0004"
down_revision: str | Sequence[str] | None = "c0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE OR REPLACE FUNCTION cleave_outbox_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify(
                'cleave_outbox', coalesce(current_setting('cleave.origin', true), '')
            );
            RETURN NULL;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER cleave_outbox_notify AFTER INSERT ON cleave_outbox "
        "FOR EACH STATEMENT EXECUTE FUNCTION cleave_outbox_notify()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS cleave_outbox_notify ON cleave_outbox")
    op.execute("DROP FUNCTION IF EXISTS cleave_outbox_notify()")
