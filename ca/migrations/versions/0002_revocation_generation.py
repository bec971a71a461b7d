"""A revocation generation per CA, bumped in the same transaction as every revocation.

Caches in other processes (the OCSP responder's workers) poll it to learn that something was
revoked, including a certificateHold made final, which changes no revocation date.

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
    with op.batch_alter_table("cas") as batch:
        batch.add_column(sa.Column("revocation_generation", sa.BigInteger, nullable=False,
                                   server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("cas") as batch:
        batch.drop_column("revocation_generation")
