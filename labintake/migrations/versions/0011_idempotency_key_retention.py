"""Idempotency keys are purged after a retention: an index on their age

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 04:20:00

The retention job deletes the keys older than `LABINTAKE_IDEMPOTENCY_KEY_RETENTION_DAYS`,
oldest first, in batches: each batch is found through this index instead of a scan of the
whole table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_idempotency_key", schema=None) as batch_op:
        batch_op.create_index("ix_idempotency_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("api_idempotency_key", schema=None) as batch_op:
        batch_op.drop_index("ix_idempotency_created_at")
