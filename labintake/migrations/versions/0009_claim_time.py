"""claim time: when an order's assignee last changed

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 04:00:00

`lab_order.assigned_at` is set whenever `assigned_to` changes, so that a coder claiming an
order another coder holds is asked first, with who holds it and since when.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import labintake.db

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.add_column(sa.Column("assigned_at", labintake.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_column("assigned_at")
