"""Virtual accounts (虚拟子账户) and the matching of money that arrives at them.

A virtual account is a ledger sub-account (kind `virtual`) under the platform's own account,
with its own account number that a payer transfers to. Money arriving there is the payer's
*credit* (`unapplied_fen`) until the matcher applies it, in this order:

1. pending orders on the account, the one named in the transfer's memo (附言) first, then
   oldest first; an order is paid only in full (from the credit, never partly);
2. for a park tenant's account, its open bills, the one named in the memo first, then by due
   date, oldest first; a bill may be paid in part (products.collection.park).

A memo names an order (by merchant_order_no or id) or a bill (by reference or id) only as a
whole token: see `memo_rank`.

What is left stays as credit and pays the next order or bill created for the account. The
matcher runs when money arrives, when an order is created on the account and when a bill is
created for its tenant, always under the virtual account's row lock.

Each incoming transfer records how much of *its* money was applied, and to what: credit is
spent first in, first applied (`_record_applied`), so an older transfer's row changes when its
credit pays an order or bill later, and a payment may draw on several transfers. A transfer's
`applications` (one `IncomingApplication` row each) add up to its `applied`.

Incoming transfers: in production the core-banking adapter calls `receive_transfer` when an
interbank credit for a virtual account number arrives. In the sandbox, the partner simulates
one with `POST /v1/collection/virtual-accounts/{id}/simulate-incoming` (sandbox credentials
only), which calls the same function.
"""

from __future__ import annotations

import string
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.errors import Conflict
from gateway.events import publish
from gateway.ids import new_id
from gateway.money import Money, parse_fen
from gateway.pii import mask_account_number, mask_name
from gateway.tenancy import is_sandbox
from products.collection import ledger, repository, schemas, service, views
from products.collection.errors import (
    IncomingTransferNotFound,
    SandboxOnly,
    VirtualAccountNotFound,
)
from products.collection.models import (
    CollectionSettings,
    IncomingApplication,
    IncomingTransfer,
    Order,
    VirtualAccount,
)


class PlatformAccountRequired(Conflict):
    code, title = "platform_account_required", "Set the platform's account first"


class VirtualAccountNotUsable(Conflict):
    code, title = "virtual_account_not_usable", "The virtual account cannot be used for this"


def check_payer_account(account: VirtualAccount) -> None:
    """Orders may be paid through a payer's virtual account (a park tenant's pays bills)."""
    if account.status != "active":
        raise VirtualAccountNotUsable(f"Virtual account {account.id} is {account.status}.")
    if account.owner_type != "payer":
        raise VirtualAccountNotUsable(
            f"Virtual account {account.id} belongs to a park tenant: it pays that tenant's bills, "
            "not orders.")


def open_virtual_account(session: Session, settings: CollectionSettings, *, actor: str,
                         now: datetime, label: str, owner_type: str,
                         owner_id: str | None = None) -> VirtualAccount:
    """Open a virtual sub-account under the platform's account (the settings' fee account)."""
    if settings.fee_account_id is None:
        raise PlatformAccountRequired(
            "Virtual accounts are opened under the platform's own account: set "
            "fee_account_id with PATCH /v1/collection/settings first.")
    ledger_id, number = ledger.open_virtual(session, settings.tenant_id,
                                            parent_account_id=settings.fee_account_id,
                                            label=label, at=now)
    account = VirtualAccount(id=new_id("cva"), tenant_id=settings.tenant_id,
                             ledger_account_id=ledger_id, account_number=number, label=label,
                             owner_type=owner_type, owner_id=owner_id, status="active",
                             unapplied_fen=0, created_by=actor, created_at=now)
    session.add(account)
    session.flush()
    publish(session, tenant_id=settings.tenant_id, type="virtual_account.created",
            resource_type="virtual_account", resource_id=account.id,
            data=views.data(views.virtual_account_out(account)), actor=actor, at=now)
    return account


def create_virtual_account(session: Session, tenant_id: str, actor: str,
                           body: schemas.VirtualAccountCreate) -> VirtualAccount:
    """A payer's virtual account for paying orders by transfer."""
    settings = service.ensure_settings(session, tenant_id)
    now = service.now_for(session, tenant_id)
    return open_virtual_account(session, settings, actor=actor, now=now, label=body.label.strip(),
                                owner_type="payer")


