"""collection: what each incoming transfer's money paid (orders and bill payments)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-11 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Not backfilled: transfers applied before this revision list no applications (their
    # `applied_fen` still says how much of them was used).
    op.create_table('collection_incoming_applications',
    sa.Column('incoming_transfer_id', sa.String(length=40), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('target_id', sa.String(length=40), nullable=False),
    sa.Column('order_id', sa.String(length=40), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('applied_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['incoming_transfer_id'], ['collection_incoming_transfers.id'], name=op.f('fk_collection_incoming_applications_incoming_transfer_id_collection_incoming_transfers')),
    sa.ForeignKeyConstraint(['order_id'], ['collection_orders.id'], name=op.f('fk_collection_incoming_applications_order_id_collection_orders')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_collection_incoming_applications_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('incoming_transfer_id', 'seq', name=op.f('pk_collection_incoming_applications'))
    )
    with op.batch_alter_table('collection_incoming_applications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_incoming_applications_order_id'), ['order_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_incoming_applications_tenant_id'), ['tenant_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('collection_incoming_applications', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_incoming_applications_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_collection_incoming_applications_order_id'))

    op.drop_table('collection_incoming_applications')
