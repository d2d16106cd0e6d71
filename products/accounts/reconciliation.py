"""Daily reconciliation statements (对账单) and the comparison with a partner's own records.

This module is product-neutral: collection uses it for its clearing account, and e-government
(products/egov) reuses it for each government portal's collection account. Nothing here knows
what an order is; a product plugs its records in as *line sources*.

Business day
    A statement covers one business date `D` in Asia/Shanghai, cut at a configurable time of
    day (`cutoff`, a `datetime.time`, default 00:00). The day's window is
    `[window_end(D - 1), window_end(D))`, where `window_end(D)` is `D` at the cut-off, or the
    next midnight when the cut-off is 00:00. With a 23:00 cut-off, day `D` runs from 23:00 on
    `D - 1` to 23:00 on `D`. `day_window(D, cutoff)` and `accounting_date(instant, cutoff)` are
    the one implementation of that rule; use them, never your own.

Lines
    A `StatementLine` is one record that belongs on the statement: a payment order, a refund,
    a settlement payout, ... Its `clearing_effect_fen` is its signed effect on the clearing
    account *inside the window* (+ money in, - money out, 0 for a line that moved nothing in
    the window, such as an order that failed or was still pending at the cut-off). `status` is
    the record's status as of the end of the window (so a statement never changes once the day
    is closed). `reference` is the key the partner knows the record by (its own order number);
    it is what uploaded records are matched on, with `id` as the fallback.

    A line source is any callable `source(session, ctx) -> Iterable[StatementLine]`, where
    `ctx` is a `StatementContext` (tenant, business date, window, clearing account). Sources
    should select with SQL Core (a day may hold 100,000 lines) and filter by tenant.

    A line's money *moved* when its status is one of `MONEY_MOVED` (an order `succeeded`, a
    payment order `paid`, a payout `paid`, an advance `repaid`); a failed, pending, expired or
    cancelled one moved nothing. Each kind's total counts all its lines (`count`, `amount`) and,
    apart, those whose money moved (`moved`); a comparison's totals are the same `moved` figures
    for each kind compared, beside the partner's own (`compare`).

The balance check
    `build_statement` reads the clearing account's balance from the ledger at the window's
    start (opening) and end (closing) and totals the lines. `Statement.ledger_agrees` is
    `opening + sum(clearing_effect) == closing`: it holds as long as every posting to the
    clearing account in the window is covered by exactly one line. Post ledger transfers with
    the tenant's clock (`at=`), so that a posting falls in the same window as its line.

How e-government plugs in (the whole integration)::

    from products.accounts.reconciliation import (
        StatementLine, build_statement, statement_csv, statement_json, parse_records,
        diff_records, day_window)

    def portal_lines(portal_id):
        def source(session, ctx):
            rows = session.execute(select(PaymentOrder.id, PaymentOrder.portal_reference, ...)
                                   .where(PaymentOrder.tenant_id == ctx.tenant_id,
                                          PaymentOrder.portal_id == portal_id,
                                          PaymentOrder.paid_at >= ctx.window_start,
                                          PaymentOrder.paid_at < ctx.window_end))
            for row in rows:
                yield StatementLine(kind="payment_order", id=row.id, reference=row.portal_reference,
                                    status="paid", amount_fen=row.amount_fen,
                                    clearing_effect_fen=row.amount_fen, occurred_at=row.paid_at,
                                    detail={"item_code": row.item_code})
        return source

    statement = build_statement(session, tenant_id=t, business_date=d,
                                clearing_account_id=portal.collection_account_id,  # or a list
                                sources=[portal_lines(portal.id)], cutoff=time(0, 0),
                                now=clock_for(session, t).now(), detail_columns=["item_code"])
    body = statement_json(statement)            # dict ready for a JSON response
    csv_text = "".join(statement_csv(statement))  # or stream the generator
    records = parse_records(raw_bytes, content_type)  # a partner's upload (CSV or JSON)
    differences = diff_records(statement, records)   # -> Differences; .as_dict() for JSON
    # or all of it at once, as the products' comparison routes do (publishes the event):
    comparison = compare(session, tenant_id=t, actor=client_id, business_date=d, body=raw_bytes,
                         content_type=content_type, statement=lambda: statement, id_prefix="egrec",
                         now=now)                 # -> Comparison; .as_dict() is a ComparisonOut

`build_statement` raises `StatementNotReady` (a 409 problem) when the window has not closed
on the tenant's clock; `parse_records` raises `InvalidRecords` (422) with field errors.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from gateway.clock import SHANGHAI, Timestamp, to_rfc3339
from gateway.csvtext import spreadsheet_safe
from gateway.errors import Conflict, ValidationFailed
from gateway.events import publish
from gateway.ids import new_id
from gateway.money import Money, MoneyError, format_fen, parse_fen

__all__ = [
    "BalanceReader",
    "Comparison",
    "ComparisonOut",
    "Differences",
    "InvalidRecords",
    "LineSource",
    "Statement",
    "StatementContext",
    "StatementLine",
    "StatementNotReady",
    "UploadedRecord",
    "accounting_date",
    "build_statement",
    "compare",
    "day_window",
    "diff_records",
    "parse_cutoff",
    "parse_records",
    "records_request_doc",
    "statement_csv",
    "statement_json",
    "window_end",
]

MIDNIGHT = time(0, 0)
MAX_UPLOADED_RECORDS = 200_000
# The statuses that say a line's (or an uploaded record's) money moved; see "Lines" above.
MONEY_MOVED = frozenset({"succeeded", "paid", "repaid"})


class StatementNotReady(Conflict):
    code, title = "statement_not_ready", "The business day has not closed yet"


class InvalidRecords(ValidationFailed):
    code, title = "invalid_records", "The uploaded records cannot be read"


# --- the business day ------------------------------------------------------------------

def parse_cutoff(value: str) -> time:
    """`"HH:MM"` (00:00-23:59) to a `time`; ValueError otherwise."""
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ValueError("cut-off must look like HH:MM")
    hh, mm = value[:2], value[3:]
    if not (hh.isdigit() and mm.isdigit() and hh.isascii() and mm.isascii()):
        raise ValueError("cut-off must look like HH:MM")
    hour, minute = int(hh), int(mm)
    if hour > 23 or minute > 59:
        raise ValueError("cut-off must be a time of day between 00:00 and 23:59")
    return time(hour, minute)


def window_end(day: date, cutoff: time = MIDNIGHT) -> datetime:
    """The UTC instant at which business date `day` closes."""
    if cutoff == MIDNIGHT:
        local = datetime.combine(day + timedelta(days=1), MIDNIGHT, tzinfo=SHANGHAI)
    else:
        local = datetime.combine(day, cutoff, tzinfo=SHANGHAI)
    return local.astimezone(UTC)


def day_window(day: date, cutoff: time = MIDNIGHT) -> tuple[datetime, datetime]:
    """`[start, end)` of business date `day` in UTC."""
    return window_end(day - timedelta(days=1), cutoff), window_end(day, cutoff)


def accounting_date(instant: datetime, cutoff: time = MIDNIGHT) -> date:
    """The business date whose window contains `instant`."""
    local = instant.astimezone(SHANGHAI)
    if cutoff == MIDNIGHT or local.time().replace(tzinfo=None) < cutoff:
        return local.date()
    return local.date() + timedelta(days=1)


# --- lines and statements ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StatementLine:
    """One record on a statement (see the module docstring)."""

    kind: str
    id: str
    reference: str | None
    status: str
    amount_fen: int
    clearing_effect_fen: int
    occurred_at: datetime
    counterparty: str | None = None
    detail: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StatementContext:
    tenant_id: str
    business_date: date
    window_start: datetime
    window_end: datetime
    clearing_account_id: str


LineSource = Callable[[Session, StatementContext], Iterable[StatementLine]]
# (session, tenant_id, account_id, at) -> the account's ledger balance in fen just before `at`.
BalanceReader = Callable[[Session, str, str, datetime], int]


@dataclass
class KindTotal:
    count: int = 0
    amount_fen: int = 0
    clearing_effect_fen: int = 0
    moved_count: int = 0  # the lines whose money moved (status in MONEY_MOVED) ...
    moved_fen: int = 0  # ... and their amounts


@dataclass
class Statement:
    tenant_id: str
    business_date: date
    cutoff: time
    window_start: datetime
    window_end: datetime
    clearing_account_id: str
    opening_balance_fen: int
    closing_balance_fen: int
    lines: list[StatementLine]
    totals: dict[str, KindTotal]
    generated_at: datetime
    detail_columns: list[str]
    summary: dict[str, Any] = field(default_factory=dict)
    clearing_account_ids: list[str] = field(default_factory=list)

    @property
    def net_effect_fen(self) -> int:
        return sum(t.clearing_effect_fen for t in self.totals.values())

    @property
    def difference_fen(self) -> int:
        """Closing balance minus (opening + lines): zero when the ledger agrees."""
        return self.closing_balance_fen - (self.opening_balance_fen + self.net_effect_fen)

    @property
    def ledger_agrees(self) -> bool:
        return self.difference_fen == 0


def _default_balance_reader(session: Session, tenant_id: str, account_id: str, at: datetime) -> int:
    from products.collection.ledger import balance_before

    return balance_before(session, tenant_id, account_id, at)


def build_statement(session: Session, *, tenant_id: str, business_date: date,
                    clearing_account_id: str | Sequence[str], sources: Sequence[LineSource],
                    now: datetime,
                    cutoff: time = MIDNIGHT, detail_columns: Sequence[str] = (),
                    balance_reader: BalanceReader | None = None,
                    summary: dict[str, Any] | None = None) -> Statement:
    """Build the statement of `business_date` for one clearing account from its line sources.

    `clearing_account_id` is one ledger account id, or several that together are the clearing
    account (collection shards its clearing account; the balances are summed, the first id is
    the one shown). Refuses (StatementNotReady) while the day's window is still open at `now`
    (the tenant's clock). Lines are sorted by time, then kind and id: deterministic output.
    """
    accounts = ([clearing_account_id] if isinstance(clearing_account_id, str)
                else list(clearing_account_id))
    if not accounts:
        raise ValueError("a statement needs at least one clearing account")
    start, end = day_window(business_date, cutoff)
    if now < end:
        raise StatementNotReady(
            f"The business day {business_date.isoformat()} closes at {to_rfc3339(end)}; "
            "its statement is available after the cut-off.",
            extra={"available_at": to_rfc3339(end)})
    ctx = StatementContext(tenant_id=tenant_id, business_date=business_date, window_start=start,
                           window_end=end, clearing_account_id=accounts[0])
    lines: list[StatementLine] = []
    for source in sources:
        lines.extend(source(session, ctx))
    lines.sort(key=lambda line: (line.occurred_at, line.kind, line.id))
    totals: dict[str, KindTotal] = {}
    for line in lines:
        total = totals.get(line.kind)
        if total is None:
            total = totals[line.kind] = KindTotal()
        total.count += 1
        total.amount_fen += line.amount_fen
        total.clearing_effect_fen += line.clearing_effect_fen
        if line.status in MONEY_MOVED:
            total.moved_count += 1
            total.moved_fen += line.amount_fen
    reader = balance_reader or _default_balance_reader
    opening = sum(reader(session, tenant_id, account, start) for account in accounts)
    closing = sum(reader(session, tenant_id, account, end) for account in accounts)
    return Statement(tenant_id=tenant_id, business_date=business_date, cutoff=cutoff,
                     window_start=start, window_end=end, clearing_account_id=accounts[0],
                     clearing_account_ids=accounts,
                     opening_balance_fen=opening, closing_balance_fen=closing, lines=lines,
                     totals=dict(sorted(totals.items())), generated_at=now,
                     detail_columns=list(detail_columns), summary=dict(summary or {}))


# --- rendering -----------------------------------------------------------------------------

def _money(fen: int) -> dict[str, str]:
    return {"amount": format_fen(fen), "currency": "CNY"}


def line_json(line: StatementLine) -> dict[str, Any]:
    return {"kind": line.kind, "id": line.id, "reference": line.reference, "status": line.status,
            "amount": _money(line.amount_fen), "clearing_effect": _money(line.clearing_effect_fen),
            "occurred_at": to_rfc3339(line.occurred_at), "counterparty": line.counterparty,
            "detail": line.detail}


def statement_json(statement: Statement) -> dict[str, Any]:
    """The statement as the JSON document the API returns (money as decimal strings)."""
    return {
        "business_date": statement.business_date.isoformat(),
        "cutoff": statement.cutoff.strftime("%H:%M"),
        "window_start": to_rfc3339(statement.window_start),
        "window_end": to_rfc3339(statement.window_end),
        "clearing_account_id": statement.clearing_account_id,
        "clearing_account_ids": statement.clearing_account_ids or [statement.clearing_account_id],
        "opening_balance": _money(statement.opening_balance_fen),
        "closing_balance": _money(statement.closing_balance_fen),
        "net_clearing_effect": _money(statement.net_effect_fen),
        "ledger_agrees": statement.ledger_agrees,
        "difference": _money(statement.difference_fen),
        "totals": {kind: {"count": t.count, "amount": _money(t.amount_fen),
                          "clearing_effect": _money(t.clearing_effect_fen),
                          "moved": {"count": t.moved_count, "amount": _money(t.moved_fen)}}
                   for kind, t in statement.totals.items()},
        "summary": statement.summary,
        "line_count": len(statement.lines),
        "lines": [line_json(line) for line in statement.lines],
        "generated_at": to_rfc3339(statement.generated_at),
    }


CSV_COLUMNS = ["row_type", "kind", "id", "reference", "status", "amount", "clearing_effect",
               "occurred_at", "counterparty"]


def statement_csv(statement: Statement) -> Iterator[str]:
    """The statement as CSV text, yielded in chunks (a rectangular table).

    Rows: one `opening_balance`, one `line` per statement line, one `total` per kind, one
    `closing_balance`. Amounts are decimal strings; `detail` keys become extra columns.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    extra = statement.detail_columns
    blank = [""] * len(extra)
    writer.writerow(CSV_COLUMNS + extra)
    day_start = to_rfc3339(statement.window_start)
    day_end = to_rfc3339(statement.window_end)
    writer.writerow(["opening_balance", "", statement.clearing_account_id, "", "",
                     format_fen(statement.opening_balance_fen), "", day_start, ""] + blank)
    for i, line in enumerate(statement.lines):
        detail = line.detail
        # What partners and payers wrote (references, names, details) is kept from running
        # as a formula in a spreadsheet.
        writer.writerow(["line", line.kind, line.id, spreadsheet_safe(line.reference),
                         line.status, format_fen(line.amount_fen),
                         format_fen(line.clearing_effect_fen), to_rfc3339(line.occurred_at),
                         spreadsheet_safe(line.counterparty)]
                        + [spreadsheet_safe(detail.get(column)) for column in extra])
        if i % 2000 == 1999:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    for kind, total in statement.totals.items():
        writer.writerow(["total", kind, "", "", str(total.count), format_fen(total.amount_fen),
                         format_fen(total.clearing_effect_fen), "", ""] + blank)
    writer.writerow(["closing_balance", "", statement.clearing_account_id, "",
                     "agrees" if statement.ledger_agrees else "differs",
                     format_fen(statement.closing_balance_fen),
                     format_fen(statement.net_effect_fen), day_end, ""] + blank)
    yield buffer.getvalue()


# --- a partner's own records, and the differences ------------------------------------------

@dataclass(frozen=True)
class UploadedRecord:
    """One record of the partner's own books for the day."""

    kind: str
    reference: str | None
    id: str | None
    amount_fen: int
    status: str
    position: int  # 1-based row (CSV data row or JSON array index + 1), for error messages

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.reference) if self.reference else (self.kind, "#" + (self.id or ""))


