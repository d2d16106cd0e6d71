"""egov payment orders: the failure code of the latest refused checkout attempt, and the
portal's reason for a cancellation

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-14 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('egov_payment_orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_failure_code', sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sa.String(length=300), nullable=True))
    # Orders refused before this revision: their latest refused attempt gives the code.
    op.execute(
        "UPDATE egov_payment_orders SET last_failure_code = ("
        " SELECT a.failure_code FROM egov_payment_attempts a"
        " WHERE a.order_id = egov_payment_orders.id AND a.outcome = 'failed'"
        " ORDER BY a.created_at DESC, a.id DESC LIMIT 1)"
        " WHERE failed_attempts > 0")


def downgrade() -> None:
    with op.batch_alter_table('egov_payment_orders', schema=None) as batch_op:
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('last_failure_code')
