"""Paying a batch chunk by chunk with one bulk capture per chunk: the ledger holds exactly one
entry per paid item and balances to the sum of the items, a chunk repeated after a crash (or
after its captures survived without the items) pays nothing twice, workers racing for the same
batch pay each item once, returns still give the money back, and a core-banking adapter
without bulk capture pays the same way item by item."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from products.accounts import service as accounts
from products.accounts.models import Hold, JournalEntry, Posting
from products.payroll import processing
from products.payroll.models import PayrollBatch, PayrollItem
from tests.products.payroll.support import (
    Person,
    advance_days,
    balance,
    batch_body,
    items_for,
    magic_card,
    open_account,
    open_person_account,
    people,
    run_payroll,
    tenant_today,
)
from tests.tools.concurrency import run_together

CHUNK = 4


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Several chunks per batch, so that chunk boundaries are crossed."""
    monkeypatch.setenv("QUANLIAN_PAYROLL_CHUNK_SIZE", str(CHUNK))


def _confirmed_batch(app: Any, pc: Any, staff: list[Person], amounts: list[int],
                     payer: str) -> dict[str, Any]:
    body = batch_body(payer, items_for(staff, amounts), value_date=tenant_today(app, pc.tenant_id))
    batch = pc.post("/v1/payroll/batches", body).json()
    assert batch["status"] == "validated", batch
    confirmed = pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    assert confirmed.status_code == 200 and confirmed.json()["status"] == "processing"
    return batch


def _ledger(app: Any, tenant_id: str, batch_id: str) -> dict[str, Any]:
    with app.state.database.transaction() as s:
        items = s.execute(select(PayrollItem.id, PayrollItem.status, PayrollItem.amount_fen,
                                 PayrollItem.entry_id, PayrollItem.journal_ref)
                          .where(PayrollItem.batch_id == batch_id)).all()
        entries = {e.reference_id: e for e in s.scalars(select(JournalEntry).where(
            JournalEntry.tenant_id == tenant_id, JournalEntry.journal_ref.startswith("payroll:")))}
        clearing = accounts.internal_account(s, tenant_id, accounts.CLEARING).id
        to_clearing = s.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0)).where(
            Posting.account_id == clearing, Posting.entry_id.in_([e.id for e in entries.values()]),
            Posting.amount_fen > 0))
        hold = s.scalars(select(Hold).where(Hold.reference_id == batch_id)).one()
        return {"items": items, "entries": entries, "to_clearing": to_clearing,
                "hold": (hold.status, hold.captured_fen, hold.released_fen),
                "audit": accounts.audit(s, tenant_id)}


def test_a_paid_batch_has_one_entry_per_item_and_balances_to_the_items(app, employer):
    pc = employer.client
    staff = people(11, seed=31)
    own = open_person_account(app, pc.tenant_id, staff[4])  # paid in-house, in the 2nd chunk
    staff[6] = Person("户名不符", staff[6].id_number, staff[6].card)  # fails in the 2nd chunk
    staff[9] = Person(staff[9].name, staff[9].id_number, magic_card("0003"))  # fails in the 3rd
    amounts = [1000_00 + 37 * i for i in range(11)]
    start = sum(amounts) + 500_00
    payer = open_account(app, pc.tenant_id, fen=start)
    batch = _confirmed_batch(app, pc, staff, amounts, payer)
    assert balance(app, pc.tenant_id, payer) == (start, sum(amounts))

    assert run_payroll(app) > 0
    got = pc.get(f"/v1/payroll/batches/{batch['id']}").json()
    assert got["status"] == "partially_completed" and got["held"]["amount"] == "0.00"
    failed = {6, 9}
    paid = [a for i, a in enumerate(amounts) if i not in failed]
    assert (got["progress"]["succeeded"], got["progress"]["failed"]) == (9, 2)
    assert int(got["progress"]["succeeded_amount"]["amount"].replace(".", "")) == sum(paid)
    assert balance(app, pc.tenant_id, payer) == (start - sum(paid), 0)
    assert balance(app, pc.tenant_id, own) == (amounts[4], 0)

    ledger = _ledger(app, pc.tenant_id, batch["id"])
    assert ledger["audit"] == []
    assert ledger["hold"] == ("captured", sum(paid), sum(amounts[i] for i in failed))
    assert ledger["to_clearing"] == sum(paid) - amounts[4]
    by_item = {i.id: i for i in ledger["items"]}
    assert set(ledger["entries"]) == {i.id for i in ledger["items"] if i.status == "succeeded"}
    for item_id, entry in ledger["entries"].items():
        item = by_item[item_id]
        assert (item.entry_id, item.journal_ref) == (entry.id, f"payroll:{item_id}")
        assert entry.total_fen == item.amount_fen and entry.kind == "capture"
    listed = pc.get(f"/v1/payroll/batches/{batch['id']}/items?limit=100").json()["data"]
    assert [i["paid_to"] for i in listed] == [
        None if n in failed else "this_bank" if n == 4 else "other_bank" for n in range(11)]