def _field_error(position: int, name: str, message: str, csv_rows: bool) -> dict[str, str]:
    where = f"row {position}" if csv_rows else f"records[{position - 1}]"
    return {"field": f"{where}.{name}", "message": message}


def _record(raw: dict[str, Any], position: int, csv_rows: bool,
            errors: list[dict[str, str]]) -> UploadedRecord | None:
    def text(name: str, required: bool, limit: int = 80) -> str | None:
        value = raw.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if required:
                errors.append(_field_error(position, name, "is required", csv_rows))
            return None
        if not isinstance(value, str):
            errors.append(_field_error(position, name, "must be a string", csv_rows))
            return None
        value = value.strip()
        if len(value) > limit or not value.isprintable():
            errors.append(_field_error(position, name, f"must be at most {limit} printable "
                                                       "characters", csv_rows))
            return None
        return value

    kind = text("kind", True, 40)
    reference = text("reference", False)
    ident = text("id", False)
    status = text("status", True, 40)
    amount_raw = raw.get("amount")
    if isinstance(amount_raw, dict):  # {"amount": "1.00", "currency": "CNY"}
        if amount_raw.get("currency", "CNY") != "CNY":
            errors.append(_field_error(position, "amount.currency", "must be CNY", csv_rows))
        amount_raw = amount_raw.get("amount")
    amount: int | None = None
    try:
        amount = parse_fen(amount_raw.strip() if isinstance(amount_raw, str) else amount_raw)
    except MoneyError as exc:
        errors.append(_field_error(position, "amount", str(exc), csv_rows))
    if reference is None and ident is None:
        errors.append(_field_error(position, "reference", "give a reference or an id", csv_rows))
    if kind is None or status is None or amount is None or (reference is None and ident is None):
        return None
    return UploadedRecord(kind=kind.lower(), reference=reference, id=ident, amount_fen=amount,
                          status=status.lower(), position=position)


