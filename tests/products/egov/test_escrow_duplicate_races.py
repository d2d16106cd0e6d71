"""Two requests opening the same escrow scheme, or the same sub-account, at once: the loser gets
the 409 a later request gets, naming the winner, not a bare `concurrent_update`, and nothing of
it stays: no second scheme, sub-account or ledger account (`tests.tools.concurrency.race_second`)."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.identifiers import generate_uscc
from products.accounts.models import Account
from products.egov import escrow
from products.egov.models import EscrowScheme, EscrowSubAccount
from products.egov.schemas import SchemeIn, SubAccountIn
from tests.products.egov.escrow_support import world
from tests.products.egov.helpers import RNG
from tests.tools.concurrency import race_second


def _count(app, model, *where) -> int:
    with app.state.database.transaction() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_the_same_scheme_opened_twice_at_once_is_a_duplicate(app, http, partner):
    w = world(app, http, partner, kinds=("court_funds",))
    tenant_id = partner.tenant_id
    body = SchemeIn.model_validate({
        "reference": "S-RACE-1", "name": "执行款监管", "regulator_partner_id": w.regulator.partner_id,
        "holder_name": "上海市闵行区人民法院", "holder_uscc": generate_uscc(RNG),
        "policy": {"kind": "court_funds", "required_approvals": 1}})
    raced = race_second(app.state.database, lambda s: escrow.create_scheme(
        s, tenant_id=tenant_id, environment="sandbox", actor="test", body=body))
    assert raced.code == "duplicate_scheme_reference"
    assert raced.problem is not None and raced.problem.extra == {"scheme_id": raced.first.id}
    assert _count(app, EscrowScheme, EscrowScheme.tenant_id == tenant_id) == 1
    # The loser's escrow account, opened before its scheme was refused, went with it.
    assert _count(app, Account, Account.tenant_id == tenant_id, Account.kind == "escrow") == 1


def test_the_same_sub_account_opened_twice_at_once_is_a_duplicate(app, http, partner):
    w = world(app, http, partner, kinds=("court_funds",))
    tenant_id = partner.tenant_id
    scheme = w.scheme({"kind": "court_funds", "required_approvals": 1}, beneficiary=False)
    body = SubAccountIn(reference="(2026)沪0112执88号", holder_name="张三")
    raced = race_second(app.state.database, lambda s: escrow.open_sub_account(
        s, escrow.get_scheme(s, tenant_id, scheme["id"], lock=True), body, actor="test"))
    assert raced.code == "duplicate_sub_account"
    assert raced.problem is not None and raced.problem.extra == {"sub_account_id": raced.first.id}
    assert _count(app, EscrowSubAccount, EscrowSubAccount.scheme_id == scheme["id"]) == 1
    assert _count(app, Account, Account.tenant_id == tenant_id, Account.kind == "virtual") == 1
