"""Daily reconciliation of a portal's collection account: the collection product's reusable
statement builder (products.accounts.reconciliation), fed with e-government payment orders.

A line is an order closed in the business day, whichever collection account it was paid into
(its `payee_account_id`; the portal may change its account): `paid` ones moved their amount into
that account (clearing effect = amount), `expired`, `cancelled` and `failed` ones moved
nothing (effect 0). An order's status cannot change after it closed, so a day's statement never
changes once the day is over.

A portal's own records of a day are compared with it by the same comparison as collection's
(`compare`: the same upload layout, answer and event).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.tenancy import clock_for
from products.accounts import reconciliation
from products.accounts.reconciliation import (
    Comparison,
    Statement,
    StatementContext,
    StatementLine,
    build_statement,
    day_window,
)
from products.egov import ledger
from products.egov.models import PaymentOrder
from products.egov.service import get_portal

KIND = "payment_order"
DETAIL_COLUMNS = ["item_code", "payment_code", "payee_account_id"]


def order_lines(session: Session, ctx: StatementContext) -> Iterator[StatementLine]:
    """The tenant's orders (its portal's) closed inside the day's window, whatever account each
    was paid into: the portal may have changed its collection account since."""
    rows = session.execute(
        select(PaymentOrder.id, PaymentOrder.portal_reference, PaymentOrder.status,
               PaymentOrder.amount_fen, PaymentOrder.closed_at, PaymentOrder.item_code,
               PaymentOrder.payment_code, PaymentOrder.payer_account_masked,
               PaymentOrder.payee_account_id)
        .where(PaymentOrder.tenant_id == ctx.tenant_id,
               PaymentOrder.closed_at >= ctx.window_start, PaymentOrder.closed_at < ctx.window_end))
    for (order_id, reference, status, amount, closed_at, item_code, payment_code,
         payer_account, payee_account) in rows:
        yield StatementLine(kind=KIND, id=order_id, reference=reference, status=status,
                            amount_fen=amount, clearing_effect_fen=amount if status == "paid" else 0,
                            occurred_at=closed_at, counterparty=payer_account,
                            detail={"item_code": item_code, "payment_code": payment_code,
                                    "payee_account_id": payee_account})


def _payee_accounts(session: Session, tenant_id: str, current: str, business_date: date) -> list[str]:
    """The collection accounts of the day: the portal's current one first (the one shown), then
    every other account an order closed that day was paid into, so that the opening and closing
    balances cover every line."""
    start, end = day_window(business_date)
    used = session.scalars(select(PaymentOrder.payee_account_id).distinct().where(
        PaymentOrder.tenant_id == tenant_id, PaymentOrder.closed_at >= start,
        PaymentOrder.closed_at < end, PaymentOrder.payee_account_id != current))
    return [current, *sorted(used)]


def portal_statement(session: Session, tenant_id: str, business_date: date) -> Statement:
    """The statement of one business day of the portal's collection account(s)."""
    portal = get_portal(session, tenant_id)
    accounts = _payee_accounts(session, tenant_id, portal.payee_account_id, business_date)
    return build_statement(session, tenant_id=tenant_id, business_date=business_date,
                           clearing_account_id=accounts, sources=[order_lines],
                           now=clock_for(session, tenant_id).now(), detail_columns=DETAIL_COLUMNS,
                           balance_reader=ledger.balance_before,
                           summary={"portal": portal.name, "payee_name": portal.payee_name})


def compare(session: Session, tenant_id: str, actor: str, business_date: date, body: bytes,
            content_type: str | None) -> Comparison:
    """Compare the portal's own records of `business_date` with its statement (CSV
    `kind,reference,id,amount,status`, `id` optional, kind `payment_order`; or JSON)."""
    return reconciliation.compare(
        session, tenant_id=tenant_id, actor=actor, business_date=business_date, body=body,
        content_type=content_type,
        statement=lambda: portal_statement(session, tenant_id, business_date),
        id_prefix="egrec", now=clock_for(session, tenant_id).now())
