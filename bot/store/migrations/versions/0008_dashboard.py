"""The caseworkers' dashboard: organisations, users and their roles, sign-in sessions and
attempts, routing rules, an audit log, a keyed-hash search index, presence on a case; and on
cases: simulated, awaiting_since, last_inbound_at; on messages: the intent's confidence.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

from bot.store.models import Encrypted

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(
            sa.Column("simulated", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(sa.Column("awaiting_since", TZ, nullable=True))
        batch.add_column(sa.Column("last_inbound_at", TZ, nullable=True))
    op.create_index("ix_cases_awaiting", "cases", ["simulated", "urgency", "awaiting_since"])
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("confidence", sa.Float(), nullable=True))
    op.create_table(
        "organisations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("deploying", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("response_minutes", sa.JSON(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("email", sa.String(254), nullable=False, unique=True),
        sa.Column("password_hash", sa.String(256), nullable=True),
        sa.Column("totp_secret", Encrypted(), nullable=True),
        sa.Column("totp_enabled", sa.Boolean(), nullable=False),
        sa.Column("recovery_codes", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("disabled_at", TZ, nullable=True),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False, unique=True),
        sa.Column("organisation_id", sa.Integer(),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False,
                  index=True),
        sa.Column("role", sa.String(16), nullable=False),
    )  # fmt: skip
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("last_seen_at", TZ, nullable=False),
    )  # fmt: skip
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("at", TZ, nullable=False),
    )
    op.create_index("ix_login_attempts_account", "login_attempts", ["account", "at"])
    op.create_index("ix_login_attempts_address", "login_attempts", ["address", "at"])
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(2), nullable=True),
        sa.Column("language", sa.String(8), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("organisation_id", sa.Integer(),
                  sa.ForeignKey("organisations.id", ondelete="CASCADE"), nullable=False),
    )  # fmt: skip
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("actor", sa.String(254), nullable=False),
        sa.Column("action", sa.String(32), nullable=False, index=True),
        sa.Column("case_id", sa.Integer(), nullable=True, index=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("at", TZ, nullable=False, index=True),
    )
    op.create_table(
        "case_terms",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("term", sa.String(32), nullable=False),
    )  # fmt: skip
    op.create_index("ix_case_terms_term", "case_terms", ["term", "case_id"])
    op.create_table(
        "case_presence",
        sa.Column("case_id", sa.Integer(), sa.ForeignKey("cases.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("seen_at", TZ, nullable=False),
    )  # fmt: skip


def downgrade() -> None:
    for table in ("case_presence", "case_terms", "audit_log", "routing_rules", "login_attempts",
                  "web_sessions", "memberships", "users", "organisations"):  # fmt: skip
        op.drop_table(table)
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("confidence")
    op.drop_index("ix_cases_awaiting", table_name="cases")
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("last_inbound_at")
        batch.drop_column("awaiting_since")
        batch.drop_column("simulated")
