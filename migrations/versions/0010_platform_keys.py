"""platform keys: the fingerprints of the keys the database's data is written under

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-16 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Empty: the first start of this release records the keys it runs with, once it has
    # checked them against the data already written (gateway.keyguard).
    op.create_table('platform_keys',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_platform_keys'))
    )


def downgrade() -> None:
    op.drop_table('platform_keys')