def test_a_chunk_rolled_back_by_a_crash_is_paid_once_when_run_again(app, employer):
    pc = employer.client
    amounts = [500_00 + i for i in range(10)]
    payer = open_account(app, pc.tenant_id, fen=sum(amounts))
    batch = _confirmed_batch(app, pc, people(10, seed=5), amounts, payer)
    database = app.state.database

    class Crash(Exception):
        pass

    with pytest.raises(Crash), database.transaction() as s:
        assert processing.process_chunk(s, batch["id"], CHUNK) == CHUNK
        raise Crash  # the worker dies before its commit: the chunk's work is rolled back
    with database.transaction() as s:
        assert s.scalar(select(PayrollBatch.processed).where(PayrollBatch.id == batch["id"])) == 0
    run_payroll(app)
    ledger = _ledger(app, pc.tenant_id, batch["id"])
    assert len(ledger["entries"]) == 10 and ledger["audit"] == []
    assert ledger["hold"] == ("captured", sum(amounts), 0)
    assert balance(app, pc.tenant_id, payer) == (0, 0)


def test_captures_that_survived_without_their_items_are_not_paid_again(app, employer):
    """As with a core-banking system that commits on its own: some items' captures are in the
    ledger but the items are still pending. The chunk marks them paid with those entries."""
    pc = employer.client
    amounts = [700_00 + i for i in range(9)]
    payer = open_account(app, pc.tenant_id, fen=sum(amounts) + 1_00)
    batch = _confirmed_batch(app, pc, people(9, seed=8), amounts, payer)
    with app.state.database.transaction() as s:
        b = s.get(PayrollBatch, batch["id"])
        clearing = accounts.internal_account(s, pc.tenant_id, accounts.CLEARING).id
        pending = s.execute(select(PayrollItem.id, PayrollItem.amount_fen)
                            .where(PayrollItem.batch_id == b.id).order_by(PayrollItem.seq)).all()
        survived = {item_id: accounts.capture_hold(
            s, pc.tenant_id, b.hold_id, to_account_id=clearing, amount_fen=fen,
            journal_ref=processing.journal_ref(item_id), purpose="payroll",
            reference_type="payroll_item", reference_id=item_id).entry.id
            for item_id, fen in pending[2:7]}  # across the first and second chunks
    run_payroll(app)
    ledger = _ledger(app, pc.tenant_id, batch["id"])
    assert len(ledger["entries"]) == 9 and ledger["audit"] == []
    for item in ledger["items"]:
        assert item.status == "succeeded"
        if item.id in survived:
            assert item.entry_id == survived[item.id]
    assert ledger["hold"] == ("captured", sum(amounts), 0)
    assert balance(app, pc.tenant_id, payer) == (1_00, 0)
    assert pc.get(f"/v1/payroll/batches/{batch['id']}").json()["status"] == "completed"


@pytest.mark.timeout(300)
def test_workers_racing_for_one_batch_pay_each_item_once(app, employer):
    pc = employer.client
    amounts = [300_00 + i for i in range(25)]
    payer = open_account(app, pc.tenant_id, fen=sum(amounts))
    batch = _confirmed_batch(app, pc, people(25, seed=12), amounts, payer)
    def pay() -> None:
        for _ in range(50):
            processing.pay_batches(app.state.database)

    run_together(pay, 3, timeout=240)
    run_payroll(app)
    ledger = _ledger(app, pc.tenant_id, batch["id"])
    assert len(ledger["entries"]) == 25 and ledger["audit"] == []
    assert ledger["hold"] == ("captured", sum(amounts), 0)
    assert balance(app, pc.tenant_id, payer) == (0, 0)


