"""wage workers: the date a worker left

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-08 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0002'
down_revision: str | None = '0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('wage_workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('left_on', sa.Date(), nullable=True))
    # Workers who left before this revision: their last update is the best date known.
    workers = sa.table('wage_workers', sa.column('id', sa.String), sa.column('status', sa.String),
                       sa.column('updated_at', sa.DateTime(timezone=True)),
                       sa.column('left_on', sa.Date))
    conn = op.get_bind()
    rows = conn.execute(sa.select(workers.c.id, workers.c.updated_at)
                        .where(workers.c.status != 'active')).all()
    for worker_id, updated_at in rows:
        conn.execute(workers.update().where(workers.c.id == worker_id)
                     .values(left_on=updated_at.date() if updated_at else None))


def downgrade() -> None:
    with op.batch_alter_table('wage_workers', schema=None) as batch_op:
        batch_op.drop_column('left_on')
