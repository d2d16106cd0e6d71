"""Paying batches: the worker's jobs.

Each chunk of items is paid in one short transaction that holds the ledger postings, the items'
new states and the batch's counters together, and every item's posting carries its own journal
reference (`payroll:<item id>`, unique per tenant in the ledger). A chunk is set-based: one read
of its items, one bulk capture of the batch's hold (an entry per item; the accounts locked and
their balances changed once), one UPDATE for its paid items and one for its failed ones.

A crash at any point (kill -9 in the middle of a chunk) therefore rolls the whole chunk back,
and the restarted worker pays it again from the start: no item is paid twice (the transaction
never committed, and were a posting ever to survive, as with a core-banking adapter that
commits on its own, its journal reference replays it: the item is marked paid with that entry
and nothing moves again) and none is lost (the items are still pending).

Several workers may run at once: a chunk locks its batch row first (FOR UPDATE SKIP LOCKED on
PostgreSQL, so another worker takes another batch; SQLite serializes writers).
"""

from __future__ import annotations

import logging
import time
from datetime import date, datetime
from functools import partial
from itertools import takewhile
from typing import Any

from sqlalchemy import Row, Text, select, type_coerce
from sqlalchemy.orm import Session

from gateway.bulk import update_rows
from gateway.clock import business_date
from gateway.db import Database
from gateway.events import publish
from gateway.jobs import for_each_tenant, for_each_tenant_item
from gateway.pii import decrypt
from gateway.tenancy import Tenant, clock_for
from products.accounts import magic
from products.payroll import ledger, receiving
from products.payroll.models import PayrollBatch, PayrollItem
from products.payroll.service import _money, batch_view
from products.payroll.settings import payroll_settings
from products.payroll.states import check_batch, settled_status

log = logging.getLogger("quanlian.payroll")

WORKER_ACTOR = "payroll-worker"


def journal_ref(item_id: str) -> str:
    return f"payroll:{item_id}"


def return_journal_ref(item_id: str) -> str:
    return f"payroll-return:{item_id}"


def _item_event(item: PayrollItem | Row[Any], batch_id: str, *, status: str,
                reason_code: str | None, reason: str | None, **_: Any) -> dict[str, Any]:
    """Event data of an item in its new status (masked personal data only)."""
    return {"id": item.id, "batch_id": batch_id, "item_reference": item.item_reference,
            "line": item.line, "employee_name": item.name_masked, "id_number": item.id_masked,
            "account_number": item.account_masked, "amount": _money(item.amount_fen),
            "status": status, "reason_code": reason_code, "reason": reason}


def _tenant_now(session: Session, tenant_id: str, cache: dict[str, datetime]) -> datetime:
    if tenant_id not in cache:
        cache[tenant_id] = clock_for(session, tenant_id).now()
    return cache[tenant_id]


# --- scheduled -> processing ---------------------------------------------------------------

def start_due_batches(database: Database) -> int:
    """Move scheduled batches whose value date has come (on their tenant's clock) to processing,
    each in its own transaction; a tenant whose run fails is left to the next run."""
    with database.transaction() as session:
        rows = session.execute(select(PayrollBatch.tenant_id, PayrollBatch.id,
                                      PayrollBatch.value_date)
                               .where(PayrollBatch.status == "scheduled")).all()

    def start(tenant_id: str, row: tuple[str, date]) -> int:
        batch_id, value_date = row
        with database.transaction() as session:
            now = clock_for(session, tenant_id).now()
            if value_date > business_date(now):
                return 0
            batch = session.scalars(select(PayrollBatch).where(
                PayrollBatch.id == batch_id, PayrollBatch.status == "scheduled")
                .with_for_update(skip_locked=True)).first()
            if batch is None:
                return 0
            check_batch(batch.status, "processing", action="started")
            batch.status = "processing"
            batch.started_at = now
            batch.updated_at = now
            session.flush()
            publish(session, tenant_id=tenant_id, type="payroll_batch.processing",
                    resource_type="payroll_batch", resource_id=batch.id,
                    data=batch_view(session, batch), actor=WORKER_ACTOR, at=now)
            return 1

    return for_each_tenant_item(((t, (b, v)) for t, b, v in rows), start,
                                "payroll batch start", logger=log)


# --- paying ----------------------------------------------------------------------------------

# The card number itself is not read (its digest finds a card of this bank, and its mask keeps
# the last four digits the sandbox's magic looks at), and the name is read sealed: it is
# decrypted only for a card of this bank or in the sandbox.
_CHUNK_COLUMNS = ("id", "line", "item_reference", "account_digest", "amount_fen", "memo",
                  "name_masked", "id_masked", "account_masked")


