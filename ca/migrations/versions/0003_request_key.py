"""An issuance request's idempotency key: the caller's name and its own request id.

A caller that did not get the answer to an issuance (the connection broke after the CA
committed) asks again with the same request id and gets the certificate issued the first time,
never a second one. NULL for requests that named no id (any number of those).

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
    with op.batch_alter_table("requests") as batch:
        batch.add_column(sa.Column("request_key", sa.String(300), nullable=True))
    op.create_index("uq_requests_request_key", "requests", ["request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_requests_request_key", table_name="requests")
    with op.batch_alter_table("requests") as batch:
        batch.drop_column("request_key")
