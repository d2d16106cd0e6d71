"""A month in a canteen (智慧食堂), through HTTP on the test clock: grants, top-ups, meals paid
subsidy first, refunds back to their wallets, month-end expiry and the subsidy report."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from gateway.clock import SHANGHAI
from products.accounts.models import Account
from products.collection.models import CollectionSettings, Diner, Employer, SubsidyLot
from tests.products.collection.support import (
    Platform,
    clearing_invariants,
    money,
    ref,
    setup_platform,
    uscc,
)
from tests.tools.api import problem


def pools_agree(p: Platform) -> None:
    """Each pool's ledger balance is its sub-ledger: open lots, personal balances."""
    with p.database.transaction() as s:
        settings = s.get(CollectionSettings, p.tenant_id)
        personal = s.scalar(select(func.coalesce(func.sum(Diner.personal_balance_fen), 0))
                            .where(Diner.tenant_id == p.tenant_id))
        assert s.get(Account, settings.wallet_pool_account_id).ledger_fen == personal
        for employer in s.scalars(select(Employer).where(Employer.tenant_id == p.tenant_id)):
            lots = s.scalars(select(SubsidyLot).join(Diner, Diner.id == SubsidyLot.diner_id)
                             .where(Diner.employer_id == employer.id,
                                    SubsidyLot.status == "open"))
            assert s.get(Account, employer.subsidy_pool_account_id).ledger_fen == sum(
                lot.balance_fen for lot in lots)


def month_start_after(p: Platform) -> datetime:
    local = p.now().astimezone(SHANGHAI)
    year, month = (local.year + 1, 1) if local.month == 12 else (local.year, local.month + 1)
    return datetime(year, month, 1, 10, 0, tzinfo=SHANGHAI)


def meal(p: Platform, diner_id: str, amount: str, **extra):
    body = {"merchant_order_no": ref("MEAL"), "diner_id": diner_id, "amount": money(amount),
            "sub_merchant_id": p.merchants[0], **extra}
    return p.post("/canteen/meals", body)


