"""Payroll batches: accept and validate, confirm (hold the total), cancel, read, result file.

Services take a Session and flush, never commit; the request (or the worker's short
transaction) is the unit of work. Money moves only through `products.payroll.ledger`, the thin
adapter over the core-banking port of `products.accounts`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from gateway.bulk import insert_rows
from gateway.clock import business_date, to_rfc3339
from gateway.csvtext import csv_record
from gateway.db import insert_unique
from gateway.errors import ValidationFailed
from gateway.events import publish
from gateway.ids import new_id
from gateway.money import format_fen
from gateway.pagination import decode_int_cursor, encode_cursor, page, scope_of
from gateway.pii import mask_account_number, mask_id_number, mask_name, pii_digest
from gateway.tenancy import Principal, clock_for, is_sandbox
from products.payroll import ledger, receiving
from products.payroll.errors import (
    BatchNotFound,
    BatchTooLarge,
    DuplicateBatch,
    ItemNotFound,
    PayrollProblem,
    SandboxOnly,
)
from products.payroll.models import PayrollBatch, PayrollFinding, PayrollItem, WageProject, WageWorker
from products.payroll.schemas import BatchHeaderIn, BatchIn
from products.payroll.states import CANCELLABLE, check_batch, check_item
from products.payroll.validation import MAX_ITEMS
from products.payroll.validation import check_item as check_item_fields

INSERT_CHUNK = 2000
FINDINGS_SHOWN = 100
MAX_VALUE_DATE_AHEAD = timedelta(days=90)


def _now(session: Session, tenant_id: str) -> datetime:
    return clock_for(session, tenant_id).now()


# --- public representations (the same shape in responses and events) ---------------------

def _money(fen: int) -> dict[str, str]:
    return {"amount": format_fen(fen), "currency": "CNY"}


def _ts(value: datetime | None) -> str | None:
    return to_rfc3339(value) if value is not None else None


def finding_view(f: PayrollFinding) -> dict[str, Any]:
    return {"line": f.line, "item_reference": f.item_reference, "field": f.field, "code": f.code,
            "message": f.message}


def batch_view(session: Session, batch: PayrollBatch, *, with_findings: bool = True) -> dict[str, Any]:
    """The batch as partners see it (responses and event data)."""
    errors: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    if with_findings and (batch.error_count or batch.warning_count):
        for severity, target in (("error", errors), ("warning", warnings)):
            rows = session.scalars(
                select(PayrollFinding)
                .where(PayrollFinding.batch_id == batch.id, PayrollFinding.severity == severity)
                .order_by(PayrollFinding.seq).limit(FINDINGS_SHOWN))
            target.extend(finding_view(f) for f in rows)
    pending = max(batch.item_count - batch.processed, 0) if batch.status not in (
        "rejected", "cancelled") else 0
    return {
        "id": batch.id, "status": batch.status, "payer_account_id": batch.payer_account_id,
        "wage_project_id": batch.wage_project_id, "purpose": batch.purpose,
        "value_date": batch.value_date.isoformat(), "wage_month": batch.wage_month,
        "external_reference": batch.external_reference, "declared_count": batch.declared_count,
        "declared_total": _money(batch.declared_total_fen), "item_count": batch.item_count,
        "total": _money(batch.total_fen), "held": _money(batch.held_fen), "source": batch.source,
        "charset": batch.charset,
        "progress": {
            "processed": batch.processed, "succeeded": batch.succeeded, "failed": batch.failed,
            "returned": batch.returned, "pending": pending,
            "succeeded_amount": _money(batch.succeeded_fen),
            "failed_amount": _money(batch.failed_fen),
            "returned_amount": _money(batch.returned_fen),
        },
        "validation": {"errors": errors, "error_count": batch.error_count, "warnings": warnings,
                       "warning_count": batch.warning_count},
        "created_at": _ts(batch.created_at), "validated_at": _ts(batch.validated_at),
        "confirmed_at": _ts(batch.confirmed_at), "started_at": _ts(batch.started_at),
        "finished_at": _ts(batch.finished_at), "cancelled_at": _ts(batch.cancelled_at),
    }


def item_view(item: PayrollItem) -> dict[str, Any]:
    return {
        "id": item.id, "batch_id": item.batch_id, "line": item.line,
        "item_reference": item.item_reference, "employee_name": item.name_masked,
        "id_number": item.id_masked, "account_number": item.account_masked,
        "amount": _money(item.amount_fen), "memo": item.memo, "status": item.status,
        "reason_code": item.reason_code, "reason": item.reason,
        "precheck_code": item.precheck_code, "journal_ref": item.journal_ref,
        "paid_to": "this_bank" if item.payee_account_id else (
            "other_bank" if item.entry_id else None),
        "settled_at": _ts(item.settled_at), "returned_at": _ts(item.returned_at),
    }


# --- accepting a batch ----------------------------------------------------------------------

def _duplicate_batch(holder: str | None, reference: str) -> DuplicateBatch:
    """The 409 for an external reference a live batch has (`holder`, where it could be read)."""
    who = f"Batch {holder}" if holder else "A batch"
    return DuplicateBatch(f"{who} already has the external reference {reference!r}; a rejected or "
                          "cancelled batch frees its reference.",
                          extra={"batch_id": holder} if holder else None)


class BatchBuilder:
    """Accepts a batch item by item in chunks: validates, stores, then decides.

    Items are checked and inserted `INSERT_CHUNK` at a time (`gateway.bulk.insert_rows`: COPY
    on PostgreSQL), so a 100,000-item upload never holds more than a chunk of parsed rows.
    Every problem is recorded as a finding; once one error is found no more items are stored
    (the batch will be rejected), but checking goes on so the partner learns every problem of
    the file at once.
    """

    def __init__(self, session: Session, *, principal: Principal, header: BatchHeaderIn,
                 source: str, charset: str = "utf-8", header_line: int = 0) -> None:
        self.session = session
        self.tenant_id = principal.tenant_id
        self.actor = principal.client_id
        self.now = _now(session, self.tenant_id)
        self.today = business_date(self.now)
        self.sandbox = is_sandbox(session, self.tenant_id)
        self.header_line = header_line
        # Where the header's fields were: the JSON body's `header`, or a file's header line.
        at = "body.header." if source == "json" else "header."
        if header.value_date < self.today:
            raise ValidationFailed(
                f"The value date {header.value_date} is before today ({self.today}, Asia/Shanghai).",
                code="value_date_in_past",
                errors=[{"field": at + "value_date", "message": "must be today or later"}])
        if header.value_date > self.today + MAX_VALUE_DATE_AHEAD:
            raise ValidationFailed("The value date is more than 90 days ahead.",
                                   code="value_date_too_far",
                                   errors=[{"field": at + "value_date",
                                            "message": "must be within 90 days"}])
        value_month = header.value_date.strftime("%Y-%m")
        if header.wage_month is not None and header.wage_month > value_month:
            # Wages are paid for work done: a month after the value date's has not been worked
            # (and paying it would show it paid in advance to the regulator).
            raise ValidationFailed(
                f"The wage month {header.wage_month} is after the value date's month "
                f"({value_month}); wages are paid for a month that has begun.",
                code="wage_month_in_future",
                errors=[{"field": at + "wage_month",
                         "message": f"must not be after {value_month}, the value date's month",
                         "code": "wage_month_in_future"}])
        ledger.payer_account(session, self.tenant_id, header.payer_account_id,
                             field=at + "payer_account_id")
        self.project = session.scalars(select(WageProject).where(
            WageProject.tenant_id == self.tenant_id,
            WageProject.wage_account_id == header.payer_account_id)).first()
        if self.project is not None and header.purpose != "wages":
            raise ValidationFailed("A supervised wage account pays wages only.",
                                   code="purpose_not_allowed",
                                   errors=[{"field": at + "purpose", "message": "must be wages"}])
        existing = self._holder(header.external_reference)
        if existing is not None:
            raise _duplicate_batch(existing, header.external_reference)
        self.batch = PayrollBatch(
            id=new_id("pbatch"), tenant_id=self.tenant_id, created_by=self.actor,
            payer_account_id=header.payer_account_id,
            wage_project_id=self.project.id if self.project else None, purpose=header.purpose,
            value_date=header.value_date,
            wage_month=header.wage_month or header.value_date.strftime("%Y-%m"),
            external_reference=header.external_reference,
            active_reference=header.external_reference, declared_count=header.declared_count,
            declared_total_fen=header.declared_total.fen, item_count=0, total_fen=0,
            source=source, charset=charset, status="received", created_at=self.now,
            updated_at=self.now)
        insert_unique(session, [self.batch], lambda: _duplicate_batch(
            self._holder(header.external_reference), header.external_reference))
        self.workers: dict[str, WageWorker] = {}
        if self.project is not None:
            self.workers = {w.id_digest: w for w in session.scalars(
                select(WageWorker).where(WageWorker.project_id == self.project.id))}
        self._payable: dict[str, bool] = {}
        # A leaver with an agreed wage: fen the account may still pay them for the month, less
        # what the batch's earlier items pay them.
        self._allowance: dict[str, int | None] = {}
        self.seen: set[str] = set()
        self.count = 0
        self.total = 0
        self.errors = 0
        self.warnings = 0
        self._finding_seq = 0
        self._rows: list[dict[str, Any]] = []
        self._findings: list[dict[str, Any]] = []
        self._items = PayrollItem.__table__
        self._finding_table = PayrollFinding.__table__

    def _holder(self, reference: str) -> str | None:
        """The id of the tenant's live batch with this external reference, if any."""
        return self.session.scalars(select(PayrollBatch.id).where(
            PayrollBatch.tenant_id == self.tenant_id,
            PayrollBatch.active_reference == reference)).first()

    def _finding(self, severity: str, line: int, ref: str | None, field: str, code: str,
                 message: str) -> None:
        self._finding_seq += 1
        if severity == "error":
            self.errors += 1
        else:
            self.warnings += 1
        self._findings.append({"batch_id": self.batch.id, "seq": self._finding_seq,
                               "tenant_id": self.tenant_id, "severity": severity, "line": line,
                               "item_reference": ref, "field": field, "code": code,
                               "message": message[:300]})

    def add(self, *, line: int, employee_name: str, id_number: str, account_number: str,
            amount: str, memo: str, item_reference: str) -> None:
        """Check one item and queue it for insertion (flushed every INSERT_CHUNK items)."""
        self.count += 1
        if self.count > MAX_ITEMS:
            raise BatchTooLarge(f"A batch holds at most {MAX_ITEMS:,} items; split the file.")
        item = check_item_fields(line=line, employee_name=employee_name, id_number=id_number,
                                 account_number=account_number, amount=amount, memo=memo,
                                 item_reference=item_reference, today=self.today)
        self.total += item.amount_fen
        ref = item.item_reference or None
        errors = item.errors
        if ref:
            if ref in self.seen:
                errors.append(("item_reference", "duplicate_item_reference",
                               f"Another item of this batch has the reference {ref!r}."))
            else:
                self.seen.add(ref)
        worker_id = None
        id_digest = pii_digest(item.id_number)
        card_digest = pii_digest(item.account_number)
        if self.project is not None and not any(f == "id_number" for f, _, _ in errors):
            worker = self.workers.get(id_digest)
            if worker is None:
                errors.append(("id_number", "worker_not_registered",
                               "This person is not a registered worker of the wage project."))
            else:
                worker_id = worker.id
                if not self._may_be_paid(worker):
                    errors.append(("id_number", *self._refusal(worker)))
                elif item.amount_fen > 0:
                    exceeded = self._exceeds_allowance(worker, item.amount_fen)
                    if exceeded:
                        errors.append(("amount", *exceeded))
                if worker.name_digest != pii_digest(item.employee_name):
                    errors.append(("employee_name", "worker_name_mismatch",
                                   "The name differs from the worker's real-name registration."))
                if worker.card_digest != card_digest:
                    errors.append(("account_number", "card_not_registered",
                                   "Wages from a wage account go only to the worker's "
                                   "registered card."))
        for field, code, message in errors:
            self._finding("error", line, ref, field, code, message)
        if self.errors == 0:
            self._rows.append({
                "id": new_id("pitem"), "tenant_id": self.tenant_id, "batch_id": self.batch.id,
                "seq": self.count, "line": line, "item_reference": item.item_reference,
                "employee_name": item.employee_name, "name_masked": mask_name(item.employee_name),
                "id_number": item.id_number, "id_digest": id_digest,
                "id_masked": mask_id_number(item.id_number),
                "account_number": item.account_number, "account_digest": card_digest,
                "account_masked": mask_account_number(item.account_number),
                "amount_fen": item.amount_fen, "memo": item.memo, "worker_id": worker_id,
                "precheck_code": None, "status": "pending",
            })
        else:
            self._rows.clear()
        if len(self._rows) >= INSERT_CHUNK or len(self._findings) >= INSERT_CHUNK:
            self.flush()

    def _may_be_paid(self, worker: WageWorker) -> bool:
        """The wage rule (`wage.may_be_paid`) for the batch's month, asked once per worker."""
        if worker.id not in self._payable:
            # Imported here: the wage module builds on this one.
            from products.payroll.wage import batch_cycle, may_be_paid

            assert self.project is not None  # only wage-account batches have workers
            self._payable[worker.id] = may_be_paid(self.session, self.project, worker,
                                                   batch_cycle(self.batch),
                                                   self.batch.value_date)
        return self._payable[worker.id]

    def _exceeds_allowance(self, worker: WageWorker, amount_fen: int) -> tuple[str, str] | None:
        """A leaver with an agreed wage is paid no more than its rest for the batch's month
        (`wage.leaver_allowance`), over all the batch's items paying them."""
        from products.payroll.wage import batch_cycle, exceeds_refusal, leaver_allowance

        assert self.project is not None
        cycle = batch_cycle(self.batch)
        if worker.id not in self._allowance:
            self._allowance[worker.id] = leaver_allowance(
                self.session, self.project, worker, cycle, self.batch.value_date)
        allowance = self._allowance[worker.id]
        if allowance is None:
            return None
        if amount_fen > allowance:
            return exceeds_refusal(worker, cycle, allowance)
        self._allowance[worker.id] = allowance - amount_fen
        return None

    def _refusal(self, worker: WageWorker) -> tuple[str, str]:
        from products.payroll.wage import batch_cycle, refusal

        return refusal(worker, batch_cycle(self.batch))

    def add_malformed(self, line: int, code: str, message: str) -> None:
        """An item line that could not even be split into its fields (counts as an item)."""
        self.count += 1
        if self.count > MAX_ITEMS:
            raise BatchTooLarge(f"A batch holds at most {MAX_ITEMS:,} items; split the file.")
        self._finding("error", line, None, "line", code, message)
        self._rows.clear()
        if len(self._findings) >= INSERT_CHUNK:
            self.flush()

    def _precheck(self) -> None:
        """Ask the receiving side about the queued items (one payee look-up per chunk)."""
        payees = ledger.payees(self.session, self.tenant_id,
                               [r["account_digest"] for r in self._rows])
        for row in self._rows:
            verdict = receiving.check(card_last4=row["account_number"][-4:],
                                      name=row["employee_name"], amount_fen=row["amount_fen"],
                                      sandbox=self.sandbox, payee=payees.get(row["account_digest"]))
            if verdict.code:
                row["precheck_code"] = verdict.code
                field = {"name_mismatch": "employee_name", "insufficient_funds": "amount",
                         "processing_failed": "amount"}.get(verdict.code, "account_number")
                self._finding("warning", row["line"], row["item_reference"], field, verdict.code,
                              receiving.reason_text(verdict.code) + " (pre-check: the item will "
                              "fail when paid and its money go back to the payer)")

    def flush(self) -> None:
        """Insert the queued rows (items only while the batch has no error) and findings."""
        if self._rows and self.errors == 0:
            self._precheck()
            insert_rows(self.session, self._items, self._rows)
        self._rows = []
        if self._findings:
            insert_rows(self.session, self._finding_table, self._findings)
            self._findings = []

    def finish(self) -> PayrollBatch:
        """Compare the control totals, then validated or rejected; publish the event."""
        batch = self.batch
        line = self.header_line
        if self.count != batch.declared_count:
            self._finding("error", line, None, "declared_count", "count_mismatch",
                          f"The header declares {batch.declared_count} items; the batch has "
                          f"{self.count}.")
        if self.total != batch.declared_total_fen:
            self._finding("error", line, None, "declared_total", "total_mismatch",
                          f"The header declares {format_fen(batch.declared_total_fen)}; the items "
                          f"add up to {format_fen(self.total)}.")
        self.flush()
        batch.item_count = self.count
        batch.total_fen = self.total
        batch.error_count = self.errors
        batch.warning_count = self.warnings
        batch.updated_at = self.now
        if self.errors:
            self.session.execute(delete(PayrollItem).where(PayrollItem.batch_id == batch.id))
            check_batch(batch.status, "rejected", action="rejected")
            batch.status = "rejected"
            batch.active_reference = None
            event = "payroll_batch.rejected"
        else:
            check_batch(batch.status, "validated", action="validated")
            batch.status = "validated"
            batch.validated_at = self.now
            event = "payroll_batch.validated"
        self.session.flush()
        publish(self.session, tenant_id=self.tenant_id, type=event, resource_type="payroll_batch",
                resource_id=batch.id, data=batch_view(self.session, batch), actor=self.actor, at=self.now)
        return batch


