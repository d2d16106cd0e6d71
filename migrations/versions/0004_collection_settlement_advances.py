"""collection: refunds of settled orders advanced by the bank, repaid from settlements

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-10 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Zero for the rows before this revision: their refunds were paid from the clearing
    # account and no settlement repaid an advance.
    with op.batch_alter_table('collection_refunds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('advanced_fen', sa.BigInteger(), server_default='0',
                                      nullable=False))
    with op.batch_alter_table('collection_settlements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('advanced_fen', sa.BigInteger(), server_default='0',
                                      nullable=False))
        batch_op.add_column(sa.Column('repaid_fen', sa.BigInteger(), server_default='0',
                                      nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('collection_settlements', schema=None) as batch_op:
        batch_op.drop_column('repaid_fen')
        batch_op.drop_column('advanced_fen')
    with op.batch_alter_table('collection_refunds', schema=None) as batch_op:
        batch_op.drop_column('advanced_fen')