def _held_pending(sandbox: bool, batch: PayrollBatch, now: datetime) -> list[int]:
    """The sandbox magic amounts (4040.05) whose items stay pending, their amount still held by
    the batch's hold, until `magic.PENDING_FAILS_AFTER` after the batch started paying (on
    the tenant's clock); then they are paid no differently and fail (`receiving.check`)."""
    if not sandbox or batch.started_at is None or now >= batch.started_at + magic.PENDING_FAILS_AFTER:
        return []
    return [m.fen for m in magic.MAGIC_AMOUNTS.values() if m.outcome == "pending_then_failed"]


def process_chunk(session: Session, batch_id: str, limit: int = 500) -> int:
    """Pay up to `limit` pending items of a processing batch; settle the batch when none is left.

    Set-based: the items are read in one query (the columns payment needs), paid in one bulk
    capture of the batch's hold (an entry per item under the item's own journal reference)
    and marked paid, or failed, in one statement each, all in the caller's transaction.

    Returns how many items were handled (1 for settling alone, 0 when the batch is being paid
    by another worker or is not processing).
    """
    batch = session.scalars(select(PayrollBatch).where(
        PayrollBatch.id == batch_id, PayrollBatch.status == "processing")
        .with_for_update(skip_locked=True)).first()
    if batch is None:
        return 0
    tenant = session.get(Tenant, batch.tenant_id)
    sandbox = tenant is not None and tenant.environment == "sandbox"
    now = clock_for(session, batch.tenant_id).now()
    table = PayrollItem.__table__
    held = _held_pending(sandbox, batch, now)
    pending = (table.c.batch_id == batch.id) & (table.c.status == "pending")
    query = select(*(table.c[name] for name in _CHUNK_COLUMNS),
                   type_coerce(table.c.employee_name, Text).label("sealed_name")).where(pending)
    if held:
        query = query.where(table.c.amount_fen.not_in(held))
    items = session.execute(query.order_by(table.c.seq).limit(limit)).all()
    # The batch is settled once no item is pending, the held ones included.
    settles = len(items) < limit and not (held and session.scalar(
        select(table.c.id).where(pending, table.c.amount_fen.in_(held)).limit(1)))
    if not items:
        if not settles:
            return 0  # only held items left: nothing to do until they fail
        _settle(session, batch, now)
        return 1  # settling is work done too
    if batch.wage_project_id is not None:
        # The wage account's debit guard reads each item it authorizes: load them at once.
        session.scalars(select(PayrollItem).where(
            PayrollItem.id.in_([item.id for item in items]))).all()

    payees = ledger.payees(session, batch.tenant_id, [i.account_digest for i in items])
    to_pay: list[Row[Any]] = []
    failures: list[tuple[Row[Any], str]] = []
    returns: dict[str, str] = {}
    for item in items:
        verdict = receiving.check(card_last4=item.account_masked[-4:],
                                  name=partial(decrypt, item.sealed_name),
                                  amount_fen=item.amount_fen, sandbox=sandbox,
                                  payee=payees.get(item.account_digest))
        if verdict.code:
            failures.append((item, verdict.code))
        else:
            to_pay.append(item)
            if verdict.return_code:
                returns[item.id] = verdict.return_code

    purpose = batch.purpose
    outcomes = ledger.pay_items(session, batch.tenant_id, hold_id=batch.hold_id or "",
                                batch_id=batch.id, payments=[
                                    ledger.Payment(
                                        item_id=i.id, journal_ref=journal_ref(i.id),
                                        amount_fen=i.amount_fen,
                                        payee_account_id=(payee.account_id if (
                                            payee := payees.get(i.account_digest)) else None),
                                        memo=f"{purpose} {i.memo}".strip())
                                    for i in to_pay])
    paid: list[dict[str, Any]] = []
    paid_fen = 0
    for item in to_pay:
        outcome = outcomes[item.id]
        if outcome.failure:
            failures.append((item, outcome.failure))
            continue
        paid_fen += item.amount_fen
        payee = payees.get(item.account_digest)
        due = returns.get(item.id)
        paid.append({"id": item.id, "status": "succeeded", "journal_ref": journal_ref(item.id),
                     "entry_id": outcome.entry_id,
                     "payee_account_id": payee.account_id if payee else None,
                     "return_due_at": now + receiving.RETURN_AFTER if due else None,
                     "return_code": due, "settled_at": now})
    update_rows(session, table, "id", paid)
    failed = [{"id": item.id, "status": "failed", "reason_code": code,
               "reason": receiving.reason_text(code), "settled_at": now}
              for item, code in failures]
    update_rows(session, table, "id", failed)

    failed_fen = sum(item.amount_fen for item, _ in failures)
    if failed_fen and batch.hold_id:
        ledger.release(session, batch.tenant_id, batch.hold_id, failed_fen)
    batch.held_fen -= paid_fen + failed_fen
    batch.processed += len(items)
    batch.succeeded += len(paid)
    batch.failed += len(failures)
    batch.succeeded_fen += paid_fen
    batch.failed_fen += failed_fen
    batch.updated_at = now
    session.flush()
    for (item, _), row in zip(failures, failed, strict=True):
        publish(session, tenant_id=batch.tenant_id, type="payroll_item.failed",
                resource_type="payroll_item", resource_id=item.id,
                data=_item_event(item, batch.id, **row), actor=WORKER_ACTOR, at=now)
    if settles:
        _settle(session, batch, now)
    return len(items)


