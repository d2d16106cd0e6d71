"""The reusable reconciliation module on its own: business-day windows at a cut-off, a statement
built from plug-in line sources (as e-government uses it), CSV, and the diff of uploads."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta

import pytest

from products.accounts.reconciliation import (
    InvalidRecords,
    StatementLine,
    StatementNotReady,
    accounting_date,
    build_statement,
    day_window,
    diff_records,
    parse_cutoff,
    parse_records,
    statement_csv,
    statement_json,
)

DAY = date(2026, 11, 2)


def test_windows_at_midnight_and_at_a_2300_cutoff():
    start, end = day_window(DAY)
    assert (start, end) == (datetime(2026, 11, 1, 16, 0, tzinfo=UTC),
                            datetime(2026, 11, 2, 16, 0, tzinfo=UTC))
    start, end = day_window(DAY, time(23, 0))
    assert (start, end) == (datetime(2026, 11, 1, 15, 0, tzinfo=UTC),
                            datetime(2026, 11, 2, 15, 0, tzinfo=UTC))
    assert accounting_date(datetime(2026, 11, 2, 14, 59, tzinfo=UTC), time(23, 0)) == DAY
    assert accounting_date(datetime(2026, 11, 2, 15, 0, tzinfo=UTC), time(23, 0)) == date(2026, 11, 3)
    assert accounting_date(datetime(2026, 11, 2, 15, 59, tzinfo=UTC)) == DAY
    assert accounting_date(datetime(2026, 11, 2, 16, 0, tzinfo=UTC)) == date(2026, 11, 3)
    for cutoff in (time(0, 0), time(23, 0), time(6, 30)):
        for hours in range(0, 48):
            instant = datetime(2026, 11, 1, 0, 0, tzinfo=UTC) + timedelta(hours=hours, minutes=7)
            start, end = day_window(accounting_date(instant, cutoff), cutoff)
            assert start <= instant < end
    assert parse_cutoff("23:00") == time(23, 0)
    for bad in ("24:00", "7:00", "07:60", "0700", "٠٧:٠٠", ""):
        with pytest.raises(ValueError):
            parse_cutoff(bad)


def portal_source(session, ctx):
    """What a product plugs in: its records of the window as lines."""
    yield StatementLine(kind="payment_order", id="eg_1", reference="FEE-1", status="paid",
                        amount_fen=1500, clearing_effect_fen=1500,
                        occurred_at=ctx.window_start + timedelta(hours=1),
                        detail={"item_code": "103"})
    yield StatementLine(kind="payment_order", id="eg_2", reference="FEE-2", status="unpaid",
                        amount_fen=800, clearing_effect_fen=0,
                        occurred_at=ctx.window_start + timedelta(hours=2))
    yield StatementLine(kind="refund", id="eg_r1", reference=None, status="succeeded",
                        amount_fen=500, clearing_effect_fen=-500,
                        occurred_at=ctx.window_start + timedelta(hours=3))


def test_a_statement_from_plug_in_sources_agrees_with_the_balances():
    balances = {day_window(DAY)[0]: 10_000, day_window(DAY)[1]: 11_000}
    statement = build_statement(
        None, tenant_id="ten_x", business_date=DAY, clearing_account_id="acct_portal",  # type: ignore[arg-type]
        sources=[portal_source], now=datetime(2026, 11, 3, tzinfo=UTC),
        detail_columns=["item_code"],
        balance_reader=lambda session, tenant, account, at: balances[at])
    assert statement.ledger_agrees and statement.net_effect_fen == 1000
    body = statement_json(statement)
    assert body["totals"]["payment_order"]["count"] == 2
    assert body["opening_balance"] == {"amount": "100.00", "currency": "CNY"}
    rows = list(csv.DictReader(io.StringIO("".join(statement_csv(statement)))))
    assert [r["row_type"] for r in rows] == ["opening_balance", "line", "line", "line", "total",
                                             "total", "closing_balance"]
    assert rows[1]["item_code"] == "103" and rows[-1]["status"] == "agrees"
    wrong = build_statement(
        None, tenant_id="ten_x", business_date=DAY, clearing_account_id="acct_portal",  # type: ignore[arg-type]
        sources=[portal_source], now=datetime(2026, 11, 3, tzinfo=UTC),
        balance_reader=lambda session, tenant, account, at: 0)
    assert not wrong.ledger_agrees and wrong.difference_fen == -1000
    with pytest.raises(StatementNotReady):
        build_statement(None, tenant_id="t", business_date=DAY, clearing_account_id="a",  # type: ignore[arg-type]
                        sources=[], now=day_window(DAY)[1] - timedelta(seconds=1),
                        balance_reader=lambda *a: 0)

    records = parse_records(b"kind,reference,id,amount,status\n"
                            b"payment_order,FEE-1,,15.00,paid\n"
                            b"payment_order,FEE-2,,8.00,paid\n"
                            b"refund,,eg_r1,5.00,succeeded\n", "text/csv; charset=utf-8")
    diff = diff_records(statement, records)
    assert diff.matched == 2 and [m["reference"] for m in diff.status_mismatches] == ["FEE-2"]
    everything = diff_records(statement, [])
    assert len(everything.missing_at_platform) == 3
    with pytest.raises(InvalidRecords):
        parse_records(b'{"records": {}}', "application/json")


def test_uploaded_csv_line_ends_and_unreadable_files() -> None:
    """CR, LF and CRLF line ends all read (a spreadsheet saved on any system), a line end
    inside a quoted field is part of it, and a file the csv reader cannot read is a clear
    problem naming where, not a server error."""
    header = b"kind,reference,id,amount,status"
    for end in (b"\r", b"\n", b"\r\n"):
        body = end.join([header, b"payment_order,FEE-1,,15.00,paid",
                         b'payment_order,"FEE-2",,8.00,paid']) + end
        records = parse_records(body, "text/csv")
        assert [r.reference for r in records] == ["FEE-1", "FEE-2"]
    with pytest.raises(InvalidRecords) as bad:
        parse_records(header + b"\r\npayment_order,F\rEE,,1.00,paid\r\n\xc2\x8f\r\xc3\x9a,\"x",
                      "text/csv")
    assert bad.value.status == 422 and "FEE" not in (bad.value.detail or "")
    with pytest.raises(InvalidRecords) as fuzzed:  # what a fuzzer sent: no header, stray CRs
        parse_records(b"\xc2\x8f\r\xc3\x9a\xc2\xa6\xc3\x97\xc2\xaa", "text/csv")
    assert fuzzed.value.status == 422
    with pytest.raises(InvalidRecords) as huge:  # beyond the csv reader's field limit
        parse_records(header + b"\npayment_order,OK,,1.00,paid\npayment_order," + b"x" * 200_000
                      + b",,1.00,paid\n", "text/csv")
    assert "record 2" in (huge.value.detail or "") and "field limit" in (huge.value.detail or "")
