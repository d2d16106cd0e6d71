"""Two requests creating the same reference at once: the loser gets the same 409
`duplicate_reference` a later request gets, not a bare `concurrent_update`, and nothing of it
stays (no second grant funded, no second diner). The winner's row is written but not yet
committed when the loser looks for it, as when both requests arrive together: on PostgreSQL
the loser's insert waits on the unique index, then fails."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, select

from gateway.clock import SHANGHAI
from gateway.errors import Problem
from products.collection import canteen, schemas
from products.collection.models import Diner, SubsidyGrant
from tests.products.collection.support import money, setup_platform, uscc


def _race(database: Any, create: Callable[[Any], Any]) -> str:
    """`create` in a transaction held open while a second `create` runs; the second's outcome."""
    outcome: dict[str, str] = {}

    def second() -> None:
        try:
            with database.transaction() as s:
                create(s)
            outcome["code"] = "created"
        except Problem as exc:
            outcome["code"] = exc.code
        except Exception as exc:  # noqa: BLE001 - the test reports what it was
            outcome["code"] = type(exc).__name__

    with database.transaction() as s:
        create(s)
        racer = threading.Thread(target=second)
        racer.start()
        time.sleep(0.5)  # the second request looks, finds nothing committed, and inserts
    racer.join(timeout=30)
    assert not racer.is_alive()
    return outcome["code"]


def test_the_same_diner_and_grant_at_once_are_duplicates(app, http):
    p = setup_platform(app, http)
    funding = p.account(1_000_00)
    employer = p.post("/canteen/employers", {"name": "苏州恒达精密机械有限公司", "uscc": uscc(),
                                             "funding_account_id": funding})
    assert employer.status_code == 201, employer.text
    eid = employer.json()["id"]

    diner = schemas.DinerCreate(employee_no="E7", name="王伟")
    assert _race(p.database, lambda s: canteen.create_diner(
        s, p.tenant_id, "test", eid, diner)) == "duplicate_reference"

    with p.database.transaction() as s:
        diner_id = s.scalar(select(Diner.id).where(Diner.employer_id == eid))
        assert s.scalar(select(func.count()).select_from(Diner).where(
            Diner.employer_id == eid)) == 1
    month = p.now().astimezone(SHANGHAI).strftime("%Y-%m")
    grant = schemas.GrantCreate(reference="G-1", month=month, items=[
        schemas.GrantItem(diner_id=diner_id, amount=money("10.00"))])
    assert _race(p.database, lambda s: canteen.create_grant(
        s, p.tenant_id, "test", eid, grant)) == "duplicate_reference"
    with p.database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(SubsidyGrant).where(
            SubsidyGrant.employer_id == eid)) == 1
    assert p.balance(funding) == 990_00  # funded once
