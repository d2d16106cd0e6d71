"""Plain factories for the collection tests: a sandbox platform with ledger accounts, sub-merchants
and a funded payer; clock helpers; ledger read-outs. Everything a partner does goes through HTTP;
only what a partner cannot do itself (the bank opening accounts) is done in a transaction here."""

from __future__ import annotations

import math
import random
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from gateway import jobs
from gateway.clock import SHANGHAI
from gateway.identifiers import generate_resident_id, generate_uscc
from gateway.tenancy import clock_for
from products.accounts import service as accounts
from products.accounts.models import Account
from tests.tools.api import PartnerClient, new_partner_client

_rng = random.Random(20261102)


def money(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "CNY"}


def uscc() -> str:
    return generate_uscc(_rng)


def ref(prefix: str = "ORD") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:16]}"


@dataclass
class Platform:
    app: Any
    pc: PartnerClient
    tenant_id: str
    platform_account: str
    merchant_accounts: list[str]
    merchants: list[str]
    payer_account: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def database(self) -> Any:
        return self.app.state.database

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.pc.post("/v1/collection" + path, body, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.pc.get("/v1/collection" + path, **kwargs)

    def patch(self, path: str, body: Any) -> Any:
        return self.pc.request("PATCH", "/v1/collection" + path, json=body)

    def now(self) -> datetime:
        with self.database.transaction() as s:
            return clock_for(s, self.tenant_id).now()

    def today(self) -> date:
        return self.now().astimezone(SHANGHAI).date()

    def advance(self, seconds: float) -> None:
        """Move the tenant's test clock through the sandbox API (as a developer would)."""
        response = self.pc.post("/sandbox/v1/clock/advance", {"seconds": math.ceil(seconds)})
        assert response.status_code == 200, response.text

    def advance_to(self, when: datetime) -> None:
        delta = (when - self.now()).total_seconds()
        if delta > 0:
            self.advance(delta)

    def run_jobs(self) -> dict[str, int]:
        """Run collection's jobs until none has work (other products' jobs are theirs to test)."""
        mine = [name for name in jobs.registered() if name.startswith("collection.")]
        total: dict[str, int] = {}
        for _ in range(50):
            done = jobs.run_all_once(self.database, only=mine)
            for name, count in done.items():
                total[name] = total.get(name, 0) + count
            if not any(done.values()):
                break
        return total

    def balance(self, account_id: str) -> int:
        with self.database.transaction() as s:
            return s.get(Account, account_id).ledger_fen  # type: ignore[union-attr]

    def clearing(self) -> int:
        """The clearing account's balance: the sum of its shards."""
        return sum(self.balance(shard) for shard in self.settings()["clearing_account_ids"])

    def settings(self) -> dict[str, Any]:
        response = self.get("/settings")
        assert response.status_code == 200, response.text
        return response.json()

    def account(self, funds_fen: int = 0, *, person: bool = False, suffix: str = "") -> str:
        with self.database.transaction() as s:
            return open_account(s, self.tenant_id, funds_fen, person=person, suffix=suffix)

    def order(self, amount: str, *, mandate_id: str | None = None, splits: list[tuple[int, str]]
              | None = None, fee: str | None = None, number: str | None = None,
              virtual_account_id: str | None = None, expect: int = 201) -> dict[str, Any]:
        payer: dict[str, Any]
        if virtual_account_id:
            payer = {"method": "virtual_account", "virtual_account_id": virtual_account_id}
        else:
            payer = {"method": "mandate", "mandate_id": mandate_id or self.extra["mandate_id"]}
        body: dict[str, Any] = {
            "merchant_order_no": number or ref(), "amount": money(amount), "payer": payer,
            "splits": [{"sub_merchant_id": self.merchants[i], "amount": money(a)}
                       for i, a in (splits or [(0, amount)])]}
        if fee is not None:
            body["platform_fee"] = money(fee)
        response = self.post("/orders", body)
        assert response.status_code == expect, response.text
        return response.json()


def open_account(session: Any, tenant_id: str, funds_fen: int = 0, *, person: bool = False,
                 suffix: str = "") -> str:
    number = accounts.generate_account_number("person" if person else "enterprise",
                                              suffix=suffix) if suffix else None
    if person:
        account = accounts.create_account(session, tenant_id, kind="settlement", owner_type="person",
                                          owner_name="张伟", owner_id_number=generate_resident_id(_rng),
                                          account_number=number)
    else:
        account = accounts.create_account(session, tenant_id, kind="settlement",
                                          owner_type="enterprise", owner_name="苏州恒达餐饮管理有限公司",
                                          owner_uscc=uscc(), account_number=number)
    if funds_fen:
        accounts.deposit(session, tenant_id, account.id, funds_fen,
                         journal_ref=f"test:fund:{account.id}")
    return account.id


def setup_platform(app: Any, http: Any, *, merchants: int = 2, payer_funds_fen: int = 10_000_000,
                   fee_rules: list[dict[str, Any]] | None = None, cutoff: str | None = None,
                   environment: str = "sandbox", mandate: bool = True,
                   fee_account: bool = True) -> Platform:
    """A sandbox partner with a platform account, sub-merchants and a payer with a mandate."""
    pc = new_partner_client(app, http, environment=environment)
    database = app.state.database
    with database.transaction() as s:
        platform_account = open_account(s, pc.tenant_id)
        merchant_accounts = [open_account(s, pc.tenant_id) for _ in range(merchants)]
        payer_account = open_account(s, pc.tenant_id, payer_funds_fen, person=True)
    platform = Platform(app=app, pc=pc, tenant_id=pc.tenant_id,
                        platform_account=platform_account, merchant_accounts=merchant_accounts,
                        merchants=[], payer_account=payer_account)
    body: dict[str, Any] = {"fee_account_id": platform_account} if fee_account else {}
    if cutoff:
        body["cutoff"] = cutoff
    response = platform.patch("/settings", body)
    assert response.status_code == 200, response.text
    rules = fee_rules or [{"type": "percentage", "rate": "0.006"}, {"type": "fixed",
                                                                    "amount": money("0.50")}]
    for i, account in enumerate(merchant_accounts):
        response = platform.post("/sub-merchants", {
            "name": f"子商户{i}", "uscc": uscc(), "settlement_account_id": account,
            "fee_rule": rules[i % len(rules)]})
        assert response.status_code == 201, response.text
        platform.merchants.append(response.json()["id"])
    if mandate:
        response = platform.post("/mandates", {
            "reference": ref("MD"), "payer_name": "张伟", "payer_account_id": payer_account,
            "per_debit_limit": money("50000.00"), "monthly_limit": money("1000000.00"),
            "expires_on": (platform.today() + timedelta(days=365)).isoformat()})
        assert response.status_code == 201, response.text
        platform.extra["mandate_id"] = response.json()["id"]
    return platform


def next_cutoff(platform: Platform, hour: int = 0, minute: int = 0) -> datetime:
    """The next instant at HH:MM Shanghai time on the tenant's clock."""
    local = platform.now().astimezone(SHANGHAI)
    target = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= local:
        target += timedelta(days=1)
    return target


def clearing_invariants(platform: Platform) -> dict[str, int]:
    """Collected - refunded - settled == clearing balance; refunds never exceed collections;
    the bank's settlement advances are exactly what the payees owe it.

    `settled` is what the settlements moved out of the clearing account for the payees (their
    payouts and the advances they repaid to the bank) less what the bank advanced for them (a
    refund of an earlier date's order leaves from the advances account, not the clearing
    account: the bank pays it back to the payer on the payees' behalf)."""
    from products.collection.ledger import ADVANCES_PURPOSE
    from products.collection.models import (
        CollectionSettings,
        Order,
        PayeeBalance,
        Refund,
        Settlement,
    )

    tenant = platform.tenant_id

    def total(column: Any, *where: Any) -> int:
        return int(s.scalar(select(func.coalesce(func.sum(column), 0)).where(*where)) or 0)

    with platform.database.transaction() as s:
        settings = s.get(CollectionSettings, tenant)
        assert settings is not None
        collected = total(Order.amount_fen, Order.tenant_id == tenant, Order.status == "succeeded")
        refunded = total(Refund.amount_fen, Refund.tenant_id == tenant)
        advanced = total(Refund.advanced_fen, Refund.tenant_id == tenant)
        paid = total(Settlement.paid_fen, Settlement.tenant_id == tenant)
        repaid = total(Settlement.repaid_fen, Settlement.tenant_id == tenant)
        settled = paid + repaid - advanced
        clearing = sum(s.get(Account, shard).ledger_fen  # type: ignore[union-attr]
                       for shard in settings.clearing_account_ids)
        over = s.scalar(select(func.count()).select_from(Order).where(
            Order.tenant_id == tenant, Order.refunded_fen > Order.amount_fen)) or 0
        assert over == 0
        assert clearing == collected - refunded - settled, (clearing, collected, refunded, settled)
        # What the payees owe the bank: negative carries (advances a settlement could not
        # repay) and the advanced refunds of dates not settled yet.
        carried_debts = -total(PayeeBalance.carried_fen, PayeeBalance.tenant_id == tenant,
                               PayeeBalance.carried_fen < 0)
        unsettled = [Refund.tenant_id == tenant]
        if settings.settled_through is not None:
            unsettled.append(Refund.refund_date > settings.settled_through)
        owed = carried_debts + total(Refund.advanced_fen, *unsettled)
        advances = s.scalar(select(Account.ledger_fen).where(
            Account.tenant_id == tenant, Account.internal_purpose == ADVANCES_PURPOSE)) or 0
        assert -advances == owed == advanced - repaid, (advances, owed, advanced, repaid)
        assert accounts.audit(s, tenant) == []
        ledger_total = s.scalar(select(func.coalesce(func.sum(Account.ledger_fen), 0)).where(
            Account.tenant_id == tenant))
        assert ledger_total == 0
        return {"collected": collected, "refunded": refunded, "settled": settled,
                "clearing": clearing, "advances": advances}


def concurrent_refunds(p: Platform, order_id: str, amount: str, times: int = 32) -> list[int]:
    """Send `times` refunds of `amount` of one order at the same moment (a barrier, one thread
    each, each its own Idempotency-Key); returns their HTTP statuses."""
    results: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(times)
    batch = uuid.uuid4().hex[:8]

    def refund(i: int) -> None:
        barrier.wait()
        response = p.post(f"/orders/{order_id}/refunds", {"amount": money(amount)},
                          idempotency_key=f"concurrent-{batch}-{i}")
        with lock:
            results.append(response.status_code)

    threads = [threading.Thread(target=refund, args=(i,)) for i in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results
