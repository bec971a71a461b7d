"""Initial CA schema: CAs, certificates, requests, CRLs.

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
        "cas",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("cas.id")),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("key_spec", sa.Text, nullable=False),
        sa.Column("certificate_der", sa.LargeBinary),
        sa.Column("csr_der", sa.LargeBinary),
        sa.Column("created_at", tz, nullable=False),
    )
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issuer_id", sa.Integer, sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("serial", sa.String(42), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("not_before", tz, nullable=False),
        sa.Column("not_after", tz, nullable=False),
        sa.Column("issued_at", tz, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", tz),
        sa.Column("revocation_reason", sa.Integer),
        sa.Column("invalidity_date", tz),
        sa.UniqueConstraint("issuer_id", "serial", name="uq_certificates_issuer_serial"),
    )
    op.create_index("ix_certificates_issuer_revoked", "certificates", ["issuer_id", "revoked_at"])
    op.create_table(
        "requests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issuer_id", sa.Integer, sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("request_der", sa.LargeBinary, nullable=False),
        sa.Column("certificate_serial", sa.String(42), nullable=False),
        sa.Column("received_at", tz, nullable=False),
    )
    op.create_table(
        "crls",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issuer_id", sa.Integer, sa.ForeignKey("cas.id"), nullable=False),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("is_delta", sa.Boolean, nullable=False),
        sa.Column("base_number", sa.Integer),
        sa.Column("this_update", tz, nullable=False),
        sa.Column("next_update", tz, nullable=False),
        sa.Column("der", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("issuer_id", "number", name="uq_crls_issuer_number"),
    )


def downgrade() -> None:
    op.drop_table("crls")
    op.drop_table("requests")
    op.drop_index("ix_certificates_issuer_revoked", "certificates")
    op.drop_table("certificates")
    op.drop_table("cas")
