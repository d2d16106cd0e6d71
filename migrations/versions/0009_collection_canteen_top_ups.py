"""collection: canteen top-ups kept as rows, so their ids (`ctop_…`) can be read back

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-16 10:00:00
"""
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = '0009'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TOP_UPS = 'collection_canteen_top_ups'
CHUNK = 1000


def upgrade() -> None:
    op.create_table(TOP_UPS,
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('diner_id', sa.String(length=40), nullable=False),
    sa.Column('from_account_id', sa.String(length=60), nullable=False),
    sa.Column('amount_fen', sa.BigInteger(), nullable=False),
    sa.Column('personal_balance_fen', sa.BigInteger(), nullable=False),
    sa.Column('journal_ref', sa.String(length=120), nullable=False),
    sa.Column('journal_entry_id', sa.String(length=60), nullable=False),
    sa.Column('created_by', sa.String(length=80), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['diner_id'], ['collection_canteen_diners.id'], name=op.f('fk_collection_canteen_top_ups_diner_id_collection_canteen_diners')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_collection_canteen_top_ups_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_collection_canteen_top_ups'))
    )
    with op.batch_alter_table(TOP_UPS, schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_collection_canteen_top_ups_diner_id'), ['diner_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_collection_canteen_top_ups_tenant_id'), ['tenant_id'], unique=False)
    rows = list(_earlier_top_ups(op.get_bind()))
    table = sa.table(TOP_UPS, *(sa.column(name) for name in (
        'id', 'tenant_id', 'diner_id', 'from_account_id', 'amount_fen', 'personal_balance_fen',
        'journal_ref', 'journal_entry_id', 'created_by', 'created_at')))
    for start in range(0, len(rows), CHUNK):
        op.bulk_insert(table, rows[start:start + CHUNK])


def _earlier_top_ups(bind: Any) -> Iterator[dict[str, Any]]:
    """The top-ups made before this revision, whose ids partners got in the
    `diner_wallet.topped_up` events: the event links the top-up to its diner and says the wallet's
    balance after it; the ledger entry (journal ref `collection:top-up:{id}`) says the account and
    amount. An event whose entry or diner is gone (a sandbox reset deleted them) or a sample
    event (`data.sample`) has no top-up to keep; of two events naming one top-up (a sandbox
    seeding's, made again after a reset) the later one describes it."""
    events = sa.table('events', sa.column('tenant_id'), sa.column('type'),
                      sa.column('resource_id'), sa.column('actor'), sa.column('data', sa.JSON),
                      sa.column('created_at', sa.DateTime(timezone=True)), sa.column('id'))
    entries = sa.table('journal_entries', sa.column('id'), sa.column('tenant_id'),
                       sa.column('journal_ref'), sa.column('reference_type'),
                       sa.column('reference_id'), sa.column('total_fen'))
    postings = sa.table('postings', sa.column('entry_id'), sa.column('account_id'),
                        sa.column('amount_fen'))
    diners = sa.table('collection_canteen_diners', sa.column('id'), sa.column('tenant_id'))
    ledger: dict[tuple[str, str], tuple[str, str, str, int]] = {}
    for tenant_id, top_up_id, entry_id, ref, account_id, total in bind.execute(
            sa.select(entries.c.tenant_id, entries.c.reference_id, entries.c.id,
                      entries.c.journal_ref, postings.c.account_id, entries.c.total_fen)
            .join(postings, postings.c.entry_id == entries.c.id)
            .where(entries.c.reference_type == 'diner_top_up', postings.c.amount_fen < 0)):
        if ref == f'collection:top-up:{top_up_id}':
            ledger[(tenant_id, top_up_id)] = (entry_id, ref, account_id, int(total))
    if not ledger:
        return
    live = {(tenant_id, diner_id) for diner_id, tenant_id in bind.execute(
        sa.select(diners.c.id, diners.c.tenant_id))}
    seen: set[str] = set()
    for tenant_id, diner_id, actor, data, created_at in bind.execute(
            sa.select(events.c.tenant_id, events.c.resource_id, events.c.actor, events.c.data,
                      events.c.created_at)
            .where(events.c.type == 'diner_wallet.topped_up').order_by(events.c.id.desc())):
        top_up_id = (data or {}).get('top_up_id')
        if not isinstance(top_up_id, str) or data.get('sample') or top_up_id in seen:
            continue
        found = ledger.get((tenant_id, top_up_id))
        if found is None or (tenant_id, diner_id) not in live:
            continue
        seen.add(top_up_id)
        entry_id, ref, account_id, amount_fen = found
        balance = Decimal(data['diner']['personal_balance']['amount'])
        yield {'id': top_up_id, 'tenant_id': tenant_id, 'diner_id': diner_id,
               'from_account_id': account_id, 'amount_fen': amount_fen,
               'personal_balance_fen': int(balance * 100), 'journal_ref': ref,
               'journal_entry_id': entry_id, 'created_by': actor, 'created_at': created_at}


def downgrade() -> None:
    # The top-ups stay in the ledger and the events; only the rows kept for reading them go.
    with op.batch_alter_table(TOP_UPS, schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_collection_canteen_top_ups_tenant_id'))
        batch_op.drop_index(batch_op.f('ix_collection_canteen_top_ups_diner_id'))

    op.drop_table(TOP_UPS)
