"""API clients authenticated by a certificate (stations and services signing their requests
with sscard.httpsig): the identity of the bound certificate, SHA-256 of its tbsCertificate.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.add_column(sa.Column("certificate_sha256", sa.String(64), nullable=True))
        batch.create_unique_constraint("uq_api_clients_certificate", ["certificate_sha256"])


def downgrade() -> None:
    with op.batch_alter_table("api_clients") as batch:
        batch.drop_constraint("uq_api_clients_certificate", type_="unique")
        batch.drop_column("certificate_sha256")
