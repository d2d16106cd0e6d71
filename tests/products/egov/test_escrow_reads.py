"""Escrow deposits can be read back (list and get, by the operator; listed for the regulator),
and escrow's links to the ledger are called `journal_entry_id`, as on transfers and account
transactions: the deposit's, the release instruction's and the receipt's."""

from __future__ import annotations

from typing import Any

from tests.products.egov.escrow_support import World, world
from tests.products.egov.helpers import create_order, pay, setup_portal
from tests.tools.api import PartnerClient, new_partner_client, problem

SCHEMES = "/v1/egov/escrow-schemes"


def _tuition(w: World) -> tuple[dict[str, Any], dict[str, Any]]:
    scheme = w.scheme({"kind": "tuition", "required_approvals": 1, "max_classes": 48})
    student = w.sub_account(scheme, "STU-R1", holder="赵小明", total_classes=10,
                            tuition={"amount": "3000.00", "currency": "CNY"})
    return scheme, student


def _deposits(scheme: dict[str, Any], sub: dict[str, Any]) -> str:
    return f"{SCHEMES}/{scheme['id']}/sub-accounts/{sub['id']}/deposits"


def _journal_entries(pc: PartnerClient, account_id: str) -> set[str]:
    response = pc.get(f"/v1/accounts/{account_id}/transactions", params={"limit": 100})
    assert response.status_code == 200, response.text
    return {line["journal_entry_id"] for line in response.json()["data"]}


def _assert_journal_entry(pc: PartnerClient, body: dict[str, Any], account_id: str) -> None:
    """The link is named `journal_entry_id` (no `transfer_id`) and is the journal entry of the
    account's lines: a journal entry, which the transfers route rightly does not know."""
    assert "transfer_id" not in body, body
    entry = body["journal_entry_id"]
    assert entry.startswith("jnl_"), body
    assert entry in _journal_entries(pc, account_id)
    problem(pc.get(f"/v1/transfers/{entry}"), 404, "transfer_not_found")


