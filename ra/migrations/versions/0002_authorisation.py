"""Authorisation that holds (issue 12): server-side sessions and one-time log-in challenges,
log-in throttling per account and source, officer accounts bound to a person and enabled by a
second administrator, optimistic locking and an execution claim on requests, and batches bound
to a station, cardholders and an expiry.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    with op.batch_alter_table("officers") as batch:
        batch.drop_column("failed_logins")
        batch.drop_column("locked")
        batch.add_column(sa.Column("person_id", sa.String(64)))
        batch.add_column(sa.Column("pending_by", sa.String(64)))
    op.create_table(
        "login_throttle",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("account", sa.String(64)),
        sa.Column("failures", sa.Integer, nullable=False),
        sa.Column("lockouts", sa.Integer, nullable=False),
        sa.Column("blocked_until", tz),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_index("ix_login_throttle_account", "login_throttle", ["account"])
    op.create_table(
        "web_sessions",
        sa.Column("token_sha256", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(64)),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("seen_at", tz, nullable=False),
    )
    op.create_index("ix_web_sessions_username", "web_sessions", ["username"])
    op.create_table(
        "login_challenges",
        sa.Column("challenge", sa.String(64), primary_key=True),
        sa.Column("expires_at", tz, nullable=False),
    )
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("version", sa.Integer, nullable=False,
                                   server_default="1"))
        batch.add_column(sa.Column("claimed_at", tz))
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("person", sa.String(64)))
    with op.batch_alter_table("batch_authorisations") as batch:
        batch.add_column(sa.Column("station", sa.String(64)))
        batch.add_column(sa.Column("cardholders", sa.Text))
        batch.add_column(sa.Column("expires_at", tz))
    # a batch from before station binding was open to every client: close it
    op.execute(sa.text("UPDATE batch_authorisations SET active = :no").bindparams(no=False))


def downgrade() -> None:
    with op.batch_alter_table("batch_authorisations") as batch:
        batch.drop_column("expires_at")
        batch.drop_column("cardholders")
        batch.drop_column("station")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("person")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("claimed_at")
        batch.drop_column("version")
    op.drop_table("login_challenges")
    op.drop_index("ix_web_sessions_username", "web_sessions")
    op.drop_table("web_sessions")
    op.drop_index("ix_login_throttle_account", "login_throttle")
    op.drop_table("login_throttle")
    with op.batch_alter_table("officers") as batch:
        batch.drop_column("pending_by")
        batch.drop_column("person_id")
        batch.add_column(sa.Column("locked", sa.Boolean, nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("failed_logins", sa.Integer, nullable=False,
                                   server_default="0"))