def parse_records(body: bytes, content_type: str | None) -> list[UploadedRecord]:
    """Read a partner's records: CSV (header `kind,reference,id,amount,status`; `id` optional)
    or JSON (`{"records": [{"kind", "reference", "id", "amount", "status"}]}`), UTF-8.

    Every problem is reported at once as field errors (InvalidRecords, 422); a key that occurs
    twice is an error too.
    """
    ctype = (content_type or "").split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRecords("The records must be UTF-8 text.") from None
    errors: list[dict[str, str]] = []
    records: list[UploadedRecord] = []
    raws: list[tuple[int, dict[str, Any]]] = []
    csv_rows = ctype in ("text/csv", "application/csv")
    if csv_rows:
        # newline="": line ends (CR, LF or CRLF) are the csv module's to read, quoted ones too.
        reader = csv.DictReader(io.StringIO(text, newline=""))
        where = "the header"
        try:
            header = [h.strip().lower() for h in (reader.fieldnames or [])]
            missing = [name for name in ("kind", "amount", "status") if name not in header]
            if missing or ("reference" not in header and "id" not in header):
                raise InvalidRecords("The CSV header must name the columns kind, reference (or "
                                     "id), amount and status.",
                                     extra={"missing_columns": missing})
            reader.fieldnames = header
            where = "record 1"
            for position, row in enumerate(reader, start=1):
                where = f"record {position + 1}"
                if None in row:
                    errors.append(_field_error(position, "row", "has more cells than the header",
                                               True))
                    continue
                raws.append((position, row))
                if position > MAX_UPLOADED_RECORDS:
                    break
        except csv.Error as exc:
            raise InvalidRecords(f"The CSV cannot be read at {where}: {exc}.") from None
    elif ctype == "application/json":
        try:
            document = json.loads(text)
        except ValueError:
            raise InvalidRecords("The body is not valid JSON.") from None
        except RecursionError:  # nested deeper than the parser's stack: no records either
            raise InvalidRecords("The body's JSON is nested too deeply.") from None
        items = document.get("records") if isinstance(document, dict) else None
        if not isinstance(items, list):
            raise InvalidRecords('The JSON body must be {"records": [...]}.')
        for position, item in enumerate(items, start=1):
            if not isinstance(item, dict):
                errors.append(_field_error(position, "record", "must be an object", False))
                continue
            raws.append((position, item))
    else:
        raise InvalidRecords("Send the records as text/csv or application/json.",
                             status=415, code="unsupported_media_type",
                             title="Unsupported media type")
    if len(raws) > MAX_UPLOADED_RECORDS:
        raise InvalidRecords(f"At most {MAX_UPLOADED_RECORDS} records per upload.",
                             status=413, code="too_many_records", title="Too many records")
    seen: dict[tuple[str, str], int] = {}
    for position, raw in raws:
        record = _record(raw, position, csv_rows, errors)
        if record is None:
            continue
        if record.key in seen:
            errors.append(_field_error(position, "reference",
                                       f"duplicates the record at position {seen[record.key]}",
                                       csv_rows))
            continue
        seen[record.key] = position
        records.append(record)
    if errors:
        raise InvalidRecords(f"{len(errors)} problem(s) in the uploaded records.",
                             errors=errors[:200])
    return records


