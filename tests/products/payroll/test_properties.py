"""Money is conserved whatever mix of outcomes a batch meets: what left the payer is exactly
what was paid and not returned, nothing stays held, and each paid item has one ledger entry."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from products.accounts import magic
from products.accounts import service as accounts
from products.accounts.models import JournalEntry
from tests.products.payroll.support import (
    Person,
    advance_days,
    balance,
    batch_body,
    items_for,
    magic_card,
    open_account,
    people,
    run_payroll,
    tenant_today,
)

OUTCOMES = ("paid", "closed", "frozen", "mismatch", "magic_amount", "returned")


@settings(max_examples=6, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=8),
       # An amount that is a sandbox magic value has its own documented outcome (kind
       # "magic_amount" covers that), so the others never draw one.
       amounts=st.lists(st.integers(1, 5_000_00).filter(lambda f: magic.magic_amount(f) is None),
                        min_size=8, max_size=8),
       seed=st.integers(0, 10_000))
def test_money_is_conserved(app, employer, kinds, amounts, seed):
    pc = employer.client
    staff = people(len(kinds), seed=seed)
    fen = amounts[:len(kinds)]
    for i, kind in enumerate(kinds):
        p = staff[i]
        if kind == "closed":
            staff[i] = Person(p.name, p.id_number, magic_card("0002"))
        elif kind == "frozen":
            staff[i] = Person(p.name, p.id_number, magic_card("0003"))
        elif kind == "mismatch":
            staff[i] = Person("户名不符", p.id_number, p.card)
        elif kind == "returned":
            staff[i] = Person(p.name + "RETURN", p.id_number, p.card)
        elif kind == "magic_amount":
            fen[i] = 404002
    start = sum(fen) + 1000_00
    payer = open_account(app, pc.tenant_id, fen=start)
    body = batch_body(payer, items_for(staff, fen), value_date=tenant_today(app, pc.tenant_id))
    batch = pc.post("/v1/payroll/batches", body).json()
    assert batch["status"] == "validated", batch
    confirmed = pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    run_payroll(app)
    advance_days(app, pc.tenant_id, 1)
    run_payroll(app)

    kept = sum(f for k, f in zip(kinds, fen, strict=True) if k == "paid")
    paid = sum(f for k, f in zip(kinds, fen, strict=True) if k in ("paid", "returned"))
    assert balance(app, pc.tenant_id, payer) == (start - kept, 0)
    got = pc.get(f"/v1/payroll/batches/{batch['id']}").json()
    progress = got["progress"]
    assert progress["succeeded"] + progress["failed"] == len(kinds) == progress["processed"]
    assert progress["returned"] == kinds.count("returned")
    assert int(progress["succeeded_amount"]["amount"].replace(".", "")) == paid
    assert got["held"]["amount"] == "0.00"
    with app.state.database.transaction() as session:
        entries = session.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.reference_type == "payroll_item",
            JournalEntry.journal_ref.startswith("payroll:"),
            JournalEntry.tenant_id == pc.tenant_id,
            JournalEntry.reference_id.in_([i["id"] for i in pc.get(
                f"/v1/payroll/batches/{batch['id']}/items?limit=100").json()["data"]])))
        assert entries == kinds.count("paid") + kinds.count("returned")
        assert accounts.audit(session, pc.tenant_id) == []