def receive_transfer(session: Session, tenant_id: str, actor: str, virtual_account_id: str, *,
                     amount_fen: int, remitter_name: str, remitter_account: str, memo: str,
                     transfer_id: str | None = None
                     ) -> tuple[IncomingTransfer, list[schemas.Application]]:
    """Money from another bank arrived at a virtual account: book it, then match it.

    Returns the transfer and what its own money paid (its `applications`)."""
    settings = service.ensure_settings(session, tenant_id)
    account = repository.get(session, VirtualAccount, tenant_id, virtual_account_id,
                             VirtualAccountNotFound, lock=True)
    if account.status != "active":
        raise VirtualAccountNotUsable(f"Virtual account {account.id} is {account.status}.")
    now = service.now_for(session, tenant_id)
    transfer_id = transfer_id or new_id("cin")
    incoming = IncomingTransfer(
        id=transfer_id, tenant_id=tenant_id, virtual_account_id=account.id,
        amount_fen=amount_fen, applied_fen=0, remitter_name_masked=mask_name(remitter_name),
        remitter_account_masked=mask_account_number(remitter_account), memo=memo,
        status="unapplied", journal_ref=f"collection:incoming:{transfer_id}", received_at=now)
    session.add(incoming)
    ledger.receive_external(session, tenant_id, account_id=account.ledger_account_id,
                            amount_fen=amount_fen, journal_ref=incoming.journal_ref,
                            memo=f"来账 {memo}".strip(), at=now)
    account.unapplied_fen += amount_fen
    session.flush()
    apply_credit(session, settings, account, now, actor, memo=memo)
    applications = applications_of(session, [incoming.id]).get(incoming.id, [])
    publish(session, tenant_id=tenant_id, type="virtual_account.funds_received",
            resource_type="virtual_account", resource_id=account.id,
            data=views.data(views.incoming_out(incoming, applications)), actor=actor, at=now)
    return incoming, applications


def simulate_incoming(session: Session, tenant_id: str, actor: str, virtual_account_id: str,
                      body: schemas.IncomingTransferSimulate
                      ) -> tuple[IncomingTransfer, list[schemas.Application]]:
    """The sandbox's stand-in for an interbank credit (refused outside the sandbox)."""
    if not is_sandbox(session, tenant_id):
        raise SandboxOnly("Incoming transfers are simulated in the sandbox only.")
    return receive_transfer(session, tenant_id, actor, virtual_account_id,
                            amount_fen=body.amount.fen, remitter_name=body.remitter_name,
                            remitter_account=body.remitter_account, memo=body.memo.strip())


# The characters a reference is made of, for telling where a token named in a memo ends.
# Anything else (spaces, punctuation such as '.', ',', '/', ':', Chinese text) delimits: "X-1"
# is named by "缴费X-1，谢谢" and "for X-1." but not by "X-12", "AX-1" or "X-1_b".
_TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-_")


def _names(memo: str, key: str) -> bool:
    """Whether `key` occurs in `memo` as a whole token (case-sensitive)."""
    start = memo.find(key)
    while start >= 0:
        end = start + len(key)
        if ((start == 0 or memo[start - 1] not in _TOKEN_CHARS)
                and (end == len(memo) or memo[end] not in _TOKEN_CHARS)):
            return True
        start = memo.find(key, start + 1)
    return False


def memo_rank(memo: str | None, *keys: str | None) -> tuple[bool, int]:
    """How strongly a transfer's memo names a record known by `keys`; (False, 0): not at all.

    The one matching rule for orders and bills. A memo that is exactly a key ranks first, then
    the longest key named as a whole token, so that of orders "X-1" and "X-12" the memo
    "X-12" pays "X-12" and "X-1 X-12" also prefers "X-12". Sort by it descending (stable, so
    equally ranked records keep their oldest-first order).
    """
    text = (memo or "").strip()
    named = [key for key in keys if key and text and _names(text, key)]
    if not named:
        return False, 0
    return text in named, max(len(key) for key in named)


def _record_applied(session: Session, account: VirtualAccount,
                    applications: list[schemas.Application], now: datetime) -> None:
    """Book the money of `applications` (in the order they were paid) against the account's
    incoming transfers, first in, first applied, so that each transfer says how much of its own
    money paid orders or bills, and which (an `IncomingApplication` row per part).

    The caller holds the virtual account's row lock (no other matcher moves these rows)."""
    if not applications:
        return
    open_transfers = list(session.scalars(select(IncomingTransfer).where(
        IncomingTransfer.tenant_id == account.tenant_id,
        IncomingTransfer.virtual_account_id == account.id,
        IncomingTransfer.applied_fen < IncomingTransfer.amount_fen)
        .order_by(IncomingTransfer.received_at, IncomingTransfer.id)))
    if not open_transfers:
        return
    # Where each open transfer's next application row goes (a partly applied one has some).
    seqs: dict[str, int] = {transfer_id: int(n) for transfer_id, n in session.execute(
        select(IncomingApplication.incoming_transfer_id, func.count())
        .where(IncomingApplication.incoming_transfer_id.in_([t.id for t in open_transfers]))
        .group_by(IncomingApplication.incoming_transfer_id))}
    transfers = iter(open_transfers)
    incoming = next(transfers)
    for application in applications:
        due = parse_fen(application.amount.amount)
        while due > 0 and incoming is not None:
            used = min(due, incoming.amount_fen - incoming.applied_fen)
            seq = seqs.get(incoming.id, 0)
            seqs[incoming.id] = seq + 1
            session.add(IncomingApplication(
                incoming_transfer_id=incoming.id, seq=seq, tenant_id=account.tenant_id,
                kind=application.kind, target_id=application.id,
                order_id=application.order_id, amount_fen=used, applied_at=now))
            incoming.applied_fen += used
            incoming.status = ("applied" if incoming.applied_fen == incoming.amount_fen
                               else "partially_applied")
            due -= used
            if incoming.applied_fen == incoming.amount_fen:
                incoming = next(transfers, None)


