"""collection order splits: the fee rule of the order's creation

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-09 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and not backfilled: splits stored before this revision have no rule and take
    # the sub-merchant's rule in force when their order is paid, as before (the rule of their
    # creation is not known any more).
    with op.batch_alter_table('collection_order_splits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('fee_rule', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('collection_order_splits', schema=None) as batch_op:
        batch_op.drop_column('fee_rule')
