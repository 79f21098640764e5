"""API idempotency keys bound to the request they came with

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 01:10:00

An `Idempotency-Key` a user sends with an API action is stored with the action, with a
SHA-256 of the action, the order and the body: the same key again with the same request is
answered with the current state, with any other request it is refused (422).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import labintake.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_idempotency_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("username", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("action", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("order_id", sa.Integer(), nullable=False),
        sa.Column("created_at", labintake.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("api_idempotency_key", schema=None) as batch_op:
        batch_op.create_index("ux_idempotency_user_key", ["username", "key"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("api_idempotency_key", schema=None) as batch_op:
        batch_op.drop_index("ux_idempotency_user_key")
    op.drop_table("api_idempotency_key")