def applications_of(session: Session, transfer_ids: list[str]
                    ) -> dict[str, list[schemas.Application]]:
    """What each of these incoming transfers' money paid, in the order paid: one query for
    them all (a page of transfers)."""
    found: dict[str, list[schemas.Application]] = {}
    if not transfer_ids:
        return found
    rows = session.scalars(select(IncomingApplication).where(
        IncomingApplication.incoming_transfer_id.in_(transfer_ids))
        .order_by(IncomingApplication.incoming_transfer_id, IncomingApplication.seq))
    for row in rows:
        found.setdefault(row.incoming_transfer_id, []).append(schemas.Application.model_validate(
            {"kind": row.kind, "id": row.target_id, "order_id": row.order_id,
             "amount": Money.of(row.amount_fen)}))
    return found


def apply_credit(session: Session, settings: CollectionSettings, account: VirtualAccount,
                 now: datetime, actor: str, *, memo: str | None = None
                 ) -> list[schemas.Application]:
    """Apply the account's credit to its pending orders, then (a park tenant's) open bills.

    The caller holds the virtual account's row lock.
    """
    applications: list[schemas.Application] = []
    if account.unapplied_fen <= 0:
        return applications
    pending = list(session.scalars(select(Order).where(
        Order.tenant_id == account.tenant_id, Order.virtual_account_id == account.id,
        Order.status == "pending", Order.bill_id.is_(None))
        .order_by(Order.created_at, Order.id)))
    pending.sort(key=lambda o: memo_rank(memo, o.merchant_order_no, o.id), reverse=True)
    for candidate in pending:
        if account.unapplied_fen < candidate.amount_fen:
            continue
        order = repository.get(session, Order, account.tenant_id, candidate.id,
                               service.OrderNotFound, lock=True)
        if order.status != "pending" or (order.expires_at is not None
                                         and order.expires_at <= now):
            continue
        # Dated now, under the settings row's share lock (`service.hold_business_date`).
        held = service.hold_business_date(session, settings)
        ledger.move(session, account.tenant_id, from_account_id=account.ledger_account_id,
                    to_account_id=service.clearing_shard(settings, order.id),
                    amount_fen=order.amount_fen,
                    journal_ref=order.journal_ref, reference_type="collection_order",
                    reference_id=order.id, purpose="collection", at=now,
                    memo=f"转账代收 {order.merchant_order_no}")
        account.unapplied_fen -= order.amount_fen
        splits = service.order_splits(session, order.id)
        service.succeed_order(session, settings, order, splits, held)
        service.publish_order(session, order, splits, actor, now)
        applications.append(schemas.Application(kind="order", id=order.id, order_id=order.id,
                                                amount=Money.of(order.amount_fen)))
    if account.owner_type == "park_tenant" and account.unapplied_fen > 0:
        from products.collection import park

        applications.extend(park.apply_to_bills(session, settings, account, now, actor, memo=memo))
    _record_applied(session, account, applications, now)
    session.flush()
    return applications


def incoming_views(session: Session, rows: list[IncomingTransfer]
                   ) -> list[schemas.IncomingTransferOut]:
    """Incoming transfers as the API shows them, each with its applications (one query)."""
    applications = applications_of(session, [row.id for row in rows])
    return [views.incoming_out(row, applications.get(row.id, [])) for row in rows]


def get_incoming_transfer(session: Session, tenant_id: str, virtual_account_id: str,
                          incoming_transfer_id: str) -> IncomingTransfer:
    """One transfer received by one of the tenant's virtual accounts."""
    account = repository.get(session, VirtualAccount, tenant_id, virtual_account_id,
                             VirtualAccountNotFound)
    row = session.scalar(select(IncomingTransfer).where(
        IncomingTransfer.tenant_id == tenant_id, IncomingTransfer.virtual_account_id == account.id,
        IncomingTransfer.id == incoming_transfer_id))
    if row is None:
        raise IncomingTransferNotFound(
            f"Virtual account {account.id} received no transfer {incoming_transfer_id}.")
    return row
