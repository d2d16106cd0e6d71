"""Sandbox seed of the collection product: `seed_collection(session, tenant_id, fake)`.

What a new sandbox tenant finds (deterministic for the tenant's seed):

- settings: the platform's own account (receives fees; parent of virtual accounts);
- sub-merchants: a canteen operator (0.6 % fee, min 0.01) and a property company (fixed 0.50);
- a payer with a funded account (100,000.00), a debit mandate (per debit 20,000.00, monthly
  100,000.00) and a virtual account: the limits let a developer try every sandbox magic amount
  (4040.01-4040.05, `products.accounts.magic`) many times with the seeded mandate (a refused or
  pending-then-failed debit gives its amount back to the month's limit), and pay any seeded park
  bill by mandate, late fee included; the funds cover a debit up to the per-debit limit, so
  `insufficient_funds` comes from the magic amount, not the seed;
- canteen: an employer (funding account with 1,000,000.00) and five diners, each with an own
  account (2,000.00), this month's subsidy of 300.00 and 100.00 topped up;
- park: a park (reminders 7 and 3 days before, on the due date, 1/7/15 days after; late fee
  0.05 %/day capped at 10 %) with three tenants, each with a virtual account and three bills
  (rent, property fee, electricity) due in 10 to 20 days.

Registered with the sandbox's seeders at import (`sandbox.seed.SEEDER_MODULES`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from gateway.clock import SHANGHAI
from gateway.money import Money, MoneyIn, MoneyInNonNegative
from products.accounts import service as accounts
from products.collection import canteen, park, schemas, service, virtual

ACTOR = "sandbox:seed"

# The seeded payer's mandate and funds (see the module's docstring). The per-debit limit is
# above the largest seeded bill with its late fee at the cap (rent 12,000.00 + 10 %).
MANDATE_PER_DEBIT_FEN = 20_000_00
MANDATE_MONTHLY_FEN = 100_000_00
PAYER_FUNDS_FEN = 100_000_00


def _money(fen: int) -> MoneyIn:
    return MoneyIn(amount=Money.of(fen).amount, currency="CNY")


def _enterprise_account(session: Session, tenant_id: str, fake: Any, funds_fen: int = 0,
                        label: str | None = None) -> tuple[str, dict[str, str]]:
    company = fake.enterprise()
    account = accounts.create_account(session, tenant_id, kind="settlement",
                                      owner_type="enterprise", owner_name=company["name"],
                                      owner_uscc=company["uscc"], label=label)
    if funds_fen:
        accounts.deposit(session, tenant_id, account.id, funds_fen,
                         journal_ref=f"seed:collection:{account.id}", memo="sandbox seed")
    return account.id, company


def _person_account(session: Session, tenant_id: str, fake: Any, funds_fen: int) -> tuple[str, dict[str, str]]:
    person = fake.person()
    account = accounts.create_account(session, tenant_id, kind="settlement", owner_type="person",
                                      owner_name=person["name"],
                                      owner_id_number=person["id_number"],
                                      account_number=person["card_number"])
    if funds_fen:
        accounts.deposit(session, tenant_id, account.id, funds_fen,
                         journal_ref=f"seed:collection:{account.id}", memo="sandbox seed")
    return account.id, person


def seed_collection(session: Session, tenant_id: str, fake: Any) -> dict[str, Any]:
    """Create the collection product's sandbox data for a tenant; returns a summary of ids."""
    platform_account, _ = _enterprise_account(session, tenant_id, fake, label="Platform account")
    service.update_settings(session, tenant_id, ACTOR,
                            schemas.SettingsUpdate(fee_account_id=platform_account))
    canteen_account, canteen_company = _enterprise_account(session, tenant_id, fake)
    caterer = service.create_sub_merchant(session, tenant_id, ACTOR, schemas.SubMerchantCreate(
        name=canteen_company["name"], uscc=canteen_company["uscc"],
        settlement_account_id=canteen_account,
        fee_rule=schemas.FeeRuleIn(type="percentage", rate="0.006", minimum=MoneyInNonNegative(
            amount="0.01", currency="CNY"))))
    property_account, property_company = _enterprise_account(session, tenant_id, fake)
    property_co = service.create_sub_merchant(session, tenant_id, ACTOR, schemas.SubMerchantCreate(
        name=property_company["name"], uscc=property_company["uscc"],
        settlement_account_id=property_account,
        fee_rule=schemas.FeeRuleIn(type="fixed", amount=_money(50))))

    now = service.now_for(session, tenant_id)
    today = now.astimezone(SHANGHAI).date()
    payer_account, payer = _person_account(session, tenant_id, fake, PAYER_FUNDS_FEN)
    mandate = service.create_mandate(session, tenant_id, ACTOR, schemas.MandateCreate(
        reference=f"MANDATE-{fake.rng.randrange(10**8):08d}", payer_name=payer["name"],
        payer_account_id=payer_account, per_debit_limit=_money(MANDATE_PER_DEBIT_FEN),
        monthly_limit=_money(MANDATE_MONTHLY_FEN), expires_on=today + timedelta(days=365)))
    payer_va = virtual.create_virtual_account(session, tenant_id, ACTOR,
                                              schemas.VirtualAccountCreate(label=payer["name"]))

    funding, employer_company = _enterprise_account(session, tenant_id, fake, 1_000_000_00)
    employer = canteen.create_employer(session, tenant_id, ACTOR, schemas.EmployerCreate(
        name=employer_company["name"], uscc=employer_company["uscc"], funding_account_id=funding))
    diners = []
    for i in range(5):
        own, person = _person_account(session, tenant_id, fake, 2_000_00)
        diners.append(canteen.create_diner(session, tenant_id, ACTOR, employer.id,
                                           schemas.DinerCreate(employee_no=f"E{1001 + i}",
                                                               name=person["name"],
                                                               phone=person["phone"],
                                                               funding_account_id=own)))
    month = service.month_of(now)
    grant = canteen.create_grant(session, tenant_id, ACTOR, employer.id, schemas.GrantCreate(
        reference=f"GRANT-{month}", month=month,
        items=[schemas.GrantItem(diner_id=d.id, amount=_money(300_00)) for d in diners]))
    for diner in diners:
        canteen.top_up(session, tenant_id, ACTOR, diner.id, schemas.TopUpCreate(amount=_money(100_00)))

    the_park = park.create_park(session, tenant_id, ACTOR, schemas.ParkCreate(
        name=f"{employer_company['name'][:2]}科技园", sub_merchant_id=property_co.id))
    occupants, bills = [], []
    for i in range(3):
        company = fake.enterprise()
        occupant, account = park.create_park_tenant(
            session, tenant_id, ACTOR, the_park.id,
            schemas.ParkTenantCreate(name=company["name"], uscc=company["uscc"],
                                     unit=f"A{i + 1}-{301 + i}"))
        occupants.append({"id": occupant.id, "virtual_account_number": account.account_number})
        for item, amount, days in (("rent", 12_000_00, 10), ("property_fee", 1_800_00, 10),
                                   ("electricity", 356_40 + 100 * i, 20)):
            bill = park.create_bill(session, tenant_id, ACTOR, the_park.id, schemas.BillCreate(
                reference=f"{the_park.id[-6:]}-{i + 1}-{item}-{month}", park_tenant_id=occupant.id,
                item=item, period=month, amount=_money(amount),  # type: ignore[arg-type]
                due_date=today + timedelta(days=days)))
            bills.append(bill.id)
    return {
        "platform_account_id": platform_account,
        "sub_merchants": [caterer.id, property_co.id],
        "payer": {"account_id": payer_account, "mandate_id": mandate.id,
                  "virtual_account_id": payer_va.id},
        "canteen": {"employer_id": employer.id, "diner_ids": [d.id for d in diners],
                    "grant_id": grant.id},
        "park": {"park_id": the_park.id, "tenants": occupants, "bill_ids": bills},
    }


def _register() -> None:
    from sandbox.seed import register_seeder

    register_seeder("collection", seed_collection, order=300)


_register()