def test_a_deposit_reads_back_as_its_201_said_and_lists_newest_first(app, http, partner):
    w = world(app, http, partner, kinds=("tuition",))
    scheme, student = _tuition(w)
    family, aunt = w.account(fund=500000, person=True, name="赵大明"), w.account(fund=500000)
    made = []
    for source, amount in ((family, "1000.00"), (aunt, "500.00"), (family, "700.00")):
        response = w.deposit(scheme, student, source, amount)
        assert response.status_code == 201, response.text
        made.append(response.json())
    for deposit in made:
        assert deposit["id"].startswith("edep_")
        got = partner.get(f"{_deposits(scheme, student)}/{deposit['id']}")
        assert got.status_code == 200, got.text
        assert got.json() == deposit
        _assert_journal_entry(partner, deposit, deposit["from_account_id"])
        _assert_journal_entry(partner, deposit, student["ledger_account_id"])

    # The event's resource is the deposit the GET shows, under the same names.
    events = partner.get("/v1/events", params={"type": "escrow_deposit.received", "limit": 100})
    assert events.status_code == 200, events.text
    received = {e["resource"]["id"]: e for e in events.json()["data"]}
    for deposit in made:
        event = received[deposit["id"]]
        assert event["resource"]["type"] == "escrow_deposit"
        got = partner.get(f"{_deposits(scheme, student)}/{event['resource']['id']}").json()
        assert got["id"] == event["resource"]["id"] == event["data"]["id"]
        assert event["data"]["journal_entry_id"] == got["journal_entry_id"]
        assert "transfer_id" not in event["data"]

    # Pages of two, newest first, until the cursor runs out.
    first = partner.get(_deposits(scheme, student), params={"limit": 2}).json()
    assert [d["id"] for d in first["data"]] == [made[2]["id"], made[1]["id"]]
    assert first["data"][0] == made[2] and first["next_cursor"]
    second = partner.get(_deposits(scheme, student),
                         params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [d["id"] for d in second["data"]] == [made[0]["id"]] and second["next_cursor"] is None
    problem(partner.get(_deposits(scheme, student), params={"cursor": "garbage"}), 422,
            "invalid_cursor")
    problem(partner.get(_deposits(scheme, student), params={"limit": 101}), 422)

    # The regulator supervising the scheme lists them too; another regulator does not.
    supervised = f"/v1/egov/supervision/escrow-schemes/{scheme['id']}/sub-accounts/{student['id']}/deposits"
    seen = w.regulator.get(supervised, params={"limit": 100})
    assert seen.status_code == 200, seen.text
    assert seen.json()["data"] == [made[2], made[1], made[0]]
    other = new_partner_client(app, http, scopes=["egov:supervise"])
    problem(other.get(supervised), 404, "escrow_scheme_not_found")
    # A partner's read scope does not open the regulator's route, nor the reverse.
    problem(partner.get(supervised), 403, "insufficient_scope")
    problem(w.regulator.get(_deposits(scheme, student)), 403, "insufficient_scope")


def test_another_partners_deposit_is_not_found(app, http, partner):
    w = world(app, http, partner, kinds=("tuition",))
    scheme, student = _tuition(w)
    deposit = w.deposit(scheme, student, w.account(fund=100000), "300.00").json()
    path = f"{_deposits(scheme, student)}/{deposit['id']}"

    stranger = new_partner_client(app, http)
    problem(stranger.get(path), 404, "escrow_scheme_not_found")
    problem(stranger.get(_deposits(scheme, student)), 404, "escrow_scheme_not_found")
    # Under the stranger's own scheme and sub-account, the id is still nobody's it can see.
    theirs = world(app, http, stranger, kinds=("tuition",))
    own_scheme, own_student = _tuition(theirs)
    problem(stranger.get(f"{_deposits(own_scheme, own_student)}/{deposit['id']}"), 404,
            "escrow_deposit_not_found")
    assert stranger.get(_deposits(own_scheme, own_student)).json() == {"data": [],
                                                                       "next_cursor": None}
    # The operator's own other sub-account does not hold it either.
    sibling = w.sub_account(scheme, "STU-R2", holder="钱小红", total_classes=1,
                            tuition={"amount": "100.00", "currency": "CNY"})
    problem(partner.get(f"{_deposits(scheme, sibling)}/{deposit['id']}"), 404,
            "escrow_deposit_not_found")
    problem(partner.get(f"{_deposits(scheme, student)}/edep_nope"), 404, "escrow_deposit_not_found")
    problem(partner.get(f"{SCHEMES}/{scheme['id']}/sub-accounts/esub_nope/deposits"), 404,
            "escrow_sub_account_not_found")


def test_an_executed_release_names_its_journal_entry(app, http, partner):
    w = world(app, http, partner, kinds=("tuition",))
    scheme, student = _tuition(w)
    assert w.deposit(scheme, student, w.account(fund=500000), "3000.00").status_code == 201
    pending = w.instruct(scheme, student, classes=2).json()
    assert pending["journal_entry_id"] is None and "transfer_id" not in pending
    executed = w.decide(pending, "u1").json()
    assert executed["status"] == "executed", executed
    _assert_journal_entry(partner, executed, w.beneficiary)
    read = partner.get(f"{SCHEMES}/{scheme['id']}/release-instructions/{pending['id']}").json()
    assert read["journal_entry_id"] == executed["journal_entry_id"] and "transfer_id" not in read
    events = partner.get("/v1/events", params={"type": "release_instruction.executed"}).json()
    data = next(e["data"] for e in events["data"] if e["resource"]["id"] == pending["id"])
    assert data["journal_entry_id"] == executed["journal_entry_id"] and "transfer_id" not in data


def test_a_receipt_names_the_payments_journal_entry(app, http, partner):
    payee = setup_portal(app, partner)
    order = create_order(partner)
    pay(http, order)
    receipt = partner.get(f"/v1/egov/payment-orders/{order['id']}/receipt")
    assert receipt.status_code == 200, receipt.text
    _assert_journal_entry(partner, receipt.json(), payee)
