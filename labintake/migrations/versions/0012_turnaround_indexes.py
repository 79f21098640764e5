"""Indexes for the dashboard's date ranges: orders by arrival, events by action and time

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 04:10:00

Turnaround by stage reads the orders received between two days; coder productivity reads the
releases and rejects written between two days. Both were full scans without these.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.create_index("ix_order_created_at", ["created_at"], unique=False)
    with op.batch_alter_table("order_event", schema=None) as batch_op:
        batch_op.create_index("ix_order_event_action_at", ["action", "at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("order_event", schema=None) as batch_op:
        batch_op.drop_index("ix_order_event_action_at")
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_index("ix_order_created_at")
