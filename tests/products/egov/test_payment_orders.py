"""Government payment orders through HTTP: portal profile, orders, checkout payments, signed
results, cancellation, expiry, attempts, and paying exactly once."""

from __future__ import annotations

import html
import logging
import re
import threading
from datetime import UTC, datetime, timedelta

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from starlette.testclient import TestClient

from gateway.identifiers import luhn_check_digit
from products.egov.models import PaymentOrder
from tests.products.egov.helpers import (
    ORIGIN,
    advance,
    checkout_path,
    create_order,
    events,
    ledger_balance,
    open_account,
    order_body,
    pay,
    result_token,
    run_jobs,
    setup_portal,
)
from tests.tools.api import new_partner_client, problem
from tests.tools.jobs import assert_failure_logged, break_clock, statuses


def _orders(pc) -> list[dict]:
    return pc.get("/v1/egov/payment-orders?limit=100").json()["data"]


# --- portal profile -----------------------------------------------------------------------

def test_portal_profile_validates_origins_and_payee(app, partner):
    # Nothing to read yet: a 404 (creating an order without it is a 409: a precondition).
    problem(partner.get("/v1/egov/portal"), 404, "portal_not_configured")
    payee = open_account(app, partner.tenant_id)
    base = {"name": "一网通办", "payee_name": "财政局", "payee_account_id": payee}
    for bad in ("https://portal.example.gov.cn/path", "ftp://portal.example.gov.cn",
                "https://user:pw@portal.example.gov.cn", "portal.example.gov.cn",
                "https://portal.example.gov.cn?x=1", "https://portal.example.gov.cn:99999",
                # none of these can name the portal in the checkout's CSP frame-ancestors
                "https://portal.example.gov.cn:0", "https://portal.example.gov.cn.",
                "https://portal..gov.cn", "http://[::1]:18791"):
        problem(partner.request("PUT", "/v1/egov/portal", json={**base, "origins": [bad]}), 422,
                "invalid_origin")
    problem(partner.request("PUT", "/v1/egov/portal",
                            json={**base, "payee_account_id": "acct_nope", "origins": []}),
            422, "account_not_found")
    problem(partner.get("/v1/egov/portal"), 404, "portal_not_configured")  # nothing stored

    ok = partner.request("PUT", "/v1/egov/portal", json={
        **base, "origins": ["HTTPS://Portal.Example.gov.cn:443/", "http://127.0.0.1:8080",
                            "https://portal.example.gov.cn"]})
    assert ok.status_code == 200, ok.text
    assert ok.json()["origins"] == ["https://portal.example.gov.cn", "http://127.0.0.1:8080"]
    assert partner.get("/v1/egov/portal").json()["payee_account_id"] == payee
    assert events(partner, "egov_portal.updated")


def test_production_origins_must_be_https(app, http):
    prod = new_partner_client(app, http, environment="production")
    payee = open_account(app, prod.tenant_id)
    body = {"name": "一网通办", "payee_name": "财政局", "payee_account_id": payee,
            "origins": ["http://portal.example.gov.cn"]}
    problem(prod.request("PUT", "/v1/egov/portal", json=body), 422, "invalid_origin")


# --- creating orders ----------------------------------------------------------------------

