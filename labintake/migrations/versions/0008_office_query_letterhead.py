"""office queries: tests, one question per finding, respond-by date, why closed; user phone

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 04:10:00

A query stores the tests it lists, its questions (each with the answers that fit it), the
findings it asks about (an open query for the same findings is not written twice), the date
the office is asked to answer by, and why it closed (answered, or the order released,
rejected or cancelled). A user gets a direct line, printed on the queries they write.
Queries written before keep their single question text and shared choices.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("office_query", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "closed_reason",
                sqlmodel.sql.sqltypes.AutoString(length=40),
                nullable=False,
                server_default="",
            )
        )
        for name in ("tests", "questions", "finding_keys"):
            batch_op.add_column(
                sa.Column(name, sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
            )
        batch_op.add_column(sa.Column("respond_by", sa.Date(), nullable=True))
    op.execute("UPDATE office_query SET closed_reason = status WHERE status <> 'open'")
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "phone",
                sqlmodel.sql.sqltypes.AutoString(length=40),
                nullable=False,
                server_default="",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("app_user", schema=None) as batch_op:
        batch_op.drop_column("phone")
    with op.batch_alter_table("office_query", schema=None) as batch_op:
        for name in ("respond_by", "finding_keys", "questions", "tests", "closed_reason"):
            batch_op.drop_column(name)
