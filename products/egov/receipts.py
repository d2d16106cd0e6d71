"""The receipt of a paid order as data (the JSON receipt; the PDF and the public verification
page are rendered from it)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from gateway.clock import to_rfc3339
from gateway.evidence.service import Log
from gateway.money import Money
from products.egov.errors import ReceiptNotAvailable
from products.egov.evidence import payment_evidence
from products.egov.models import PaymentOrder
from products.egov.receipt_pdf import amount_in_words


def verification_url(issuer: str, order: PaymentOrder) -> str:
    return f"{issuer.rstrip('/')}/checkout/receipts/{order.verification_code}"


def receipt_data(session: Session, order: PaymentOrder, *, issuer: str, log: Log | None) -> dict[str, Any]:
    """The electronic receipt (电子缴款凭证) of a paid order, with the evidence that proves it."""
    if order.status != "paid" or order.paid_at is None or order.receipt_number is None:
        raise ReceiptNotAvailable(f"Order {order.id} is {order.status}: only a paid order has a receipt.",
                                  extra={"current_status": order.status})
    return {
        "receipt_number": order.receipt_number, "order_id": order.id,
        "portal_reference": order.portal_reference, "payment_code": order.payment_code,
        "item_code": order.item_code, "item_name": order.item_name,
        "payer": {"name": order.payer_name_masked, "id_type": order.payer_id_type,
                  "id_number": order.payer_id_masked},
        "payee_name": order.payee_name, "amount": Money.of(order.amount_fen).model_dump(),
        "amount_in_words": amount_in_words(order.amount_fen),
        "payment_method": order.payment_method or "", "payer_account": order.payer_account_masked,
        "paid_at": to_rfc3339(order.paid_at), "journal_entry_id": order.journal_entry_id,
        "verification_url": verification_url(issuer, order),
        "evidence": payment_evidence(session, log, order.tenant_id, order.id, order.succeeded_event_id),
    }
