"""Real events of the types the seed does not publish, made cheaply in a seeded sandbox tenant,
for comparing samples with them: through the partner API where a partner can act, through the
product's service function where only the bank can (regulator grants)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from gateway.clock import business_date
from gateway.tenancy import advance_clock, clock_for
from tests.tools.api import PartnerClient

CARD = "6222021234567890128"  # a card of another bank: the sandbox checkout takes it


def _ok(response: Any, status: int = 201) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def _money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "CNY"}


def _ref(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def collection(app: Any, pc: PartnerClient, seeded: dict[str, Any]) -> None:
    """An order by mandate and its refund, an order waiting for a transfer that expires, the
    day's settlement and a reconciliation of that day."""
    payer, merchant = seeded["payer"], seeded["sub_merchants"][1]
    splits = [{"sub_merchant_id": merchant, "amount": _money("100.00")}]
    order = _ok(pc.post("/v1/collection/orders", {
        "merchant_order_no": _ref("ORD"), "amount": _money("100.00"), "splits": splits,
        "payer": {"method": "mandate", "mandate_id": payer["mandate_id"]}}))
    _ok(pc.post(f"/v1/collection/orders/{order['id']}/refunds",
                {"amount": _money("10.00"), "reason": "overcharged"}))
    _ok(pc.post("/v1/collection/orders", {
        "merchant_order_no": _ref("ORD"), "amount": _money("100.00"), "splits": splits,
        "payer": {"method": "virtual_account", "virtual_account_id": payer["virtual_account_id"],
                  "expires_in_seconds": 60}}))
    with app.state.database.transaction() as session:
        day = business_date(clock_for(session, pc.tenant_id).now())
        advance_clock(session, pc.tenant_id, 86400)
    run_jobs(app, "collection.expire_orders", "collection.settle")
    _ok(pc.post(f"/v1/collection/reconciliation/{day.isoformat()}/comparisons",
                {"records": []}))
    _ok(pc.request("PATCH", f"/v1/collection/sub-merchants/{merchant}",
                   json={"status": "active"}), 200)
    _ok(pc.post(f"/v1/collection/mandates/{payer['mandate_id']}/revoke",
                {"requested_by": "payer"}), 200)
    park_bill_refunded(app, pc)


def park_bill_refunded(app: Any, pc: PartnerClient) -> None:
    """A park tenant's transfer paying part of its oldest bill, refunded."""
    from products.collection.models import ParkTenant, VirtualAccount

    with app.state.database.transaction() as session:
        account = session.scalars(select(VirtualAccount.id).join(
            ParkTenant, ParkTenant.id == VirtualAccount.owner_id).where(
            ParkTenant.tenant_id == pc.tenant_id).limit(1)).one()
    incoming = _ok(pc.post(f"/v1/collection/virtual-accounts/{account}/simulate-incoming",
                           {"amount": _money("100.00"), "remitter_name": "某某公司"}))
    payment = incoming["applications"][0]  # the bill's payment, an order of its own
    _ok(pc.post(f"/v1/collection/orders/{payment['order_id']}/refunds",
                {"amount": _money("40.00"), "reason": "paid by mistake"}))


def transfer(pc: PartnerClient, accounts: dict[str, Any]) -> None:
    _ok(pc.post("/v1/transfers", {"from_account_id": accounts["operating"]["id"],
                                  "to_account_id": accounts["supplier"]["id"],
                                  "amount": _money("1.00")}))


def payroll(app: Any, pc: PartnerClient) -> None:
    """A wage batch paying one seeded worker from the wage account, confirmed and paid."""
    from products.payroll.models import WageProject, WageWorker

    with app.state.database.transaction() as session:
        project = session.scalars(select(WageProject).where(
            WageProject.tenant_id == pc.tenant_id)).one()
        worker = session.scalars(select(WageWorker).where(
            WageWorker.project_id == project.id).limit(1)).one()
        wage_account, today = project.wage_account_id, clock_for(session, pc.tenant_id).today()
        item = {"employee_name": worker.name, "id_number": worker.id_number,
                "account_number": worker.card_number, "amount": _money("8600.00"),
                "item_reference": "E00001", "memo": "工资"}

    def submit(count: int = 1) -> dict[str, Any]:
        return _ok(pc.post("/v1/payroll/batches", {"header": {
            "payer_account_id": wage_account, "purpose": "wages",
            "value_date": today.isoformat(), "declared_count": count,
            "declared_total": _money("8600.00"), "external_reference": _ref("WAGES")},
            "items": [item]}))

    assert submit(count=2)["status"] == "rejected"  # the count declared is not the items'
    _ok(pc.post(f"/v1/payroll/batches/{submit()['id']}/cancel", {}), 200)
    _ok(pc.post(f"/v1/payroll/batches/{submit()['id']}/confirm"), 200)
    run_jobs(app, "payroll.pay")