def test_create_order_masks_the_payer_and_gives_a_payment_code(app, partner):
    setup_portal(app, partner)
    body = order_body()
    order = create_order(partner, **body)
    assert order["status"] == "open"
    assert order["payer"]["name"] == "张*"
    assert body["payer"]["id_number"] not in str(order)
    assert order["payer"]["id_number"].startswith(body["payer"]["id_number"][:3])
    code = order["payment_code"]
    assert len(code) == 20 and code.isdigit() and luhn_check_digit(code[:-1]) == code[-1]
    assert order["checkout_url"].startswith("http://testserver/checkout/")
    assert order["amount"] == {"amount": "25.00", "currency": "CNY"}
    created = datetime.fromisoformat(order["created_at"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(order["expires_at"].replace("Z", "+00:00"))
    assert expires - created == timedelta(minutes=30)
    assert events(partner, "egov_payment.created")[0]["resource"]["id"] == order["id"]
    assert partner.get(f"/v1/egov/payment-orders/{order['id']}").json() == order


def test_bad_orders_are_refused_and_store_nothing(app, http, partner):
    problem(partner.post("/v1/egov/payment-orders", order_body()), 409, "portal_not_configured")
    setup_portal(app, partner)
    no_key = partner.request("POST", "/v1/egov/payment-orders", json=order_body(),
                             idempotency_key="")
    problem(no_key, 400, "idempotency_key_required")
    bad = [
        (order_body(return_url="https://evil.example.com/done"), 422, "return_url_not_registered"),
        (order_body(return_url="javascript:alert(1)"), 422, "return_url_not_registered"),
        # Invisible characters would show the payer one address and send them to another.
        (order_body(return_url=ORIGIN + "/done\u202egnp.exe"), 422, "return_url_not_registered"),
        (order_body(return_url=ORIGIN + "/do\u200bne"), 422, "return_url_not_registered"),
        (order_body(amount={"amount": 25.0, "currency": "CNY"}), 422, "validation_failed"),
        (order_body(amount={"amount": "0.00", "currency": "CNY"}), 422, "validation_failed"),
        (order_body(amount={"amount": "1.005", "currency": "CNY"}), 422, "validation_failed"),
        (order_body(payer={"name": "张三", "id_number": "110105194912310021"}), 422, "validation_failed"),
        (order_body(payer={"name": "某公司", "id_type": "uscc", "id_number": "91110000600037341X"}),
         422, "validation_failed"),
        (order_body(item_code="bad code!"), 422, "validation_failed"),
        (order_body(expires_at="2020-01-01T00:00:00Z"), 422, "invalid_expiry"),
        (order_body(expires_at="2099-01-01T00:00:00"), 422, "validation_failed"),
        (order_body(unexpected=True), 422, "validation_failed"),
    ]
    for body, status, code in bad:
        problem(partner.post("/v1/egov/payment-orders", body), status, code)
    assert _orders(partner) == []

    order = create_order(partner, portal_reference="WB-1")
    dup = partner.post("/v1/egov/payment-orders", order_body(portal_reference="WB-1"))
    assert problem(dup, 409, "duplicate_portal_reference")["order_id"] == order["id"]
    other = new_partner_client(app, http)
    problem(other.get(f"/v1/egov/payment-orders/{order['id']}"), 404, "egov_payment_order_not_found")
    assert [o["id"] for o in _orders(partner)] == [order["id"]]


def test_create_is_idempotent(app, partner):
    setup_portal(app, partner)
    body = order_body()
    first = partner.post("/v1/egov/payment-orders", body, idempotency_key="k-1")
    again = partner.post("/v1/egov/payment-orders", body, idempotency_key="k-1")
    assert first.status_code == again.status_code == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert len(_orders(partner)) == 1


def test_scopes(app, http, partner):
    setup_portal(app, partner)
    reader = new_partner_client(app, http, scopes=["egov:read"],
                                partner=_partner_row(app, partner.partner_id))
    problem(reader.post("/v1/egov/payment-orders", order_body()), 403, "insufficient_scope")
    order = create_order(partner)
    assert reader.get(f"/v1/egov/payment-orders/{order['id']}").status_code == 200
    problem(http.get("/v1/egov/payment-orders"), 401)


def _partner_row(app, partner_id):
    from gateway.tenancy import Partner

    with app.state.database.transaction() as session:
        row = session.get(Partner, partner_id)
        session.expunge(row)
        return row


# --- paying -------------------------------------------------------------------------------

def test_payer_pays_once_and_the_portal_is_told(app, http, partner):
    payee = setup_portal(app, partner)
    order = create_order(partner, amount={"amount": "1409.50", "currency": "CNY"})
    page = http.get(checkout_path(order))
    assert page.status_code == 200
    assert "机动车驾驶证工本费" in page.text and "1409.50" in page.text and "上海市财政局" in page.text
    assert order["payer"]["name"] in page.text and "张三" not in page.text

    response = pay(http, order)
    assert response.status_code == 303 and response.headers["location"] == checkout_path(order)
    paid = partner.get(f"/v1/egov/payment-orders/{order['id']}").json()
    assert paid["status"] == "paid" and paid["payment_method"] == "bank_account"
    assert paid["payer_account"] == "6222***********0128"
    assert paid["receipt_number"].startswith("EG") and paid["receipt_url"].endswith("/receipt")
    assert ledger_balance(app, partner.tenant_id, payee) == 140950
    succeeded = events(partner, "egov_payment.succeeded")
    assert [e["resource"]["id"] for e in succeeded] == [order["id"]]
    assert succeeded[0]["data"]["status"] == "paid"
    assert "张三" not in str(succeeded[0]["data"])

    # A paid order is never paid again, by either method.
    assert pay(http, order).status_code == 303
    assert pay(http, order, method="qr").status_code == 303
    assert ledger_balance(app, partner.tenant_id, payee) == 140950
    assert len(events(partner, "egov_payment.succeeded")) == 1
    result = http.get(checkout_path(order))
    assert 'data-status="paid"' in result.text and "缴费成功" in result.text
    assert "bank-form" not in result.text
    problem(partner.post(f"/v1/egov/payment-orders/{order['id']}/cancel", {}), 409, "invalid_state")


def test_pay_from_a_ledger_account_of_the_tenant(app, http, partner):
    payee = setup_portal(app, partner)
    number = "6222020000000001234"
    number = number[:-1] + luhn_check_digit(number[:-1])
    payer = open_account(app, partner.tenant_id, person=True, number=number, fund=1000)
    order = create_order(partner)  # 25.00
    pay(http, order, card=number)
    assert partner.get(f"/v1/egov/payment-orders/{order['id']}").json()["failed_attempts"] == 1
    assert ledger_balance(app, partner.tenant_id, payer) == 1000
    assert "余额不足" in http.get(checkout_path(order) + "?error=insufficient_funds").text

    open_account_topup(app, partner.tenant_id, payer, 5000)
    pay(http, order, card=number)
    assert ledger_balance(app, partner.tenant_id, payer) == 3500
    assert ledger_balance(app, partner.tenant_id, payee) == 2500


def open_account_topup(app, tenant_id, account_id, fen):
    from products.accounts import service as accounts

    with app.state.database.transaction() as session:
        accounts.deposit(session, tenant_id, account_id, fen, journal_ref=f"topup:{account_id}:{fen}")


def test_refused_attempts_are_counted_and_close_the_order(app, http, partner):
    payee = setup_portal(app, partner)
    order = create_order(partner)
    frozen = _with_suffix("0003")
    outcomes = [
        pay(http, order, password="000000"),
        pay(http, order, card="6222021234567890123"),
        pay(http, order, card=frozen),
        pay(http, order, card=_with_suffix("0002")),
    ]
    assert [r.headers["location"].split("error=")[1] for r in outcomes] == [
        "login_failed", "invalid_account_number", "account_frozen", "account_closed"]
    # a mistyped card number (its check digit wrong) was answered, not counted: nothing was tried
    state = partner.get(f"/v1/egov/payment-orders/{order['id']}").json()
    assert state["status"] == "open" and state["failed_attempts"] == 3
    for _ in range(6):
        typo = pay(http, order, card="6222021234567890123")
        assert typo.headers["location"].endswith("error=invalid_account_number")
    assert partner.get(f"/v1/egov/payment-orders/{order['id']}").json()["failed_attempts"] == 3
    pay(http, order, password="still-wrong")
    page = http.get(checkout_path(order) + "?error=login_failed")
    assert "还可尝试 1 次" in page.text
    pay(http, order, password="bad")
    state = partner.get(f"/v1/egov/payment-orders/{order['id']}").json()
    assert state["status"] == "failed"
    assert events(partner, "egov_payment.failed")
    pay(http, order)  # too late: the checkout is closed
    assert ledger_balance(app, partner.tenant_id, payee) == 0
    claims = _verify(app, http, partner, result_token(http, order))
    assert claims["status"] == "failed"


def _with_suffix(suffix: str) -> str:
    for middle in range(10):
        payload = f"62220212345678{middle}{suffix[:-1]}"
        if luhn_check_digit(payload) == suffix[-1]:
            return payload + suffix[-1]
    raise AssertionError


def test_sandbox_magic_amount_refuses_the_payment(app, http, partner):
    payee = setup_portal(app, partner)
    order = create_order(partner, amount={"amount": "4040.01", "currency": "CNY"})
    response = pay(http, order, method="qr")
    assert response.headers["location"].endswith("error=insufficient_funds")
    assert ledger_balance(app, partner.tenant_id, payee) == 0
    ok = create_order(partner, amount={"amount": "88.00", "currency": "CNY"})
    pay(http, ok, method="qr")
    assert partner.get(f"/v1/egov/payment-orders/{ok['id']}").json()["payment_method"] == "qr"
    assert ledger_balance(app, partner.tenant_id, payee) == 8800


def test_concurrent_payments_pay_once(app, http, partner):
    payee = setup_portal(app, partner)
    order = create_order(partner)
    results: list[int] = []

    def attempt() -> None:
        with TestClient(app, raise_server_exceptions=False) as client:
            results.append(pay(client, order).status_code)

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status in (303, 409) for status in results), results
    assert ledger_balance(app, partner.tenant_id, payee) == 2500
    assert len(events(partner, "egov_payment.succeeded")) == 1


# --- the signed result ----------------------------------------------------------------------

def _verify(app, http, partner, token: str) -> dict:
    jwks = KeySet.import_key_set(http.get("/oauth/jwks").json())
    decoded = jwt.decode(token, jwks, algorithms=["ES256"])
    assert decoded.header["typ"] == "egov-result+jwt" and decoded.header["kid"]
    claims = dict(decoded.claims)
    assert claims["iss"] == "http://testserver" and claims["aud"] == partner.client_id
    assert claims["exp"] > datetime.now(UTC).timestamp()
    return claims


def test_return_url_carries_a_result_signed_with_the_published_key(app, http, partner):
    setup_portal(app, partner)
    order = create_order(partner, return_url=ORIGIN + "/done?step=pay#top")
    pay(http, order)
    page = http.get(checkout_path(order))
    assert 'target="_top"' in page.text and "https://portal.example.gov.cn/done?step=pay" in page.text
    claims = _verify(app, http, partner, result_token(http, order))
    assert claims["order_id"] == order["id"] and claims["status"] == "paid"
    assert claims["portal_reference"] == order["portal_reference"]
    assert claims["amount"] == {"amount": "25.00", "currency": "CNY"}
    assert "张三" not in str(claims)
    # postMessage goes to registered origins only, never "*".
    assert '"targets": ["https://portal.example.gov.cn"]' in page.text
    assert "postMessage(data.message, origin)" in page.text and "'*'" not in page.text


def test_the_return_url_comes_back_byte_for_byte_with_the_result_appended(app, http, partner):
    """A portal that signs or compares its own return URL gets exactly that URL back: `%20`
    stays `%20` (not `+`), a bare `flag` stays bare, and only `&egov_result=...` is added."""
    setup_portal(app, partner)
    return_url = ORIGIN + "/r?q=a%20b&flag&next=%2Fa&sig=x+y"
    order = create_order(partner, return_url=return_url + "#done")
    pay(http, order)
    page = http.get(checkout_path(order)).text
    link = html.unescape(re.search(r'href="([^"]+)" target="_top" id="return-link"', page).group(1))
    prefix = f"{return_url}&egov_result="
    assert link.startswith(prefix) and link.endswith("#done"), link
    token = link[len(prefix):-len("#done")]  # each render signs anew: take this link's own
    assert _verify(app, http, partner, token)["order_id"] == order["id"]


# --- cancel and expiry --------------------------------------------------------------------

def test_cancel_takes_no_body(app, partner):
    # The body (a reason) may be left out, as other actions' bodies may.
    setup_portal(app, partner)
    bare = partner.post(f"/v1/egov/payment-orders/{create_order(partner)['id']}/cancel")
    assert bare.status_code == 200 and bare.json()["status"] == "cancelled", bare.text
    assert bare.json()["cancel_reason"] is None


def test_portal_and_payer_cancel(app, http, partner):
    payee = setup_portal(app, partner)
    order = create_order(partner)
    cancelled = partner.post(f"/v1/egov/payment-orders/{order['id']}/cancel", {"reason": "重复下单"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancel_reason"] == "重复下单"
    assert partner.get(f"/v1/egov/payment-orders/{order['id']}").json()["cancel_reason"] == "重复下单"
    problem(partner.post(f"/v1/egov/payment-orders/{order['id']}/cancel", {}), 409, "invalid_state")
    pay(http, order)
    assert ledger_balance(app, partner.tenant_id, payee) == 0
    assert "缴费已取消" in http.get(checkout_path(order)).text

    second = create_order(partner)
    response = http.post(checkout_path(second) + "/cancel", data={"lang": "en"}, follow_redirects=False)
    assert response.status_code == 303
    assert partner.get(f"/v1/egov/payment-orders/{second['id']}").json()["status"] == "cancelled"
    assert "Payment cancelled" in http.get(checkout_path(second) + "?lang=en").text
    claims = _verify(app, http, partner, result_token(http, second))
    assert claims["status"] == "cancelled"
    assert len(events(partner, "egov_payment.cancelled")) == 2


def test_orders_expire_on_the_tenant_clock(app, http, partner):
    payee = setup_portal(app, partner)
    soon = create_order(partner)  # 30 minutes
    later = create_order(partner, expires_at=(datetime.now(UTC) + timedelta(days=2)).isoformat())
    advance(app, partner.tenant_id, 31 * 60)
    assert run_jobs(app, "egov.expire_orders") == {"egov.expire_orders": 1}
    assert partner.get(f"/v1/egov/payment-orders/{soon['id']}").json()["status"] == "expired"
    assert partner.get(f"/v1/egov/payment-orders/{later['id']}").json()["status"] == "open"
    assert "已过期" in http.get(checkout_path(soon)).text
    pay(http, soon)
    assert ledger_balance(app, partner.tenant_id, payee) == 0
    # Read after expiry without the job: the read expires it.
    advance(app, partner.tenant_id, 2 * 86400)
    assert partner.get(f"/v1/egov/payment-orders/{later['id']}").json()["status"] == "expired"
    assert len(events(partner, "egov_payment.expired")) == 2


# --- the checkout page ----------------------------------------------------------------------

def test_checkout_page_security_headers_and_languages(app, http, partner):
    setup_portal(app, partner, origins=[ORIGIN, "https://m.portal.example.gov.cn"])
    order = create_order(partner)
    page = http.get(checkout_path(order))
    csp = page.headers["content-security-policy"]
    assert ("frame-ancestors https://portal.example.gov.cn https://m.portal.example.gov.cn" in csp)
    assert "script-src 'nonce-" in csp and "unsafe-inline" not in csp
    assert "x-frame-options" not in page.headers
    assert page.headers["cache-control"] == "no-store"
    assert '<html lang="zh-CN">' in page.text
    for field in ("account_number", "password"):
        assert f'<label for="{field}">' in page.text and f'id="{field}"' in page.text
    english = http.get(checkout_path(order) + "?lang=en")
    assert '<html lang="en">' in english.text and "Pay from a bank account" in english.text
    assert http.get(checkout_path(order) + "/qr.png").headers["content-type"] == "image/png"
    missing = http.get("/checkout/not-a-token")
    assert missing.status_code == 404 and "缴费单不存在" in missing.text
    # An API error page keeps the strict policy; the checkout escapes what it shows.
    assert http.get(checkout_path(order) + "?error=<script>").text.count("<script>") == 0


def test_production_checkout_has_no_simulated_login(app, http):
    prod = new_partner_client(app, http, environment="production")
    payee = open_account(app, prod.tenant_id)
    body = {"name": "一网通办", "payee_name": "财政局", "payee_account_id": payee, "origins": [ORIGIN]}
    assert prod.request("PUT", "/v1/egov/portal", json=body).status_code == 200
    order = prod.post("/v1/egov/payment-orders", order_body()).json()
    page = http.get(checkout_path(order))
    assert page.status_code == 200 and "沙箱" not in page.text
    refused = pay(http, order)
    assert refused.status_code == 503
    assert ledger_balance(app, prod.tenant_id, payee) == 0


def test_a_checkout_view_reads_its_order_tenant_and_portal_in_one_statement(app, partner,
                                                                            monkeypatch):
    from sqlalchemy import event

    from gateway import tenancy
    from gateway.tenancy import clock_for, is_sandbox
    from products.egov import service

    setup_portal(app, partner)
    order = create_order(partner, payer={"name": "张三", "id_type": "resident_id",
                                         "id_number": "11010519491231002X"})
    token = checkout_path(order).rsplit("/", 1)[1]
    database = app.state.database
    statements: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    rows = tenancy.session_rows  # the tenant's facts are read on the driver, if at all

    def driver_read(session, sql, params):  # type: ignore[no-untyped-def]
        statements.append(sql)
        return rows(session, sql, params)

    monkeypatch.setattr(tenancy, "session_rows", driver_read)

    with database.transaction() as session:
        event.listen(database.engine, "before_cursor_execute", count)
        try:
            found, tenant, portal = service.checkout_by_token(session, token)
            # The page asks for the clock and the environment: no statement more.
            clock_for(session, tenant.id).now()
            assert is_sandbox(session, tenant.id)
            reads = len(statements)
            assert portal is not None and portal.origins == [ORIGIN]
            # The payer's encrypted name and ID stay unread, and load when asked for.
            assert "payer_name" not in found.__dict__
            assert found.payer_name_masked == order["payer"]["name"]
            assert reads == 1, statements
            assert found.payer_id_number == "11010519491231002X"
            assert len(statements) == 2
        finally:
            event.remove(database.engine, "before_cursor_execute", count)


# --- the checkout's own rate limit (audit 11) ------------------------------------------------

HTML_ACCEPT = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


def test_payers_behind_one_address_are_not_held_to_the_sign_up_limit(database, tmp_path):
    from tests.tools.api import make_app

    # The production sign-up limit; the checkout keeps its own default (60/minute).
    app = make_app(database, tmp_path, public_endpoint_limits="5/minute;100/day")
    with TestClient(app, raise_server_exceptions=False) as client:
        pc = new_partner_client(app, client)
        setup_portal(app, pc)
        codes = [pay(client, create_order(pc)).status_code for _ in range(8)]
    assert codes == [303] * 8


def test_a_limited_checkout_answers_with_its_own_page(database, tmp_path):
    from tests.tools.api import make_app

    app = make_app(database, tmp_path, checkout_rate_limit="2/minute")
    with TestClient(app, raise_server_exceptions=False) as client:
        pc = new_partner_client(app, client)
        setup_portal(app, pc)
        order = create_order(pc)
        assert [pay(client, order, password="bad").status_code for _ in range(2)] == [303, 303]
        form = {"method": "bank_account", "account_number": "6222020000000000", "password": "123456",
                "lang": "en"}
        limited = client.post(checkout_path(order) + "/pay", data=form, headers=HTML_ACCEPT,
                              follow_redirects=False)
        assert limited.status_code == 429
        assert limited.headers["content-type"].startswith("text/html")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert "Too many payment attempts" in limited.text and 'lang="en"' in limited.text
        # Still the checkout: the portal may keep framing it.
        assert f"frame-ancestors {ORIGIN}" in limited.headers["Content-Security-Policy"]
        # An API client (no HTML asked for) gets the platform's problem.
        problem(client.post(checkout_path(order) + "/pay", data=form, follow_redirects=False),
                429, "rate_limited")
        # The order's own lockout counts only the attempts that were made.
        state = pc.get(f"/v1/egov/payment-orders/{order['id']}").json()
        assert state["status"] == "open" and state["failed_attempts"] == 2


def test_signed_result_stays_valid_after_the_test_clock_moves(app, http, partner):
    from joserfc.jwt import JWTClaimsRegistry

    setup_portal(app, partner)
    order = create_order(partner)
    advance(app, partner.tenant_id, 600)
    assert pay(http, order).status_code == 303
    advance(app, partner.tenant_id, 3 * 86400)  # the payer comes back days later (test time)
    claims = _verify(app, http, partner, result_token(http, order))
    # A standard JOSE library checks iat/exp against the real clock: the result must pass.
    JWTClaimsRegistry(leeway=5, iss={"essential": True, "value": "http://testserver"},
                      aud={"essential": True, "value": partner.client_id},
                      exp={"essential": True}, iat={"essential": True}).validate(claims)
    assert abs(claims["iat"] - datetime.now(UTC).timestamp()) < 60
    # The business time of the payment is the tenant's (ahead on its test clock).
    assert claims["status"] == "paid"
    paid_at = datetime.fromisoformat(claims["paid_at"].replace("Z", "+00:00"))
    assert paid_at - datetime.now(UTC) > timedelta(seconds=500)


def test_no_return_link_to_an_origin_the_portal_removed(app, http, partner):
    other = "https://old.portal.example.gov.cn"
    payee = setup_portal(app, partner, origins=[ORIGIN, other])
    order = create_order(partner, return_url=other + "/done")
    assert pay(http, order).status_code == 303
    assert 'id="return-link"' in http.get(checkout_path(order)).text

    moved = partner.request("PUT", "/v1/egov/portal", json={
        "name": "一网通办", "payee_name": "上海市财政局", "payee_account_id": payee, "origins": [ORIGIN]})
    assert moved.status_code == 200, moved.text
    page = http.get(checkout_path(order))
    assert page.status_code == 200 and "缴费成功" in page.text
    assert 'id="return-link"' not in page.text and other not in page.text
    # The outcome still reaches the portal's current origin (postMessage), and only it.
    assert f'"targets": ["{ORIGIN}"]' in page.text


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_its_order_expiry_does_not_stop_the_others(app, http, caplog):
    """Order expiry serves each tenant on its own: a tenant whose run fails (its clock cannot be
    read) is logged with its id and left to the next run; the others' orders expire."""
    portals = sorted((new_partner_client(app, http) for _ in range(2)),
                     key=lambda client: client.tenant_id)
    orders = {}
    for pc in portals:
        setup_portal(app, pc)
        orders[pc.tenant_id] = create_order(pc)["id"]  # 30 minutes
        advance(app, pc.tenant_id, 31 * 60)
    stuck, served = (pc.tenant_id for pc in portals)
    break_clock(app.state.database, stuck)

    with caplog.at_level(logging.ERROR):
        assert run_jobs(app, "egov.expire_orders") == {"egov.expire_orders": 1}
    assert statuses(app.state.database, PaymentOrder, orders) == {stuck: "open",
                                                                  served: "expired"}
    assert_failure_logged(caplog, stuck)