@dataclass
class SideTotals:
    """The money that moved on one side of a comparison, for one kind."""

    bank_count: int = 0
    bank_fen: int = 0
    platform_count: int = 0
    platform_fen: int = 0


@dataclass
class Differences:
    """What the bank's statement and the partner's records disagree on.

    `totals`: per kind compared, the money that moved by the statement (its lines of the kind
    whose status is in MONEY_MOVED: the statement's own `moved` total of that kind) and by the
    partner's records (those of the kind with such a status). Orders, refunds and payouts are
    never added up together, and nothing that failed or is still pending counts."""

    matched: int = 0
    missing_at_platform: list[dict[str, Any]] = field(default_factory=list)
    missing_at_bank: list[dict[str, Any]] = field(default_factory=list)
    amount_mismatches: list[dict[str, Any]] = field(default_factory=list)
    status_mismatches: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, SideTotals] = field(default_factory=dict)

    @property
    def agrees(self) -> bool:
        return not (self.missing_at_platform or self.missing_at_bank or self.amount_mismatches
                    or self.status_mismatches)

    def as_dict(self) -> dict[str, Any]:
        return {
            "agrees": self.agrees,
            "matched": self.matched,
            "missing_at_platform": self.missing_at_platform,
            "missing_at_bank": self.missing_at_bank,
            "amount_mismatches": self.amount_mismatches,
            "status_mismatches": self.status_mismatches,
            "totals": {kind: {
                "bank": {"count": t.bank_count, "amount": _money(t.bank_fen)},
                "platform": {"count": t.platform_count, "amount": _money(t.platform_fen)}}
                for kind, t in sorted(self.totals.items())},
        }


