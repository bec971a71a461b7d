"""Initial RA schema: officers, API clients, cardholders, cards, requests, approvals, batches.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    tz = sa.DateTime(timezone=True)
    op.create_table(
        "officers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(128), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("roles", sa.String(128), nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False),
        sa.Column("locked", sa.Boolean, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("certificate_der", sa.LargeBinary),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_table(
        "api_clients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_table(
        "cardholders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("ssn", sa.String(18), nullable=False, unique=True),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("sex", sa.String(1), nullable=False),
        sa.Column("ethnicity", sa.String(2), nullable=False),
        sa.Column("birthplace", sa.String(6), nullable=False),
        sa.Column("birth_date", sa.String(8), nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_table(
        "cards",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cardholder_id", sa.Integer, sa.ForeignKey("cardholders.id"), nullable=False),
        sa.Column("card_id", sa.String(32), nullable=False, unique=True),
        sa.Column("card_number", sa.String(9), nullable=False, unique=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sign_serial", sa.String(42)),
        sa.Column("enc_serial", sa.String(42)),
        sa.Column("escrow_key_id", sa.String(64)),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("public_id", sa.String(40), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cardholder_id", sa.Integer, sa.ForeignKey("cardholders.id")),
        sa.Column("card_ref", sa.Integer, sa.ForeignKey("cards.id")),
        sa.Column("requested_by", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("csr_der", sa.LargeBinary),
        sa.Column("batch_name", sa.String(64)),
        sa.Column("certificate_serial", sa.String(42)),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("created_at", tz, nullable=False),
        sa.Column("updated_at", tz, nullable=False),
    )
    op.create_index("ix_requests_state", "requests", ["state", "kind"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("requests.id"), nullable=False),
        sa.Column("officer", sa.String(64), nullable=False),
        sa.Column("decision", sa.String(8), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", tz, nullable=False),
        sa.UniqueConstraint("request_id", "officer", name="uq_approvals_officer"),
    )
    op.create_table(
        "batch_authorisations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("authorised_by", sa.String(64), nullable=False),
        sa.Column("limit", sa.Integer, nullable=False),
        sa.Column("used", sa.Integer, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_at", tz, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("batch_authorisations")
    op.drop_table("approvals")
    op.drop_index("ix_requests_state", "requests")
    op.drop_table("requests")
    op.drop_table("cards")
    op.drop_table("cardholders")
    op.drop_table("api_clients")
    op.drop_table("officers")
