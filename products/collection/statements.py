"""Collection's daily statement: its line sources for products.accounts.reconciliation, and
the comparison of a partner's uploaded records.

Lines of business date D (the window `[start, end)` of D at the tenant's cut-off):

| kind | which | status | clearing effect |
| --- | --- | --- | --- |
| `order` | created or finalized in D | as of the window's end (`pending` if not final yet) | + amount if it succeeded in D |
| `refund` | made in D | `succeeded` | - amount, 0 if the bank advanced it (`funded_by`) |
| `settlement` | payouts made in D (usually of D - 1) | `paid` | - amount |
| `advance_repayment` | advances repaid by settlements run in D | `repaid` | - amount |

Orders are matched with uploaded records by `merchant_order_no`, refunds by
`refund_reference`, settlements and advance repayments by the settlement's id (a record may
give the `id` column instead of, or besides, the reference). The summary lists the settlement
of D itself (run after D closed, so its payouts are lines of D + 1's statement).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from gateway.money import Money
from products.accounts import reconciliation
from products.accounts.reconciliation import (
    Comparison,
    Statement,
    StatementContext,
    StatementLine,
    build_statement,
)
from products.collection import ledger, service
from products.collection.models import (
    Order,
    ReconciliationComparison,
    Refund,
    Settlement,
)

DETAIL_COLUMNS = ["scene", "payer_method", "order_id", "funded_by", "settlement_date", "payee"]


def order_lines(session: Session, ctx: StatementContext) -> Iterator[StatementLine]:
    day = ctx.business_date
    rows = session.execute(
        select(Order.id, Order.merchant_order_no, Order.status, Order.amount_fen,
               Order.created_at, Order.finalized_at, Order.final_date, Order.scene,
               Order.payer_method, Order.mandate_id, Order.virtual_account_id, Order.diner_id)
        .where(Order.tenant_id == ctx.tenant_id,
               or_(Order.created_date == day, Order.final_date == day)))
    for (order_id, number, status, amount, created_at, finalized_at, final_date, scene,
         method, mandate_id, account_id, diner_id) in rows:
        final = final_date == day and finalized_at is not None
        yield StatementLine(
            kind="order", id=order_id, reference=number, status=status if final else "pending",
            amount_fen=amount,
            clearing_effect_fen=amount if final and status == "succeeded" else 0,
            occurred_at=finalized_at if final else created_at,
            counterparty=mandate_id or account_id or diner_id,
            detail={"scene": scene, "payer_method": method})


def refund_lines(session: Session, ctx: StatementContext) -> Iterator[StatementLine]:
    rows = session.execute(
        select(Refund.id, Refund.refund_reference, Refund.status, Refund.amount_fen,
               Refund.advanced_fen, Refund.created_at, Refund.order_id, Order.merchant_order_no,
               Order.scene)
        .join(Order, Order.id == Refund.order_id)
        .where(Refund.tenant_id == ctx.tenant_id, Refund.refund_date == ctx.business_date))
    for (refund_id, reference, status, amount, advanced, created_at, order_id, number,
         scene) in rows:
        # What the bank advanced never left the clearing account.
        yield StatementLine(kind="refund", id=refund_id, reference=reference, status=status,
                            amount_fen=amount, clearing_effect_fen=advanced - amount,
                            occurred_at=created_at, counterparty=number,
                            detail={"scene": scene, "order_id": order_id,
                                    "funded_by": "advance" if advanced else "clearing"})


def settlement_lines(session: Session, ctx: StatementContext) -> Iterator[StatementLine]:
    rows = session.execute(
        select(Settlement.id, Settlement.paid_fen, Settlement.paid_at, Settlement.settlement_date,
               Settlement.payee_key, Settlement.destination_account_id)
        .where(Settlement.tenant_id == ctx.tenant_id, Settlement.paid_date == ctx.business_date,
               Settlement.paid_fen > 0))
    for settlement_id, paid, paid_at, settlement_date, payee, destination in rows:
        yield StatementLine(kind="settlement", id=settlement_id, reference=settlement_id,
                            status="paid", amount_fen=paid, clearing_effect_fen=-paid,
                            occurred_at=paid_at, counterparty=destination,
                            detail={"settlement_date": settlement_date.isoformat(),
                                    "payee": payee})


def advance_repayment_lines(session: Session, ctx: StatementContext) -> Iterator[StatementLine]:
    """The bank's advances repaid from the clearing account by the settlements run in D."""
    rows = session.execute(
        select(Settlement.id, Settlement.repaid_fen, Settlement.created_at,
               Settlement.settlement_date, Settlement.payee_key)
        .where(Settlement.tenant_id == ctx.tenant_id, Settlement.paid_date == ctx.business_date,
               Settlement.repaid_fen > 0))
    advances = ledger.find_advances(session, ctx.tenant_id)
    for settlement_id, repaid, ran_at, settlement_date, payee in rows:
        yield StatementLine(kind="advance_repayment", id=settlement_id, reference=settlement_id,
                            status="repaid", amount_fen=repaid, clearing_effect_fen=-repaid,
                            occurred_at=ran_at, counterparty=advances,
                            detail={"settlement_date": settlement_date.isoformat(),
                                    "payee": payee})


SOURCES = (order_lines, refund_lines, settlement_lines, advance_repayment_lines)


def _settlement_summary(session: Session, tenant_id: str, day: date) -> dict[str, Any]:
    rows = list(session.scalars(select(Settlement).where(Settlement.tenant_id == tenant_id,
                                                         Settlement.settlement_date == day)
                                .order_by(Settlement.payee_key)))
    return {
        "settlement_of_this_date": {
            "run": bool(rows),
            "payees": len(rows),
            "paid": Money.of(sum(r.paid_fen for r in rows)).model_dump(),
            "carried_forward": Money.of(sum(r.carried_out_fen for r in rows)).model_dump(),
            "advanced": Money.of(sum(r.advanced_fen for r in rows)).model_dump(),
            "advance_repaid": Money.of(sum(r.repaid_fen for r in rows)).model_dump(),
            "settlement_ids": [r.id for r in rows],
        }
    }


def statement_for(session: Session, tenant_id: str, day: date) -> Statement:
    """The tenant's statement of business date `day` (409 statement_not_ready before it closed)."""
    settings = service.ensure_settings(session, tenant_id)
    return build_statement(
        session, tenant_id=tenant_id, business_date=day,
        clearing_account_id=settings.clearing_account_ids, sources=SOURCES,
        now=service.now_for(session, tenant_id), cutoff=service.cutoff_of(settings),
        detail_columns=DETAIL_COLUMNS, summary=_settlement_summary(session, tenant_id, day))


def compare(session: Session, tenant_id: str, actor: str, day: date, body: bytes,
            content_type: str | None) -> Comparison:
    """Compare the partner's own records of `day` with the statement (the comparison every
    product makes, `products.accounts.reconciliation.compare`); keep and return the result."""
    comparison = reconciliation.compare(
        session, tenant_id=tenant_id, actor=actor, business_date=day, body=body,
        content_type=content_type, statement=lambda: statement_for(session, tenant_id, day),
        id_prefix="crec", now=service.now_for(session, tenant_id))
    session.add(ReconciliationComparison(
        id=comparison.id, tenant_id=tenant_id, business_date=day,
        record_count=comparison.record_count, agrees=comparison.differences.agrees,
        differences=comparison.differences.as_dict(), created_by=actor,
        created_at=comparison.created_at))
    session.flush()
    return comparison