def _line_ref(line: StatementLine) -> dict[str, Any]:
    return {"kind": line.kind, "id": line.id, "reference": line.reference,
            "status": line.status, "amount": _money(line.amount_fen)}


def _record_ref(record: UploadedRecord) -> dict[str, Any]:
    return {"kind": record.kind, "id": record.id, "reference": record.reference,
            "status": record.status, "amount": _money(record.amount_fen),
            "position": record.position}


def diff_records(statement: Statement, records: Sequence[UploadedRecord],
                 kinds: Iterable[str] | None = None) -> Differences:
    """Compare the statement's lines with the partner's records for the same day.

    A record matches a line of the same kind by `reference`, or by `id` when it gives no
    reference. `kinds` limits the comparison to those line kinds; by default it is the kinds
    that occur in the upload (a partner that keeps only its orders is not told it lacks the
    settlement lines), or every kind when the upload is empty. Totals are per kind compared, of
    the money that moved on each side (see `Differences`).
    """
    wanted: set[str] | None
    if kinds is not None:
        wanted = set(kinds)
    else:
        wanted = {record.kind for record in records} or None
    by_reference: dict[tuple[str, str], StatementLine] = {}
    by_id: dict[tuple[str, str], StatementLine] = {}
    for line in statement.lines:
        if wanted is not None and line.kind not in wanted:
            continue
        if line.reference:
            by_reference[(line.kind, line.reference)] = line
        by_id[(line.kind, line.id)] = line
    out = Differences()
    if wanted is not None:
        out.totals = {kind: SideTotals() for kind in wanted}
    used: set[tuple[str, str]] = set()
    for record in records:
        if wanted is not None and record.kind not in wanted:
            continue
        if record.status in MONEY_MOVED:
            total = out.totals.setdefault(record.kind, SideTotals())
            total.platform_count += 1
            total.platform_fen += record.amount_fen
        if record.reference:
            line = by_reference.get((record.kind, record.reference))
            if line is None and record.id:
                line = by_id.get((record.kind, record.id))
        else:
            line = by_id.get((record.kind, record.id or ""))
        if line is None or (line.kind, line.id) in used:
            out.missing_at_bank.append(_record_ref(record))
            continue
        used.add((line.kind, line.id))
        problems = False
        if line.amount_fen != record.amount_fen:
            problems = True
            out.amount_mismatches.append({"kind": line.kind, "id": line.id,
                                          "reference": line.reference,
                                          "bank_amount": _money(line.amount_fen),
                                          "platform_amount": _money(record.amount_fen),
                                          "position": record.position})
        if line.status != record.status:
            problems = True
            out.status_mismatches.append({"kind": line.kind, "id": line.id,
                                          "reference": line.reference, "bank_status": line.status,
                                          "platform_status": record.status,
                                          "position": record.position})
        if not problems:
            out.matched += 1
    for line in statement.lines:
        if wanted is not None and line.kind not in wanted:
            continue
        total = out.totals.setdefault(line.kind, SideTotals())
        if line.status in MONEY_MOVED:
            total.bank_count += 1
            total.bank_fen += line.amount_fen
        if (line.kind, line.id) not in used:
            out.missing_at_platform.append(_line_ref(line))
    return out