def test_a_returned_item_of_a_later_chunk_gives_its_money_back(app, employer):
    pc = employer.client
    staff = people(7, seed=44)
    staff[5] = Person(staff[5].name + "RETURN", staff[5].id_number, staff[5].card)
    amounts = [900_00 + i for i in range(7)]
    payer = open_account(app, pc.tenant_id, fen=sum(amounts))
    batch = _confirmed_batch(app, pc, staff, amounts, payer)
    run_payroll(app)
    assert balance(app, pc.tenant_id, payer) == (0, 0)
    advance_days(app, pc.tenant_id, 1)
    run_payroll(app)
    returned = pc.get(f"/v1/payroll/batches/{batch['id']}/items?status=returned").json()["data"]
    assert [(i["item_reference"], i["reason_code"]) for i in returned] == [("E00006",
                                                                            "account_closed")]
    assert balance(app, pc.tenant_id, payer) == (amounts[5], 0)
    assert _ledger(app, pc.tenant_id, batch["id"])["audit"] == []


class _ItemByItem:
    """A core-banking adapter with every `CoreBanking` call but no bulk capture (as a bank's
    own adapter may be): it delegates to the ledger and counts the captures."""

    def __init__(self) -> None:
        self.ledger = accounts.LedgerCoreBanking()
        self.captures = 0

    def __getattr__(self, name: str) -> Any:
        if name == "capture_hold_many":
            raise AttributeError(name)
        return getattr(self.ledger, name)

    def capture_hold(self, *args: Any, **kwargs: Any) -> Any:
        self.captures += 1
        return self.ledger.capture_hold(*args, **kwargs)

    # The port's other methods, explicitly (a Protocol check looks at the class).
    def transfer(self, *a: Any, **k: Any) -> Any: return self.ledger.transfer(*a, **k)  # noqa: E704
    def post_entry(self, *a: Any, **k: Any) -> Any: return self.ledger.post_entry(*a, **k)  # noqa: E704
    def place_hold(self, *a: Any, **k: Any) -> Any: return self.ledger.place_hold(*a, **k)  # noqa: E704
    def release_hold(self, *a: Any, **k: Any) -> Any: return self.ledger.release_hold(*a, **k)  # noqa: E704
    def get_hold(self, *a: Any, **k: Any) -> Any: return self.ledger.get_hold(*a, **k)  # noqa: E704
    def balance(self, *a: Any, **k: Any) -> Any: return self.ledger.balance(*a, **k)  # noqa: E704
    def statement(self, *a: Any, **k: Any) -> Any: return self.ledger.statement(*a, **k)  # noqa: E704


@pytest.fixture
def item_by_item() -> Iterator[_ItemByItem]:
    adapter = _ItemByItem()
    accounts.set_core_banking(adapter)  # type: ignore[arg-type]
    try:
        yield adapter
    finally:
        accounts.set_core_banking(None)


def test_an_adapter_without_bulk_capture_pays_item_by_item_with_the_same_outcome(
        app, employer, item_by_item):
    pc = employer.client
    staff = people(6, seed=77)
    staff[2] = Person(staff[2].name, staff[2].id_number, magic_card("0002"))
    amounts = [400_00 + i for i in range(6)]
    payer = open_account(app, pc.tenant_id, fen=sum(amounts))
    batch = _confirmed_batch(app, pc, staff, amounts, payer)
    run_payroll(app)
    assert item_by_item.captures == 5
    paid = sum(a for i, a in enumerate(amounts) if i != 2)
    assert balance(app, pc.tenant_id, payer) == (sum(amounts) - paid, 0)
    ledger = _ledger(app, pc.tenant_id, batch["id"])
    assert len(ledger["entries"]) == 5 and ledger["audit"] == []
    assert ledger["hold"] == ("captured", paid, amounts[2])
