"""An escrow request's idempotency key ("<caller>/<its request id>") and the SHA-256 of the
public key it was enveloped for: a caller that lost the answer asks again with the same id and
gets the same escrowed key (enveloped afresh for the same card), never a second key pair.

Revision ID: 0004
Revises: 0003
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | Sequence[str] | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('kmc_escrowed_keys') as batch:
        batch.add_column(sa.Column('request_key', sa.String(length=300), nullable=True))
        batch.add_column(sa.Column('recipient_sha256', sa.String(length=64), nullable=True))
    op.create_index('uq_kmc_escrowed_keys_request_key', 'kmc_escrowed_keys', ['request_key'],
                    unique=True)


def downgrade() -> None:
    op.drop_index('uq_kmc_escrowed_keys_request_key', table_name='kmc_escrowed_keys')
    with op.batch_alter_table('kmc_escrowed_keys') as batch:
        batch.drop_column('recipient_sha256')
        batch.drop_column('request_key')
