"""Callers authenticated by a certificate (service identities signing their requests with
sscard.httpsig): the identity of the bound certificate, SHA-256 of its tbsCertificate.

Revision ID: 0003
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0003'
down_revision: str | Sequence[str] | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('kmc_callers') as batch:
        batch.add_column(sa.Column('certificate_sha256', sa.String(length=64), nullable=True))
        batch.create_unique_constraint('uq_kmc_callers_certificate', ['certificate_sha256'])


def downgrade() -> None:
    with op.batch_alter_table('kmc_callers') as batch:
        batch.drop_constraint('uq_kmc_callers_certificate', type_='unique')
        batch.drop_column('certificate_sha256')
