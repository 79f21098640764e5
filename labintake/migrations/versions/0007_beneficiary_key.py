"""beneficiary key: a patient's history across senders

Medicare frequency limits count per beneficiary, whoever sent the earlier order. Each order
keeps `MBI|<mbi>` when it carries a Medicare beneficiary identifier (PID-3 or an IN1 member
id), else `<sending facility>|<MRN>`, and the history is read by that key
(`labintake.verification.beneficiary`). Orders already stored get it from the identifiers and
insurances their `details` kept.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 04:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from labintake.verification.beneficiary import stored_patient_key

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("beneficiary_key", sa.String(length=330), nullable=False, server_default="")
        )
    bind = op.get_bind()
    orders = sa.table(
        "lab_order",
        sa.column("id", sa.Integer),
        sa.column("sending_facility", sa.String),
        sa.column("patient_mrn", sa.String),
        sa.column("details", sa.JSON),
        sa.column("beneficiary_key", sa.String),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(
                orders.c.id, orders.c.sending_facility, orders.c.patient_mrn, orders.c.details
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
            .values(beneficiary_key=sa.bindparam("key")),
            [
                {
                    "row_id": r.id,
                    "key": stored_patient_key(
                        r.details if isinstance(r.details, dict) else {},
                        r.sending_facility or "",
                        r.patient_mrn or "",
                    ),
                }
                for r in rows
            ],
        )
        last = rows[-1].id
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.create_index(
            "ix_order_beneficiary_dos", ["beneficiary_key", "date_of_service"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("lab_order", schema=None) as batch_op:
        batch_op.drop_index("ix_order_beneficiary_dos")
        batch_op.drop_column("beneficiary_key")