def test_a_month_of_canteen_meals_with_expiry(app, http):
    p = setup_platform(app, http)
    p.advance_to(month_start_after(p))  # the 1st of a month, 10:00 in Shanghai
    month = p.now().astimezone(SHANGHAI).strftime("%Y-%m")
    funding = p.account(100_000_00)
    employer = p.post("/canteen/employers", {"name": "苏州恒达精密机械有限公司", "uscc": uscc(),
                                             "funding_account_id": funding})
    assert employer.status_code == 201, employer.text
    eid = employer.json()["id"]
    problem(p.post("/canteen/employers", {"name": "x", "uscc": employer.json()["uscc"],
                                          "funding_account_id": funding}), 409, "duplicate_uscc")
    own = p.account(500_00, person=True)
    diners = []
    for i, (name, account) in enumerate((("王伟", own), ("李娜", None), ("张敏", None))):
        body = {"employee_no": f"E{100 + i}", "name": name, "phone": "13812345678"}
        if account:
            body["funding_account_id"] = account
        response = p.post(f"/canteen/employers/{eid}/diners", body)
        assert response.status_code == 201, response.text
        diners.append(response.json())
    assert diners[0]["name"] == "王*" and diners[0]["phone"] == "138****5678"
    problem(p.post(f"/canteen/employers/{eid}/diners", {"employee_no": "E100", "name": "x"}), 409,
            "duplicate_reference")
    d1, d2, d3 = (d["id"] for d in diners)

    previous = (p.now().astimezone(SHANGHAI).replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
    grant_body = {"reference": f"G-{month}", "month": month,
                  "items": [{"diner_id": d, "amount": money("200.00")} for d in (d1, d2, d3)]}
    problem(p.post(f"/canteen/employers/{eid}/grants", {**grant_body, "month": previous}), 409,
            "grant_month_closed")
    problem(p.post(f"/canteen/employers/{eid}/grants", {
        **grant_body, "items": [{"diner_id": d1, "amount": money("1.00")},
                                {"diner_id": d1, "amount": money("1.00")},
                                {"diner_id": "cdin_other", "amount": money("1.00")}]}), 422,
        "invalid_grant_items")
    grant = p.post(f"/canteen/employers/{eid}/grants", grant_body)
    assert grant.status_code == 201, grant.text
    assert grant.json()["total"] == money("600.00") and grant.json()["status"] == "funded"
    problem(p.post(f"/canteen/employers/{eid}/grants", grant_body), 409, "duplicate_reference")
    assert p.balance(funding) == 100_000_00 - 600_00

    topped = p.post(f"/canteen/diners/{d1}/top-ups", {"amount": money("50.00")})
    assert topped.status_code == 201 and topped.json()["personal_balance"] == money("50.00")
    problem(p.post(f"/canteen/diners/{d2}/top-ups", {"amount": money("50.00")}), 409,
            "no_funding_account")
    assert p.balance(own) == 450_00

    # d1 eats 12.00 every day for 17 days: 16 meals on subsidy, the 17th is mixed
    orders = []
    for _day in range(17):
        response = meal(p, d1, "12.00", platform_fee=money("0.20"))
        assert response.status_code == 201, response.text
        orders.append(response.json())
        p.advance(86400)
    mixed = orders[-1]
    assert orders[0]["subsidy_paid"] == money("12.00") and orders[0]["personal_paid"] == money("0.00")
    assert mixed["subsidy_paid"] == money("8.00") and mixed["personal_paid"] == money("4.00")
    assert [s["amount"]["amount"] for s in mixed["splits"]] == ["11.80", "0.20"]
    view = p.get(f"/canteen/diners/{d1}").json()
    assert view["subsidy_balance"] == money("0.00") and view["personal_balance"] == money("46.00")

    for _ in range(5):
        assert meal(p, d2, "10.00").json()["status"] == "succeeded"
    declined = meal(p, d2, "150.01").json()
    assert declined["status"] == "failed"
    assert declined["failure_code"] == "insufficient_wallet_balance"
    problem(meal(p, "cdin_nope", "1.00"), 404, "diner_not_found")
    problem(meal(p, d2, "1.00", platform_fee=money("1.00")), 422, "splits_do_not_sum")
    pools_agree(p)

    # a partial refund of the mixed meal: the personal 4.00 first, then 2.00 of subsidy
    refund = p.post(f"/orders/{mixed['id']}/refunds", {"amount": money("6.00")})
    assert refund.status_code == 201, refund.text
    assert refund.json()["to_personal_wallet"] == money("4.00")
    assert refund.json()["to_subsidy"] == money("2.00")
    view = p.get(f"/canteen/diners/{d1}").json()
    assert view["subsidy_balance"] == money("2.00") and view["personal_balance"] == money("50.00")
    pools_agree(p)

    # the month ends: what is left returns to the employer
    next_month = month_start_after(p).replace(hour=0, minute=5)
    p.advance_to(next_month)
    p.run_jobs()
    expired = p.get(f"/canteen/grants/{grant.json()['id']}").json()
    assert expired["status"] == "expired"
    assert expired["expired"] == money("352.00")  # d1 2.00, d2 150.00, d3 200.00
    assert p.balance(funding) == 100_000_00 - 600_00 + 352_00
    assert p.get(f"/canteen/diners/{d1}").json()["subsidy_balance"] == money("0.00")
    assert meal(p, d3, "1.00").json()["failure_code"] == "insufficient_wallet_balance"

    # a refund after the month's expiry gives the subsidy part back to the employer at once:
    # the meal was settled long ago, so the bank advances it (the canteen repays it from its
    # next settlement) and the clearing account, other payees' money, is not touched
    clearing = p.clearing()
    late = p.post(f"/orders/{orders[0]['id']}/refunds", {"amount": money("12.00")})
    assert late.status_code == 201, late.text
    late = late.json()
    assert late["to_employer"] == money("12.00") and late["to_subsidy"] == money("0.00")
    assert late["advanced"] == money("12.00")
    assert p.balance(funding) == 100_000_00 - 600_00 + 352_00 + 12_00
    assert p.clearing() == clearing
    assert meal(p, d1, "20.00").json()["personal_paid"] == money("20.00")
    pools_agree(p)

    report = p.get(f"/canteen/employers/{eid}/subsidy-reports/{month}")
    assert report.status_code == 200, report.text
    report = report.json()
    assert report["status"] == "expired"
    assert (report["granted"], report["spent"], report["refunded"], report["expired"],
            report["returned_after_expiry"]) == (money("600.00"), money("250.00"),
                                                 money("2.00"), money("352.00"), money("12.00"))
    rows = {r["employee_no"]: r for r in report["diners"]}
    assert rows["E100"]["spent"] == money("200.00") and rows["E100"]["meal_count"] == 17
    assert rows["E101"]["expired"] == money("150.00") and rows["E101"]["meal_count"] == 5
    assert rows["E102"]["expired"] == money("200.00") and rows["E102"]["name"] == "张*"
    clearing_invariants(p)


def test_a_grant_for_the_last_month_of_the_calendar_is_out_of_range(app, http):
    p = setup_platform(app, http)
    funding = p.account(1_000_00)
    eid = p.post("/canteen/employers", {"name": "苏州恒达精密机械有限公司", "uscc": uscc(),
                                        "funding_account_id": funding}).json()["id"]
    diner = p.post(f"/canteen/employers/{eid}/diners", {"employee_no": "E1", "name": "王伟"})
    body = {"reference": "G-FAR", "items": [{"diner_id": diner.json()["id"],
                                             "amount": money("1.00")}]}
    # 9999-12 would expire when 10000-01 begins: beyond the calendar, refused, nothing moved
    refused = problem(p.post(f"/canteen/employers/{eid}/grants", {**body, "month": "9999-12"}),
                      422, "value_out_of_range")
    assert [e["field"] for e in refused["errors"]] == ["body.month"]
    assert p.balance(funding) == 1_000_00
    # the month before is the last a grant can be for
    last = p.post(f"/canteen/employers/{eid}/grants", {**body, "month": "9999-11"})
    assert last.status_code == 201, last.text
    assert last.json()["expires_at"].startswith("9999-11-30T16:00:00")
