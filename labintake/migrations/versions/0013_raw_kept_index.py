"""Index of the raw messages still kept, by arrival, for the retention purge

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 15:50:00

The nightly purge of raw HL7 past the retention walked the whole inbound_message table in
one write transaction (on SQLite, holding the write lock every ACK waits for). A partial
index on received_at over the rows whose raw is still kept lets it find the oldest directly;
purged rows leave the index, so it stays the size of the retention window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.create_index(
            "ix_inbound_raw_kept",
            ["received_at"],
            unique=False,
            sqlite_where=sa.text("raw IS NOT NULL"),
            postgresql_where=sa.text("raw IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_index("ix_inbound_raw_kept")
