"""wage workers: the agreed monthly wage

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-15 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL for the workers registered before: no wage agreed, any successful payment pays a
    # month (the rule before this revision), until the platform records the agreed wage.
    with op.batch_alter_table('wage_workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('monthly_wage_fen', sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('wage_workers', schema=None) as batch_op:
        batch_op.drop_column('monthly_wage_fen')