def _settle(session: Session, batch: PayrollBatch, now: datetime) -> None:
    """No item is pending any more: the final status, the rest of the hold released, the event."""
    final = settled_status(batch.succeeded, batch.failed)
    check_batch(batch.status, final, action="settled")
    if batch.hold_id and batch.held_fen > 0:
        ledger.release(session, batch.tenant_id, batch.hold_id, batch.held_fen)
    batch.held_fen = 0
    batch.status = final
    batch.finished_at = now
    batch.updated_at = now
    session.flush()
    publish(session, tenant_id=batch.tenant_id, type="payroll_batch.completed",
            resource_type="payroll_batch", resource_id=batch.id, data=batch_view(session, batch),
            actor=WORKER_ACTOR, at=now)


def pay_batches(database: Database) -> int:
    """Pay processing batches chunk by chunk, one transaction per chunk, within a time budget.

    Oldest batch first, whatever its tenant; a tenant whose chunk fails (it rolls back) is
    logged and its batches are left to the next run, while the other tenants' are paid.
    """
    settings = payroll_settings()
    chunk = settings.chunk_size
    deadline = time.monotonic() + settings.time_budget_seconds
    with database.transaction() as session:
        batches = session.execute(select(PayrollBatch.tenant_id, PayrollBatch.id)
                                  .where(PayrollBatch.status == "processing")
                                  .order_by(PayrollBatch.started_at, PayrollBatch.id)).all()

    def pay(tenant_id: str, batch_id: str) -> int:
        handled = 0
        while time.monotonic() < deadline:
            with database.transaction() as session:
                done = process_chunk(session, batch_id, chunk)
            handled += done
            if done < chunk:  # settled, or being paid by another worker
                break
        return handled

    return for_each_tenant_item(
        takewhile(lambda _: time.monotonic() < deadline, ((t, b) for t, b in batches)), pay,
        "payroll payment", logger=log)


# --- returns (退票) ---------------------------------------------------------------------------

def return_item(session: Session, item: PayrollItem, *, now: datetime, actor: str) -> None:
    """The receiving bank sent a paid item back: the money goes back to the payer."""
    batch = session.scalars(select(PayrollBatch).where(PayrollBatch.id == item.batch_id)
                            .with_for_update()).one()
    if item.status != "succeeded":
        return
    ref = return_journal_ref(item.id)
    ledger.refund(session, item.tenant_id, payer_account_id=batch.payer_account_id,
                  amount_fen=item.amount_fen, journal_ref=ref, item_id=item.id,
                  memo=f"退票 {item.item_reference}")
    item.status = "returned"
    item.return_journal_ref = ref
    item.returned_at = now
    item.return_due_at = None
    item.reason_code = item.return_code or "other"
    item.reason = receiving.reason_text(item.reason_code)
    batch.returned += 1
    batch.returned_fen += item.amount_fen
    batch.updated_at = now
    session.flush()
    publish(session, tenant_id=item.tenant_id, type="payroll_item.returned",
            resource_type="payroll_item", resource_id=item.id,
            data=_item_event(item, item.batch_id, status=item.status,
                             reason_code=item.reason_code, reason=item.reason),
            actor=actor, at=now)


def process_returns(database: Database) -> int:
    """Returns whose time has come on their tenant's clock (one transaction per tenant; a tenant
    whose run fails is left to the next run)."""
    def run(tenant_id: str) -> int:
        with database.transaction() as session:
            now = clock_for(session, tenant_id).now()
            due = list(session.scalars(select(PayrollItem).where(
                PayrollItem.tenant_id == tenant_id, PayrollItem.status == "succeeded",
                PayrollItem.return_due_at <= now).order_by(PayrollItem.return_due_at).limit(200)))
            for item in due:
                return_item(session, item, now=now, actor=WORKER_ACTOR)
            return len(due)

    return for_each_tenant(database, select(PayrollItem.tenant_id).where(
        PayrollItem.return_due_at.is_not(None), PayrollItem.status == "succeeded"), run,
        "payroll returns", logger=log)


def run(database: Database) -> int:
    """The registered job: start due batches, pay, and process due returns."""
    return start_due_batches(database) + pay_batches(database) + process_returns(database)
