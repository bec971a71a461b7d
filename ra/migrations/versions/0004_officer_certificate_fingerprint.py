"""Officers' certificates found by fingerprint: the x5t#S256 (base64url SHA-256 of the DER) of
each registered certificate in an indexed column, filled in for the certificates registered
before, so that a card log-in looks its account up instead of hashing every officer's
certificate.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import base64
import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

officers = sa.table("officers", sa.column("id", sa.Integer),
                    sa.column("certificate_der", sa.LargeBinary),
                    sa.column("certificate_x5t_s256", sa.String))


def x5t_s256(der: bytes) -> str:
    # as ra.service computes it; written out so that this revision stays what it was
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def upgrade() -> None:
    with op.batch_alter_table("officers") as batch:
        batch.add_column(sa.Column("certificate_x5t_s256", sa.String(43), nullable=True))
    conn = op.get_bind()
    rows = conn.execute(sa.select(officers.c.id, officers.c.certificate_der).where(
        officers.c.certificate_der.is_not(None))).all()
    for officer_id, der in rows:
        conn.execute(officers.update().where(officers.c.id == officer_id).values(
            certificate_x5t_s256=x5t_s256(bytes(der))))
    op.create_index("ix_officers_certificate_x5t_s256", "officers", ["certificate_x5t_s256"])


def downgrade() -> None:
    op.drop_index("ix_officers_certificate_x5t_s256", table_name="officers")
    with op.batch_alter_table("officers") as batch:
        batch.drop_column("certificate_x5t_s256")
