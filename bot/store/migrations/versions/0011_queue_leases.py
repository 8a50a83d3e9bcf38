"""Issue 13: per-worker leases, so that several processes can share the channels' queue (one
process handles a worker's messages at a time, in order), and an index for the sweep.

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "queue_leases",
        sa.Column(
            "contact_id",
            sa.Integer(),
            sa.ForeignKey("contacts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_queue_leases_expires_at", "queue_leases", ["expires_at"])
    # A worker's oldest pending message / queued reply: the queue's most frequent query.
    op.create_index(
        "ix_messages_contact_queue", "messages", ["contact_id", "direction", "status", "id"]
    )


def downgrade() -> None:
    op.drop_index("ix_messages_contact_queue", table_name="messages")
    op.drop_index("ix_queue_leases_expires_at", table_name="queue_leases")
    op.drop_table("queue_leases")
