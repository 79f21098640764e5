"""order notes: internal notes on an order

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07 01:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import labintake.db

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "order_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("at", labintake.db.UTCDateTime(), nullable=False),
        sa.Column("author", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["order_id"], ["lab_order.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("order_note", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_order_note_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("order_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_order_note_order_id"))
    op.drop_table("order_note")