def create_batch(session: Session, principal: Principal, body: BatchIn) -> PayrollBatch:
    """Accept a JSON batch: validate every item, store it validated, or rejected with findings."""
    builder = BatchBuilder(session, principal=principal, header=body.header, source="json")
    for position, item in enumerate(body.items, start=1):
        builder.add(line=position, employee_name=item.employee_name, id_number=item.id_number,
                    account_number=item.account_number, amount=item.amount.amount,
                    memo=item.memo, item_reference=item.item_reference)
    return builder.finish()


# --- reading ---------------------------------------------------------------------------------

def get_batch(session: Session, tenant_id: str, batch_id: str, *, lock: bool = False) -> PayrollBatch:
    """A batch of the caller's tenant; another tenant's batch is not found (404)."""
    query = select(PayrollBatch).where(PayrollBatch.id == batch_id,
                                       PayrollBatch.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update()
    batch = session.scalars(query).first()
    if batch is None:
        raise BatchNotFound(f"No payroll batch {batch_id}.")
    return batch


def _seq_page(session: Session, query: Any, seq: Any, *, limit: int,
              cursor: str | None) -> tuple[list[Any], str | None]:
    """One page of a batch's rows in file order (`seq`, ascending), cursors from
    gateway.pagination."""
    scope = scope_of(seq, newest_first=False)
    if cursor:
        query = query.where(seq > decode_int_cursor(scope, cursor))
    rows = list(session.scalars(query.order_by(seq).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(scope, str(rows[-1].seq)) if more and rows else None)


def list_batches(session: Session, tenant_id: str, *, limit: int, cursor: str | None,
                 status: str | None = None) -> tuple[list[PayrollBatch], str | None]:
    """Newest first."""
    query = select(PayrollBatch).where(PayrollBatch.tenant_id == tenant_id)
    if status:
        query = query.where(PayrollBatch.status == status)
    return page(session, query, PayrollBatch.id, limit=limit, cursor=cursor)


def list_items(session: Session, tenant_id: str, batch_id: str, *, limit: int,
               cursor: str | None, status: str | None = None) -> tuple[list[PayrollItem], str | None]:
    """Items in file order, optionally of one status."""
    get_batch(session, tenant_id, batch_id)
    query = select(PayrollItem).where(PayrollItem.batch_id == batch_id)
    if status:
        query = query.where(PayrollItem.status == status)
    return _seq_page(session, query, PayrollItem.seq, limit=limit, cursor=cursor)


def get_item(session: Session, tenant_id: str, batch_id: str, item_id: str) -> PayrollItem:
    get_batch(session, tenant_id, batch_id)
    item = session.scalars(select(PayrollItem).where(PayrollItem.id == item_id,
                                                     PayrollItem.batch_id == batch_id)).first()
    if item is None:
        raise ItemNotFound(f"No item {item_id} in batch {batch_id}.")
    return item


def list_findings(session: Session, tenant_id: str, batch_id: str, *, limit: int,
                  cursor: str | None, severity: str | None = None
                  ) -> tuple[list[PayrollFinding], str | None]:
    get_batch(session, tenant_id, batch_id)
    query = select(PayrollFinding).where(PayrollFinding.batch_id == batch_id)
    if severity:
        query = query.where(PayrollFinding.severity == severity)
    return _seq_page(session, query, PayrollFinding.seq, limit=limit, cursor=cursor)


RESULT_PAGE = 2000


def result_lines(session: Session, batch: PayrollBatch) -> Iterator[str]:
    """The result file: the header line as uploaded, then each item with status and reason.

    Personal data is masked here too; the HR system matches lines by item reference. Items are
    read in pages of masked columns only (nothing is decrypted). A rejected batch keeps no
    items, so its file lists its findings instead (`_finding_lines`).
    """
    yield csv_record([batch.payer_account_id, batch.purpose, batch.value_date.isoformat(),
                      str(batch.declared_count), format_fen(batch.declared_total_fen),
                      batch.external_reference, batch.wage_month or ""])
    if batch.status == "rejected":
        yield from _finding_lines(session, batch)
        return
    cols = (PayrollItem.seq, PayrollItem.name_masked, PayrollItem.id_masked,
            PayrollItem.account_masked, PayrollItem.amount_fen, PayrollItem.memo,
            PayrollItem.item_reference, PayrollItem.status, PayrollItem.reason_code)
    after = 0
    while True:
        rows = session.execute(select(*cols).where(PayrollItem.batch_id == batch.id,
                                                   PayrollItem.seq > after)
                               .order_by(PayrollItem.seq).limit(RESULT_PAGE)).all()
        if not rows:
            return
        for seq, name, id_masked, account, fen, memo, ref, status, reason in rows:
            yield csv_record([name, id_masked, account, format_fen(fen), memo, ref, status,
                              reason or ""])
            after = seq


def _finding_lines(session: Session, batch: PayrollBatch) -> Iterator[str]:
    """One line per finding of a rejected batch, in the item layout: the personal columns and
    the amount blank (not kept), the item reference, status `rejected` (an error) or `warning`,
    and as reason `code: line N, field: message` (the code first, for machines)."""
    after = 0
    while True:
        rows = list(session.scalars(select(PayrollFinding).where(
            PayrollFinding.batch_id == batch.id, PayrollFinding.seq > after)
            .order_by(PayrollFinding.seq).limit(RESULT_PAGE)))
        if not rows:
            return
        for f in rows:
            status = "rejected" if f.severity == "error" else "warning"
            yield csv_record(["", "", "", "", "", f.item_reference or "", status,
                              f"{f.code}: line {f.line}, {f.field}: {f.message}"])
            after = f.seq


# --- confirming and cancelling ---------------------------------------------------------------

def confirm_batch(session: Session, principal: Principal, batch_id: str) -> PayrollBatch:
    """Hold the batch total on the payer account; scheduled, or processing from its value date.

    An account that cannot fund the total refuses the hold: the batch stays validated, nothing
    is held, and the problem says by how much it falls short.
    """
    batch = get_batch(session, principal.tenant_id, batch_id, lock=True)
    now = _now(session, principal.tenant_id)
    today = business_date(now)
    target = "scheduled" if batch.value_date > today else "processing"
    check_batch(batch.status, target, action="confirmed")
    if batch.value_date < today:
        raise PayrollProblem(
            f"The value date {batch.value_date} has passed; cancel the batch and submit it again "
            "with a new value date.", status=409, code="value_date_passed")
    batch.hold_id = ledger.hold(session, principal.tenant_id, account_id=batch.payer_account_id,
                                amount_fen=batch.total_fen, batch_id=batch.id,
                                memo=f"代发工资 {batch.external_reference}")
    batch.held_fen = batch.total_fen
    batch.status = target
    batch.confirmed_at = now
    if target == "processing":
        batch.started_at = now
    batch.updated_at = now
    session.flush()
    publish(session, tenant_id=principal.tenant_id, type="payroll_batch.confirmed",
            resource_type="payroll_batch", resource_id=batch.id, data=batch_view(session, batch),
            actor=principal.client_id, at=now)
    return batch


def cancel_batch(session: Session, principal: Principal, batch_id: str) -> PayrollBatch:
    """Cancel a batch that is not processing yet; its hold is released in full."""
    batch = get_batch(session, principal.tenant_id, batch_id, lock=True)
    if batch.status not in CANCELLABLE:
        check_batch(batch.status, "cancelled", action="cancelled")
    now = _now(session, principal.tenant_id)
    if batch.hold_id and batch.held_fen:
        ledger.release(session, principal.tenant_id, batch.hold_id, batch.held_fen)
    batch.held_fen = 0
    session.execute(update(PayrollItem).where(PayrollItem.batch_id == batch.id,
                                              PayrollItem.status == "pending")
                    .values(status="cancelled", reason_code="batch_cancelled",
                            reason=receiving.reason_text("batch_cancelled"), settled_at=now))
    batch.status = "cancelled"
    batch.active_reference = None
    batch.cancelled_at = now
    batch.updated_at = now
    session.flush()
    publish(session, tenant_id=principal.tenant_id, type="payroll_batch.cancelled",
            resource_type="payroll_batch", resource_id=batch.id, data=batch_view(session, batch),
            actor=principal.client_id, at=now)
    return batch


def simulate_return(session: Session, principal: Principal, batch_id: str, item_id: str, *,
                    reason_code: str, after_seconds: int) -> PayrollItem:
    """Sandbox only: have the receiving bank return a paid item (退票), now or later; once
    per item: a return already scheduled is refused (409 `return_already_scheduled`), one done
    is refused by the item's states (409)."""
    if not is_sandbox(session, principal.tenant_id):
        raise SandboxOnly("Returns are simulated in the sandbox only.")
    item = get_item(session, principal.tenant_id, batch_id, item_id)
    check_item(item.status, "returned", action="returned")
    if item.payee_account_id is not None:
        raise PayrollProblem("This item was credited to an account at this bank; only payments "
                             "to other banks' cards come back as returns.", status=409,
                             code="not_returnable")
    if item.return_due_at is not None:
        # A second call would otherwise move the return silently (and a magic `RETURN` name's
        # return is scheduled already): the partner is told when it comes instead.
        raise PayrollProblem(
            f"The item's return is already scheduled for {to_rfc3339(item.return_due_at)} "
            "(test clock); advance the clock to it rather than asking again.", status=409,
            code="return_already_scheduled",
            extra={"return_due_at": to_rfc3339(item.return_due_at)})
    now = _now(session, principal.tenant_id)
    item.return_due_at = now + timedelta(seconds=after_seconds)
    item.return_code = reason_code
    session.flush()
    if after_seconds == 0:
        from products.payroll.processing import return_item

        return_item(session, item, now=now, actor=principal.client_id)
    return item


def counts_by_status(session: Session, batch_id: str) -> dict[str, int]:
    rows = session.execute(select(PayrollItem.status, func.count()).where(
        PayrollItem.batch_id == batch_id).group_by(PayrollItem.status)).all()
    return {status: int(n) for status, n in rows}


def iter_chunks(values: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for value in values:
        chunk.append(value)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def business_today(session: Session, tenant_id: str) -> date:
    return business_date(_now(session, tenant_id))