# --- a comparison, as both products answer and record it ------------------------------------

class CountedMoney(BaseModel):
    count: int
    amount: Money


class StatementTotal(BaseModel):
    count: int
    amount: Money
    clearing_effect: Money
    moved: CountedMoney = Field(description="The lines whose money moved (succeeded, paid, "
                                            "repaid): what a comparison's `totals` show")


class StatementLineOut(BaseModel):
    kind: str
    id: str
    reference: str | None
    status: str
    amount: Money
    clearing_effect: Money
    occurred_at: Timestamp
    counterparty: str | None
    detail: dict[str, str]


class ReconciliationStatementOut(BaseModel):
    """A day's statement (对账单) as `statement_json` writes it, in every product."""

    business_date: date
    cutoff: str = Field(description="The day's cut-off, HH:MM Asia/Shanghai")
    window_start: Timestamp
    window_end: Timestamp
    clearing_account_id: str
    clearing_account_ids: list[str]
    opening_balance: Money
    closing_balance: Money
    net_clearing_effect: Money
    ledger_agrees: bool
    difference: Money
    totals: dict[str, StatementTotal]
    summary: dict[str, Any]
    line_count: int
    lines: list[StatementLineOut]
    generated_at: Timestamp


class ComparisonTotal(BaseModel):
    bank: CountedMoney = Field(description="The statement's lines of the kind whose money "
                                           "moved: its `totals[kind].moved`")
    platform: CountedMoney = Field(description="Your records of the kind whose money moved")


