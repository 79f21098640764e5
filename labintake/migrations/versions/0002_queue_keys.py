"""queue keys: priority rank and accent-free name keys

The queue sorts STAT orders first (priority rank, then due time) and searches names whatever
their case and accents; SQLite's lower() only knows ASCII, so the keys are computed in Python
(`labintake.search_keys`) when an order is written, and here for the orders already stored.
The database-computed `family_name_key` they replace is dropped.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07 01:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from labintake.search_keys import fold, priority_rank

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

IN_QUEUE = sa.text("status IN ('held', 'awaiting_office')")
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("priority_rank", sa.SmallInteger(), nullable=False, server_default="3")
        )
        batch_op.add_column(sa.Column("family_fold", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("given_fold", sa.String(length=200), nullable=True))
        batch_op.drop_index("ix_order_family_key")
        batch_op.drop_column("family_name_key")
    bind = op.get_bind()
    orders = sa.table(
        "lab_order",
        sa.column("id", sa.Integer),
        sa.column("priority", sa.String),
        sa.column("patient_family_name", sa.String),
        sa.column("patient_given_name", sa.String),
        sa.column("priority_rank", sa.SmallInteger),
        sa.column("family_fold", sa.String),
        sa.column("given_fold", sa.String),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(
                orders.c.id,
                orders.c.priority,
                orders.c.patient_family_name,
                orders.c.patient_given_name,
            )
            .where(orders.c.id > last)
            .order_by(orders.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            orders.update()
            .where(orders.c.id == sa.bindparam("row_id"))
            .values(
                priority_rank=sa.bindparam("rank"),
                family_fold=sa.bindparam("family"),
                given_fold=sa.bindparam("given"),
            ),
            [
                {
                    "row_id": r.id,
                    "rank": priority_rank(r.priority or ""),
                    "family": fold(r.patient_family_name or ""),
                    "given": fold(r.patient_given_name or ""),
                }
                for r in rows
            ],
        )
        last = rows[-1].id
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.create_index("ix_order_family_fold", ["family_fold"], unique=False)
        batch_op.create_index(
            "ix_order_queue_priority",
            ["priority_rank", "due_at", "id", "status"],
            unique=False,
            sqlite_where=IN_QUEUE,
            postgresql_where=IN_QUEUE,
        )


def downgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_index("ix_order_queue_priority", sqlite_where=IN_QUEUE, postgresql_where=IN_QUEUE)
        batch_op.drop_index("ix_order_family_fold")
        batch_op.add_column(
            sa.Column(
                "family_name_key",
                sa.String(length=200),
                sa.Computed("lower(patient_family_name)", persisted=True),
                nullable=True,
            )
        )
        batch_op.create_index("ix_order_family_key", ["family_name_key"], unique=False)
        batch_op.drop_column("given_fold")
        batch_op.drop_column("family_fold")
        batch_op.drop_column("priority_rank")
