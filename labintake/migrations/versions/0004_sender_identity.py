"""inbound duplicate key: the proven sender identity, and conflicts kept beside originals

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 01:10:00

The unique key of ``inbound_message`` was (MSH-3, MSH-4, MSH-10). It becomes (sender
identity, MSH-3, MSH-4, MSH-10, conflict digest): a message forged from a connection that
does not prove the sender no longer shares the real sender's key, and a later message that
reuses a control id with different content is stored beside the first one as a conflict.
Existing rows get identity "" (nothing proven) and conflict digest "" (an original), so
every existing key stays unique; their content digest stays empty (a resend of such a
message is treated as a duplicate, as before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "sender_identity",
                sqlmodel.sql.sqltypes.AutoString(length=120),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(
            sa.Column("content_digest", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "conflict_digest",
                sqlmodel.sql.sqltypes.AutoString(length=64),
                nullable=False,
                server_default="",
            )
        )
        batch_op.add_column(sa.Column("conflict_of_id", sa.Integer(), nullable=True))
        batch_op.drop_constraint("uq_inbound_sender_ctrl", type_="unique")
        batch_op.create_unique_constraint(
            "uq_inbound_identity_sender_ctrl",
            [
                "sender_identity",
                "sending_application",
                "sending_facility",
                "control_id",
                "conflict_digest",
            ],
        )


def downgrade() -> None:
    # Only possible while no identity-bound rows or conflicts share a (MSH-3, MSH-4, MSH-10).
    with op.batch_alter_table("inbound_message", schema=None) as batch_op:
        batch_op.drop_constraint("uq_inbound_identity_sender_ctrl", type_="unique")
        batch_op.create_unique_constraint(
            "uq_inbound_sender_ctrl", ["sending_application", "sending_facility", "control_id"]
        )
        batch_op.drop_column("conflict_of_id")
        batch_op.drop_column("conflict_digest")
        batch_op.drop_column("content_digest")
        batch_op.drop_column("sender_identity")
