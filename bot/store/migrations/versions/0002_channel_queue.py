"""Channel queue: delivery status, attempts and retry time on messages; WhatsApp window.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("error", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("reply_to_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_messages_reply_to", "messages", ["reply_to_id"], ["id"], ondelete="SET NULL"
        )
        batch.create_index("ix_messages_queue", ["status", "next_attempt_at"])


def downgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.drop_index("ix_messages_queue")
        batch.drop_constraint("fk_messages_reply_to", type_="foreignkey")
        for column in ("reply_to_id", "error", "next_attempt_at", "attempts", "status"):
            batch.drop_column(column)
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("last_inbound_at")
