"""Terminal bindings: the regions, terminal id and rate each terminal caller is held to
(issue 12 finding 14).

Revision ID: 0002
Revises: 0001

"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0002'
down_revision: str | Sequence[str] | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('kmc_terminal_bindings',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('caller_name', sa.String(length=128), nullable=False),
    sa.Column('regions', sa.String(length=512), nullable=False),
    sa.Column('terminal_id', sa.String(length=64), nullable=True),
    sa.Column('rate_per_minute', sa.Integer(), nullable=False),
    sa.Column('window_start', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('caller_name')
    )


def downgrade() -> None:
    op.drop_table('kmc_terminal_bindings')
