"""A diner's top-ups can be read back: the 201 carries the top-up's id, the id the
`diner_wallet.topped_up` event names, and the diner's top-ups list and get answer it."""

from __future__ import annotations

from typing import Any

from tests.products.collection.support import Platform, money, setup_platform, uscc
from tests.tools.api import problem


def _diner(p: Platform, *, funds_fen: int = 500_00) -> tuple[dict[str, Any], str]:
    funding = p.account(100_000_00)
    employer = p.post("/canteen/employers", {"name": "苏州恒达精密机械有限公司", "uscc": uscc(),
                                             "funding_account_id": funding})
    assert employer.status_code == 201, employer.text
    own = p.account(funds_fen, person=True)
    diner = p.post(f"/canteen/employers/{employer.json()['id']}/diners",
                   {"employee_no": "E100", "name": "王伟", "funding_account_id": own})
    assert diner.status_code == 201, diner.text
    return diner.json(), own


def _top_up(p: Platform, diner_id: str, amount: str) -> dict[str, Any]:
    response = p.post(f"/canteen/diners/{diner_id}/top-ups", {"amount": money(amount)})
    assert response.status_code == 201, response.text
    return response.json()


def test_a_top_up_reads_back_as_its_201_said_and_lists_newest_first(app, http):
    p = setup_platform(app, http)
    diner, own = _diner(p)
    made = [_top_up(p, diner["id"], amount) for amount in ("50.00", "20.00", "30.00")]
    assert [t["personal_balance"]["amount"] for t in made] == ["50.00", "70.00", "100.00"]
    for top_up in made:
        assert top_up["id"].startswith("ctop_") and top_up["diner_id"] == diner["id"]
        assert top_up["from_account_id"] == own
        got = p.get(f"/canteen/diners/{diner['id']}/top-ups/{top_up['id']}")
        assert got.status_code == 200, got.text
        assert got.json() == top_up  # the balance it left, not today's
        lines = p.pc.get(f"/v1/accounts/{own}/transactions", params={"limit": 100}).json()["data"]
        assert top_up["journal_entry_id"] in {line["journal_entry_id"] for line in lines}

    # Each event names the top-up the GET shows (its resource is the diner whose wallet it is).
    events = p.pc.get("/v1/events", params={"type": "diner_wallet.topped_up", "limit": 100})
    assert events.status_code == 200, events.text
    named = {e["data"]["top_up_id"]: e for e in events.json()["data"]}
    for top_up in made:
        event = named[top_up["id"]]
        assert (event["resource"]["type"], event["resource"]["id"]) == ("diner", diner["id"])
        got = p.get(f"/canteen/diners/{event['resource']['id']}/top-ups/"
                    f"{event['data']['top_up_id']}").json()
        assert got["id"] == top_up["id"] and got["amount"] == event["data"]["amount"]

    first = p.get(f"/canteen/diners/{diner['id']}/top-ups", params={"limit": 2}).json()
    assert first["data"] == [made[2], made[1]] and first["next_cursor"]
    second = p.get(f"/canteen/diners/{diner['id']}/top-ups",
                   params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second == {"data": [made[0]], "next_cursor": None}
    problem(p.get(f"/canteen/diners/{diner['id']}/top-ups", params={"cursor": "garbage"}), 422,
            "invalid_cursor")
    problem(p.get(f"/canteen/diners/{diner['id']}/top-ups", params={"limit": 101}), 422)
    problem(p.get(f"/canteen/diners/{diner['id']}/top-ups", params={"limit": 0}), 422)


def test_another_partners_top_up_is_not_found(app, http):
    p = setup_platform(app, http)
    diner, _ = _diner(p)
    top_up = _top_up(p, diner["id"], "50.00")
    path = f"/canteen/diners/{diner['id']}/top-ups/{top_up['id']}"

    other = setup_platform(app, http, mandate=False)
    problem(other.get(path), 404, "diner_not_found")
    problem(other.get(f"/canteen/diners/{diner['id']}/top-ups"), 404, "diner_not_found")
    # Under the other partner's own diner, the id is still nobody's it can see.
    theirs, _ = _diner(other)
    problem(other.get(f"/canteen/diners/{theirs['id']}/top-ups/{top_up['id']}"), 404,
            "top_up_not_found")
    assert other.get(f"/canteen/diners/{theirs['id']}/top-ups").json() == {
        "data": [], "next_cursor": None}
    problem(p.get(f"/canteen/diners/{diner['id']}/top-ups/ctop_nope"), 404, "top_up_not_found")
    problem(p.get("/canteen/diners/cdin_nope/top-ups"), 404, "diner_not_found")
    # A refused top-up keeps nothing to read.
    broke, _ = _diner(p, funds_fen=0)
    problem(p.post(f"/canteen/diners/{broke['id']}/top-ups", {"amount": money("1.00")}), 422,
            "insufficient_funds")
    assert p.get(f"/canteen/diners/{broke['id']}/top-ups").json()["data"] == []
