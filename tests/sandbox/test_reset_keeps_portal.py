"""A sandbox reset keeps the e-government portal profile (the partner's configuration, like its
webhook endpoints): registered origins and return URLs keep working after it."""

from __future__ import annotations

from typing import Any

from tests.products.egov.helpers import ORIGIN, create_order, events, open_account, order_body, pay
from tests.tools.api import PartnerClient, problem, sandbox_signup

OTHER_ORIGIN = "https://zwfw.example.gov.cn"


def signup(app: Any, http: Any) -> tuple[PartnerClient, dict[str, Any]]:
    return sandbox_signup(app, http, name="一网通办", email="dev@gov.example")


def put_portal(pc: PartnerClient, payee: str) -> dict[str, Any]:
    response = pc.request("PUT", "/v1/egov/portal", json={
        "name": "一网通办", "payee_name": "上海市财政局", "payee_account_id": payee,
        "origins": [ORIGIN, OTHER_ORIGIN]})
    assert response.status_code == 200, response.text
    return response.json()


def test_a_portal_not_set_up_is_not_found_and_orders_wait_for_it(app, http):
    pc, body = signup(app, http)
    assert body["seeded"]["egov"]["portal"]["set_up"] == "PUT /v1/egov/portal"
    problem(pc.get("/v1/egov/portal"), 404, "portal_not_configured")
    problem(pc.post("/v1/egov/payment-orders", order_body()), 409, "portal_not_configured")
    assert pc.get("/v1/egov/payment-orders").json()["data"] == []


def test_a_reset_keeps_the_portal_profile(app, http):
    pc, body = signup(app, http)
    operating = body["seeded"]["accounts"]["accounts"]["operating"]["id"]
    profile = put_portal(pc, operating)
    order = create_order(pc, return_url=OTHER_ORIGIN + "/done")

    reset = pc.post("/sandbox/v1/reset")
    assert reset.status_code == 200, reset.text

    kept = pc.get("/v1/egov/portal")
    assert kept.status_code == 200, kept.text
    assert kept.json() == profile
    problem(pc.get(f"/v1/egov/payment-orders/{order['id']}"), 404)  # business data is gone
    # The registered origins and return URLs work as before, and the order is paid in.
    again = create_order(pc, return_url=OTHER_ORIGIN + "/done?case=1")
    assert pay(http, again).status_code == 303
    assert pc.get(f"/v1/egov/payment-orders/{again['id']}").json()["status"] == "paid"
    problem(pc.post("/v1/egov/payment-orders",
                    order_body(return_url="https://elsewhere.example.com/x")), 422,
            "return_url_not_registered")


def test_a_payee_account_the_reset_deleted_is_replaced_by_the_seeded_one(app, http):
    """An account opened after sign-up does not come back with the seed: the kept profile is
    pointed at the seeded operating account (and says so), so orders stay payable."""
    pc, body = signup(app, http)
    operating = body["seeded"]["accounts"]["accounts"]["operating"]["id"]
    own = open_account(app, pc.tenant_id, name="上海市财政局非税收入专户")
    profile = put_portal(pc, own)

    assert pc.post("/sandbox/v1/reset").status_code == 200
    kept = pc.get("/v1/egov/portal").json()
    assert kept["payee_account_id"] == operating
    assert {k: v for k, v in kept.items() if k not in ("payee_account_id", "updated_at")} \
        == {k: v for k, v in profile.items() if k not in ("payee_account_id", "updated_at")}
    assert _payees(pc) == [operating, own]  # newest first: the reset's change is published
    order = create_order(pc)
    assert pay(http, order).status_code == 303
    assert pc.get(f"/v1/egov/payment-orders/{order['id']}").json()["status"] == "paid"

    # A second reset finds the seeded payee again: nothing to change.
    assert pc.post("/sandbox/v1/reset").status_code == 200
    assert pc.get("/v1/egov/portal").json()["payee_account_id"] == operating
    assert _payees(pc) == [operating, own]


def _payees(pc: PartnerClient) -> list[str]:
    return [e["data"]["payee_account_id"] for e in events(pc, "egov_portal.updated")]
