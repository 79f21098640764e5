"""worker stage health: what /healthz and /metrics say about the background workers

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 01:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import labintake.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_stage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("stage", sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
        sa.Column("failing_since", labintake.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", labintake.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instance", "stage", name="uq_worker_stage"),
    )


def downgrade() -> None:
    op.drop_table("worker_stage")
