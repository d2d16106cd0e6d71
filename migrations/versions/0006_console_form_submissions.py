"""console: one-time form submissions (no double effects from a repeated post) and the expiry
of a TOTP set-up in progress

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-12 10:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('console_form_submissions',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('token_sha256', sa.String(length=64), nullable=False),
    sa.Column('operator_id', sa.String(length=40), nullable=False),
    sa.Column('result_url', sa.String(length=500), nullable=False),
    sa.Column('secret', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['operator_id'], ['operators.id'], name=op.f('fk_console_form_submissions_operator_id_operators')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_console_form_submissions')),
    sa.UniqueConstraint('token_sha256', name=op.f('uq_console_form_submissions_token_sha256'))
    )
    with op.batch_alter_table('console_form_submissions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_console_form_submissions_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_console_form_submissions_operator_id'), ['operator_id'], unique=False)

    # Not backfilled: a set-up begun before this revision has no expiry and is begun again.
    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.add_column(sa.Column('totp_pending_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('operators', schema=None) as batch_op:
        batch_op.drop_column('totp_pending_until')

    with op.batch_alter_table('console_form_submissions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_console_form_submissions_operator_id'))
        batch_op.drop_index(batch_op.f('ix_console_form_submissions_created_at'))

    op.drop_table('console_form_submissions')
