"""Two requests creating the same reference at once: the loser gets the same 409
`duplicate_reference` a later request gets, not a bare `concurrent_update`, and nothing of it
stays (no second grant funded, no second diner). The winner's row is written but not yet
committed when the loser looks for it, as when both requests arrive together: on PostgreSQL
the loser's insert waits on the unique index, then fails."""

from __future__ import annotations

from sqlalchemy import func, select

from gateway.clock import SHANGHAI
from products.collection import canteen, schemas
from products.collection.models import Diner, SubsidyGrant
from tests.products.collection.support import money, setup_platform, uscc
from tests.tools.concurrency import race_second


def test_the_same_diner_and_grant_at_once_are_duplicates(app, http):
    p = setup_platform(app, http)
    funding = p.account(1_000_00)
    employer = p.post("/canteen/employers", {"name": "苏州恒达精密机械有限公司", "uscc": uscc(),
                                             "funding_account_id": funding})
    assert employer.status_code == 201, employer.text
    eid = employer.json()["id"]

    diner = schemas.DinerCreate(employee_no="E7", name="王伟")
    assert race_second(p.database, lambda s: canteen.create_diner(
        s, p.tenant_id, "test", eid, diner)).code == "duplicate_reference"

    with p.database.transaction() as s:
        diner_id = s.scalar(select(Diner.id).where(Diner.employer_id == eid))
        assert s.scalar(select(func.count()).select_from(Diner).where(
            Diner.employer_id == eid)) == 1
    month = p.now().astimezone(SHANGHAI).strftime("%Y-%m")
    grant = schemas.GrantCreate(reference="G-1", month=month, items=[
        schemas.GrantItem(diner_id=diner_id, amount=money("10.00"))])
    assert race_second(p.database, lambda s: canteen.create_grant(
        s, p.tenant_id, "test", eid, grant)).code == "duplicate_reference"
    with p.database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(SubsidyGrant).where(
            SubsidyGrant.employer_id == eid)) == 1
    assert p.balance(funding) == 990_00  # funded once