class ComparisonOut(BaseModel):
    """The answer to an upload of a partner's records of a day, in every product."""

    id: str
    business_date: date
    record_count: int
    agrees: bool
    matched: int
    missing_at_platform: list[dict[str, Any]] = Field(
        description="On the bank's statement, not in your records")
    missing_at_bank: list[dict[str, Any]] = Field(
        description="In your records, not on the bank's statement")
    amount_mismatches: list[dict[str, Any]]
    status_mismatches: list[dict[str, Any]]
    totals: dict[str, ComparisonTotal] = Field(
        description="Per kind compared, the money that moved (status succeeded, paid or "
                    "repaid) by the statement and by your records: orders, refunds and "
                    "payouts are never added together, failed or pending ones never count")
    created_at: Timestamp


@dataclass
class Comparison:
    """A partner's records of a day compared with the statement (`compare`)."""

    id: str
    business_date: date
    record_count: int
    differences: Differences
    created_at: datetime

    def as_dict(self) -> dict[str, Any]:
        """The `ComparisonOut` of it, as JSON-ready values."""
        return {"id": self.id, "business_date": self.business_date.isoformat(),
                "record_count": self.record_count, **self.differences.as_dict(),
                "created_at": to_rfc3339(self.created_at)}


def compare(session: Session, *, tenant_id: str, actor: str, business_date: date, body: bytes,
            content_type: str | None, statement: Callable[[], Statement], id_prefix: str,
            now: datetime) -> Comparison:
    """Compare a partner's upload (`parse_records`: CSV `kind,reference,id,amount,status`, `id`
    optional, or JSON) with the statement of `business_date` (`statement()`, built after the
    upload is read, so a bad upload is refused first) and publish `reconciliation.compared`.

    The one comparison of every product: collection keeps the result as a row as well."""
    records = parse_records(body, content_type)
    differences = diff_records(statement(), records)
    comparison = Comparison(id=new_id(id_prefix), business_date=business_date,
                            record_count=len(records), differences=differences, created_at=now)
    publish(session, tenant_id=tenant_id, type="reconciliation.compared",
            resource_type="reconciliation_comparison", resource_id=comparison.id,
            data={"id": comparison.id, "business_date": business_date.isoformat(),
                  "record_count": len(records), "agrees": differences.agrees,
                  "matched": differences.matched,
                  "missing_at_platform": len(differences.missing_at_platform),
                  "missing_at_bank": len(differences.missing_at_bank),
                  "amount_mismatches": len(differences.amount_mismatches),
                  "status_mismatches": len(differences.status_mismatches)},
            actor=actor, at=now)
    return comparison


def records_request_doc(kind: str, reference: str, status: str) -> dict[str, Any]:
    """The OpenAPI `requestBody` of a comparison upload (`openapi_extra`), with an example
    record of `kind`."""
    return {"requestBody": {"required": True, "content": {
        "text/csv": {"schema": {"type": "string"},
                     "example": f"kind,reference,id,amount,status\n"
                                f"{kind},{reference},,12.50,{status}\n"},
        "application/json": {"schema": {"type": "object", "properties": {"records": {
            "type": "array", "items": {"type": "object", "properties": {
                "kind": {"type": "string"}, "reference": {"type": "string"},
                "id": {"type": "string"}, "amount": {"type": "string"},
                "status": {"type": "string"}}}}}}}}}}
