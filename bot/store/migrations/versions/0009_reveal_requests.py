"""Requests to reveal, to a partner organisation, the fields a worker asked not to share.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

from bot.store.models import Encrypted

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reveal_requests",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("organisation", sa.String(64), nullable=False),
        sa.Column("requested_by", sa.String(254), nullable=False),
        sa.Column("reason", Encrypted(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("decided_by", sa.String(254), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("reveal_requests")