def regulators(app: Any, pc: PartnerClient) -> None:
    """Bank operations' grants to the partner: a labour region (granted, then revoked) and
    recognition as a fund regulator."""
    from products.egov import escrow
    from products.egov.schemas import RegulatorIn
    from products.payroll import wage
    from products.payroll.schemas import RegulatorGrantIn

    with app.state.database.transaction() as session:
        wage.grant_region(session, "operator", RegulatorGrantIn(
            partner_id=pc.partner_id, region_code="310115", name="浦东新区人社局"))
        wage.revoke_region(session, "operator", pc.partner_id, "310115")
        escrow.register_regulator(
            session, body=RegulatorIn(partner_id=pc.partner_id, name="住建局",
                                      kinds=["bid_deposit"]),
            actor="operator", now=clock_for(session, pc.tenant_id).now(),
            tenant_id=pc.tenant_id)


def egov(app: Any, pc: PartnerClient, accounts: dict[str, Any]) -> None:
    """The portal, a payment order cancelled; a bid-deposit tender (supervised by the tenant's
    sandbox regulator: a scheme's own partner never regulates it): a bidder's deposit, the
    award and the winner's release asked for."""
    from gateway.identifiers import generate_uscc
    from sandbox.fakedata import FakeData

    rng = FakeData(7).rng
    operating, supplier = accounts["operating"]["id"], accounts["supplier"]["id"]
    _ok(pc.request("PUT", "/v1/egov/portal", json={
        "name": "一网通办", "payee_name": "财政局", "payee_account_id": operating,
        "origins": ["https://portal.example.gov.cn"]}), 200)
    order = _ok(pc.post("/v1/egov/payment-orders", order_body(rng)))
    _ok(pc.post(f"/v1/egov/payment-orders/{order['id']}/cancel", {}), 200)
    order = _ok(pc.post("/v1/egov/payment-orders", order_body(rng)))
    for password in ("wrong", "123456"):  # refused, then paid (the sandbox's password)
        pay = "/checkout/" + order["checkout_url"].rsplit("/checkout/", 1)[1] + "/pay"
        pc.http.post(pay, data={"method": "bank_account", "account_number": CARD,
                                "password": password}, follow_redirects=False)
    from gateway.oauth.models import OAuthClient

    made = _ok(pc.post("/sandbox/v1/regulators", {"name": "住建局审批人"}))
    with app.state.database.transaction() as session:
        tenant_id = session.scalar(select(OAuthClient.tenant_id)
                                   .where(OAuthClient.id == made["client_id"]))
    regulator = PartnerClient(http=pc.http, client_id=made["client_id"],
                              partner_id=made["regulator"]["partner_id"], tenant_id=str(tenant_id),
                              secret=made["client_secret"], scopes=made["scopes"])
    schemes = "/v1/egov/escrow-schemes"
    scheme = _ok(pc.post(schemes, {
        "reference": _ref("ZB"), "name": "招标", "regulator_partner_id": regulator.partner_id,
        "holder_name": "招标人", "holder_uscc": generate_uscc(rng),
        "beneficiary_account_id": operating,
        "policy": {"kind": "bid_deposit", "required_approvals": 1,
                   "deposit": _money("1000.00"), "refund_days": 5}}))
    bid = _ok(pc.post(f"{schemes}/{scheme['id']}/sub-accounts",
                      {"reference": "BIDDER-01", "holder_name": "投标人"}))
    _ok(pc.post(f"{schemes}/{scheme['id']}/sub-accounts/{bid['id']}/deposits",
                {"from_account_id": supplier, "amount": _money("1000.00")}))
    _ok(pc.post(f"{schemes}/{scheme['id']}/award", {"winner_sub_account_id": bid["id"]}), 200)
    instruction = _ok(pc.post(f"{schemes}/{scheme['id']}/release-instructions", {
        "sub_account_id": bid["id"], "kind": "release", "amount": _money("1000.00"),
        "reason": "转履约保证金"}))
    _ok(regulator.post(f"/v1/egov/supervision/release-instructions/{instruction['id']}/decisions",
                       {"approver_id": "u1", "approver_name": "审批人", "decision": "approve"}),
        200)


def order_body(rng: Any) -> dict[str, Any]:
    from gateway.identifiers import generate_resident_id

    return {"item_code": "103001", "item_name": "工本费", "amount": _money("25.00"),
            "payer": {"name": "张三", "id_type": "resident_id",
                      "id_number": generate_resident_id(rng)},
            "description": "补领", "portal_reference": _ref("GOV"),
            "return_url": "https://portal.example.gov.cn/done"}


def webhook_endpoint_changes(pc: PartnerClient) -> None:
    """A second endpoint updated, its secret rotated, deleted."""
    path = "/v1/webhook-endpoints/" + _ok(pc.post("/v1/webhook-endpoints", {
        "url": "http://127.0.0.1:9/other", "event_types": ["bill.paid"]}))["id"]
    _ok(pc.request("PATCH", path, json={"description": "bills"}), 200)
    _ok(pc.post(path + "/rotate-secret"), 200)
    assert pc.request("DELETE", path).status_code == 204


def webhook_retry(app: Any, pc: PartnerClient, endpoint_id: str) -> None:
    """A delivery to the partner's endpoint, retried."""
    run_jobs(app, "webhooks.fan_out")
    deliveries = _ok(pc.get(f"/v1/webhook-endpoints/{endpoint_id}/deliveries?limit=1"), 200)
    delivery = deliveries["data"][0]["id"]
    _ok(pc.post(f"/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery}/retry"), 202)


def run_jobs(app: Any, *names: str) -> None:
    from gateway.jobs import run_all_once

    run_all_once(app.state.database, only=list(names))
