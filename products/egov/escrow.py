"""Supervised escrow (资金监管): schemes, virtual sub-accounts, deposits, release instructions,
regulators' approvals, and the debit guard that makes an approved release the only way out.

Kinds and what their policy allows:

- tuition (预收费): a sub-account per student; released for classes consumed (tuition x classes /
  total); beyond the policy: more classes than were bought.
- presale_housing (预售资金): a sub-account per building or pre-sale permit; released by milestone;
  beyond the policy: a milestone's releases above its share of the supervised total.
- bid_deposit (投标保证金): a sub-account per bidder; the winner's deposit released after the award;
  beyond the policy: any release of a losing bidder's deposit.
- court_funds (案款): a sub-account per case; released to whom a court order names; beyond the
  policy: more than the case holds, or no court order.

Every instruction that moves money out (a release or a refund) needs the scheme's required
approvals (one, or two by two different regulator users: two different OAuth clients of the
regulator partner). A refund goes back only to an account that deposited the money (原路退回),
never more than it paid in; court funds move only by a court order. The one exception to the
approvals is the refund of a losing bidder after an award: the issue makes it automatic, due
within the policy's refund days, and the `egov.escrow_refunds` job pays it. `_authorised` is
that rule, checked by the regulator's decision and again by the debit guard.

The regulator is independent of the fund user (four-eyes): a scheme cannot name its own
partner as its regulator (`create_scheme`), and the scheme's own partner (its tenant's) cannot
decide on its instructions nor count as an approver, even when the bank recognised that
partner as a regulator (`_check_independent`, `_approvers`). Recognition itself is not refused
for a partner that runs schemes: it is per partner and kind, and may rightly cover other
tenants' schemes; independence is a property of each scheme, checked there.

A tuition withdrawal splits what is left among the depositors pro rata to what each paid in
(net of earlier refunds), to the fen by the largest remainder (`pro_rata`), so the consumed
classes are borne in proportion, whatever the accounts' ids.

Each sub-account is a virtual ledger account restricted by `ledger.ESCROW_RESTRICTION`, as is
the scheme's escrow account: the ledger refuses any debit of them, whichever product asks,
unless `guard` accepts the instruction presented, and it accepts only an approved instruction
for exactly that account, amount and payee. Likewise it refuses any credit of them but a
deposit made through `deposit` (`credit_guard`): money outside the deposits could never be
released or refunded, and would skip the deposit rules and the evidence.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any, get_args

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.clock import SHANGHAI, to_rfc3339
from gateway.db import Database, insert_unique, referenced
from gateway.errors import ValidationFailed
from gateway.events import publish
from gateway.ids import new_id
from gateway.jobs import for_each_tenant
from gateway.money import Money
from gateway.pagination import page
from gateway.pii import mask_name
from gateway.tenancy import (
    SANDBOX_REGULATOR_NAME,
    Partner,
    Principal,
    clock_for,
    get_tenant,
    regulator_serves,
)
from products.accounts.guards import register_debit_guard
from products.accounts.models import Account
from products.accounts.port import DebitContext
from products.egov import ledger
from products.egov.errors import (
    DecisionNotIndependent,
    DepositRefused,
    DuplicateApprover,
    DuplicateSchemeReference,
    DuplicateSubAccount,
    EscrowCreditRefused,
    EscrowDebitRefused,
    EscrowDepositNotFound,
    EscrowSchemeNotFound,
    EscrowSubAccountNotFound,
    InsufficientEscrowBalance,
    RegulatorNotIndependent,
    RegulatorNotRecognised,
    ReleaseExceedsPolicy,
    ReleaseInstructionNotFound,
    ReleaseNotAllowed,
    SchemeNotActive,
    SupervisionWithdrawn,
)
from products.egov.models import (
    EscrowDeposit,
    EscrowRegulator,
    EscrowScheme,
    EscrowSubAccount,
    ReleaseApproval,
    ReleaseInstruction,
)
from products.egov.schemas import (
    DecisionIn,
    DepositIn,
    InstructionIn,
    RegulatorIn,
    SchemeIn,
    SchemeKind,
    SubAccountIn,
)
from products.egov.states import (
    INSTRUCTION_OUTSTANDING,
    check_instruction,
    check_sub_account,
)

log = logging.getLogger("quanlian.egov")

PERSONAL_HOLDERS = frozenset({"tuition", "court_funds"})


# --- regulators (bank operations) ---------------------------------------------------------

def regulator_view(row: EscrowRegulator) -> dict[str, Any]:
    return {"partner_id": row.partner_id, "name": row.name, "kinds": list(row.kinds),
            "granted_by": row.granted_by, "created_at": to_rfc3339(row.created_at)}


def register_regulator(session: Session, *, body: RegulatorIn, actor: str, now: datetime,
                       tenant_id: str) -> tuple[EscrowRegulator, bool]:
    """Recognise a government partner as a fund regulator for some scheme kinds (or update it);
    also answers whether the registration is new."""
    if session.get(Partner, body.partner_id) is None:
        raise RegulatorNotRecognised(f"No partner {body.partner_id}.", code="partner_not_found")
    row = session.get(EscrowRegulator, body.partner_id, with_for_update=True, populate_existing=True)
    created = row is None
    if row is None:
        row = EscrowRegulator(partner_id=body.partner_id, created_at=now)
        session.add(row)
    row.name = body.name
    row.kinds = sorted(set(body.kinds))
    row.granted_by = actor
    session.flush()
    publish(session, tenant_id=tenant_id, type="egov_regulator.registered",
            resource_type="egov_regulator", resource_id=row.partner_id, data=regulator_view(row),
            actor=actor, at=now)
    return row, created


SCHEME_KINDS: tuple[str, ...] = get_args(SchemeKind)


def recognise_sandbox_regulator(session: Session, *, partner_id: str, tenant_id: str,
                                actor: str) -> tuple[EscrowRegulator, bool]:
    """The sandbox's own regulator of a sandbox tenant (`gateway.tenancy.ensure_sandbox_regulator`),
    recognised for every kind of scheme, as bank operations would recognise one; also whether the
    recognition is new. An existing recognition is returned as it stands. It serves that tenant
    only (`_recognised`). The event goes to the tenant, whose developer asked for it."""
    row = session.get(EscrowRegulator, partner_id, with_for_update=True, populate_existing=True)
    if row is not None:
        return row, False
    now = clock_for(session, tenant_id).now()
    row = EscrowRegulator(partner_id=partner_id, name=SANDBOX_REGULATOR_NAME,
                          kinds=list(SCHEME_KINDS), granted_by="sandbox", created_at=now)
    session.add(row)
    session.flush()
    publish(session, tenant_id=tenant_id, type="egov_regulator.registered",
            resource_type="egov_regulator", resource_id=row.partner_id, data=regulator_view(row),
            actor=actor, at=now)
    return row, True


def list_regulators(session: Session, *, limit: int,
                    cursor: str | None) -> tuple[list[EscrowRegulator], str | None]:
    return page(session, select(EscrowRegulator), EscrowRegulator.partner_id, limit=limit,
                cursor=cursor, newest_first=False)


# --- views --------------------------------------------------------------------------------

def policy_view(policy: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in policy.items() if k != "deposit_fen"}
    if "deposit_fen" in policy:
        out["deposit"] = Money.of(policy["deposit_fen"]).model_dump()
    return out


def _sub_balance(sub: EscrowSubAccount) -> int:
    return sub.deposited_fen - sub.released_fen - sub.refunded_fen


def scheme_view(session: Session, scheme: EscrowScheme) -> dict[str, Any]:
    total = session.scalar(select(func.coalesce(func.sum(
        EscrowSubAccount.deposited_fen - EscrowSubAccount.released_fen - EscrowSubAccount.refunded_fen),
        0)).where(EscrowSubAccount.scheme_id == scheme.id))
    return {"id": scheme.id, "kind": scheme.kind, "reference": scheme.reference, "name": scheme.name,
            "regulator_partner_id": scheme.regulator_partner_id, "holder_name": scheme.holder_name,
            "beneficiary_account_id": scheme.beneficiary_account_id,
            "escrow_account_id": scheme.escrow_account_id, "policy": policy_view(scheme.policy),
            "status": scheme.status, "balance": Money.of(int(total or 0)).model_dump(),
            "awarded_sub_account_id": scheme.awarded_sub_account_id,
            "awarded_at": to_rfc3339(scheme.awarded_at) if scheme.awarded_at else None,
            "created_at": to_rfc3339(scheme.created_at)}


def _terms_view(terms: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in terms.items() if not k.endswith("_fen")}
    for key, value in terms.items():
        if key.endswith("_fen"):
            out[key[:-4]] = Money.of(value).model_dump()
    return out


def sub_account_view(sub: EscrowSubAccount) -> dict[str, Any]:
    return {"id": sub.id, "scheme_id": sub.scheme_id, "reference": sub.reference,
            "holder_name": sub.holder_name_masked, "ledger_account_id": sub.ledger_account_id,
            "terms": _terms_view(sub.terms), "status": sub.status,
            "balance": Money.of(_sub_balance(sub)).model_dump(),
            "deposited": Money.of(sub.deposited_fen).model_dump(),
            "released": Money.of(sub.released_fen).model_dump(),
            "refunded": Money.of(sub.refunded_fen).model_dump(),
            "consumed_classes": sub.consumed_classes, "created_at": to_rfc3339(sub.created_at)}


def deposit_view(dep: EscrowDeposit) -> dict[str, Any]:
    return {"id": dep.id, "scheme_id": dep.scheme_id, "sub_account_id": dep.sub_account_id,
            "from_account_id": dep.from_account_id, "amount": Money.of(dep.amount_fen).model_dump(),
            "journal_entry_id": dep.journal_entry_id, "created_at": to_rfc3339(dep.created_at)}


def _approvals(session: Session, instruction_id: str) -> list[ReleaseApproval]:
    return list(session.scalars(select(ReleaseApproval)
                                .where(ReleaseApproval.instruction_id == instruction_id)
                                .order_by(ReleaseApproval.created_at, ReleaseApproval.approver_id)))


def instruction_view(session: Session, ins: ReleaseInstruction) -> dict[str, Any]:
    return {"id": ins.id, "scheme_id": ins.scheme_id, "sub_account_id": ins.sub_account_id,
            "kind": ins.kind, "amount": Money.of(ins.amount_fen).model_dump(),
            "destination_account_id": ins.destination_account_id, "basis": dict(ins.basis),
            "reason": ins.reason, "status": ins.status, "required_approvals": ins.required_approvals,
            "approved_by_policy": ins.approved_by_policy,
            "approvals": [{"approver_id": a.approver_id, "approver_name": a.approver_name,
                           "client_id": a.client_id,
                           "decision": a.decision, "comment": a.comment,
                           "created_at": to_rfc3339(a.created_at)}
                          for a in _approvals(session, ins.id)],
            "due_by": to_rfc3339(ins.due_by) if ins.due_by else None,
            "journal_entry_id": ins.journal_entry_id, "failure": ins.failure,
            "created_at": to_rfc3339(ins.created_at),
            "executed_at": to_rfc3339(ins.executed_at) if ins.executed_at else None}


def _publish(session: Session, *, tenant_id: str, type_: str, resource_type: str, resource_id: str,
             data: dict[str, Any], actor: str, at: datetime) -> None:
    publish(session, tenant_id=tenant_id, type=type_, resource_type=resource_type,
            resource_id=resource_id, data=data, actor=actor, at=at)


def _publish_instruction(session: Session, ins: ReleaseInstruction, type_: str, actor: str,
                         at: datetime) -> None:
    _publish(session, tenant_id=ins.tenant_id, type_=type_, resource_type="release_instruction",
             resource_id=ins.id, data=instruction_view(session, ins), actor=actor, at=at)


def _publish_sub(session: Session, sub: EscrowSubAccount, type_: str, actor: str, at: datetime) -> None:
    _publish(session, tenant_id=sub.tenant_id, type_=type_, resource_type="escrow_sub_account",
             resource_id=sub.id, data=sub_account_view(sub), actor=actor, at=at)


# --- schemes -----------------------------------------------------------------------------

def _policy(body: SchemeIn) -> dict[str, Any]:
    policy = body.policy
    data: dict[str, Any] = {"kind": policy.kind, "required_approvals": policy.required_approvals}
    if policy.kind == "tuition":
        data["max_classes"] = policy.max_classes
    elif policy.kind == "presale_housing":
        data["milestones"] = [m.model_dump() for m in policy.milestones]
    elif policy.kind == "bid_deposit":
        data["deposit_fen"] = policy.deposit.fen
        data["refund_days"] = policy.refund_days
    return data


def create_scheme(session: Session, *, tenant_id: str, environment: str, actor: str,
                  body: SchemeIn) -> EscrowScheme:
    """Open a scheme: its escrow account (restricted) and its release policy. Its regulator is
    a recognised one other than the tenant's own partner (four-eyes)."""
    kind = body.policy.kind
    if body.regulator_partner_id == _own_partner(session, tenant_id):
        raise RegulatorNotIndependent(
            f"Partner {body.regulator_partner_id} is your own: a scheme's regulator must be "
            "independent of whoever uses the money, so it cannot approve its own releases.",
            errors=[{"field": "body.regulator_partner_id",
                     "message": "must be another partner than the scheme's own"}])
    if not _recognised(session, body.regulator_partner_id, kind, tenant_id):
        raise RegulatorNotRecognised(f"Partner {body.regulator_partner_id} is not a recognised "
                                     f"regulator of {kind} schemes.")
    if kind != "court_funds" and body.beneficiary_account_id is None:
        raise ValidationFailed("beneficiary_account_id is required for this kind of scheme.",
                               code="beneficiary_required",
                               errors=[{"field": "body.beneficiary_account_id", "message": "required"}])
    if body.beneficiary_account_id is not None:
        ledger.check_payee(session, tenant_id, body.beneficiary_account_id, "beneficiary_account_id")
    taken = _scheme_with(session, tenant_id, body.reference)
    if taken is not None:
        raise _duplicate_scheme(taken, body.reference)
    now = clock_for(session, tenant_id).now()
    account = ledger.open_escrow_account(session, tenant_id, holder_name=body.holder_name,
                                         holder_uscc=body.holder_uscc,
                                         label=f"资金监管 {body.reference}", at=now)
    scheme = EscrowScheme(
        id=new_id("escrow"), tenant_id=tenant_id, environment=environment, kind=kind,
        reference=body.reference, name=body.name, regulator_partner_id=body.regulator_partner_id,
        holder_name=body.holder_name, beneficiary_account_id=body.beneficiary_account_id,
        escrow_account_id=account.id, policy=_policy(body), status="active", created_by=actor,
        created_at=now, updated_at=now)
    insert_unique(session, [scheme], lambda: _duplicate_scheme(
        _scheme_with(session, tenant_id, body.reference), body.reference))
    _publish(session, tenant_id=tenant_id, type_="escrow_scheme.created", resource_type="escrow_scheme",
             resource_id=scheme.id, data=scheme_view(session, scheme), actor=actor, at=now)
    return scheme


def _scheme_with(session: Session, tenant_id: str, reference: str) -> str | None:
    """The id of the tenant's scheme with this reference, if any."""
    return session.scalar(select(EscrowScheme.id).where(EscrowScheme.tenant_id == tenant_id,
                                                        EscrowScheme.reference == reference))


def _duplicate_scheme(taken: str | None, reference: str) -> DuplicateSchemeReference:
    """The 409 for a reference a scheme has (`taken`, where it could be read)."""
    who = f"Scheme {taken}" if taken else "A scheme"
    return DuplicateSchemeReference(f"{who} already has reference {reference!r}.",
                                    extra={"scheme_id": taken} if taken else None)


def get_scheme(session: Session, tenant_id: str, scheme_id: str, *, lock: bool = False) -> EscrowScheme:
    query = select(EscrowScheme).where(EscrowScheme.id == scheme_id, EscrowScheme.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    scheme = session.scalars(query).first()
    if scheme is None:
        raise EscrowSchemeNotFound(f"No escrow scheme {scheme_id}.")
    return scheme


def _recognised(session: Session, partner_id: str, kind: str, tenant_id: str) -> bool:
    """Whether the bank currently recognises the partner as a regulator of this kind of scheme
    for this tenant (operations may narrow or withdraw the recognition at any time; a sandbox
    regulator serves only the sandbox tenant it was made for)."""
    regulator = session.get(EscrowRegulator, partner_id)
    return (regulator is not None and kind in regulator.kinds
            and regulator_serves(session, partner_id, tenant_id))


def _own_partner(session: Session, tenant_id: str) -> str:
    """The partner a tenant (a scheme's operator) belongs to."""
    return get_tenant(session, tenant_id).partner_id


def supervised_scheme(session: Session, principal: Principal, scheme_id: str) -> EscrowScheme:
    """A scheme the calling regulator supervises, in its environment; 404 for any other."""
    scheme = session.scalars(select(EscrowScheme).where(
        EscrowScheme.id == scheme_id, EscrowScheme.regulator_partner_id == principal.partner_id,
        EscrowScheme.environment == principal.environment)).first()
    if scheme is None:
        raise EscrowSchemeNotFound(f"No escrow scheme {scheme_id} under your supervision.")
    return scheme


def list_schemes(session: Session, *, tenant_id: str | None = None, regulator: Principal | None = None,
                 limit: int, cursor: str | None,
                 kind: str | None = None) -> tuple[list[EscrowScheme], str | None]:
    query = select(EscrowScheme)
    if tenant_id is not None:
        query = query.where(EscrowScheme.tenant_id == tenant_id)
    if regulator is not None:
        query = query.where(EscrowScheme.regulator_partner_id == regulator.partner_id,
                            EscrowScheme.environment == regulator.environment)
    if kind:
        query = query.where(EscrowScheme.kind == kind)
    return page(session, query, EscrowScheme.id, limit=limit, cursor=cursor)


def _active(scheme: EscrowScheme) -> None:
    if scheme.status != "active":
        raise SchemeNotActive(f"Escrow scheme {scheme.id} is {scheme.status}.")


# --- sub-accounts -------------------------------------------------------------------------

def open_sub_account(session: Session, scheme: EscrowScheme, body: SubAccountIn, *,
                     actor: str) -> EscrowSubAccount:
    """Open a virtual sub-account (a student, a building, a bidder, a case) under the scheme.

    The caller holds the scheme's row lock (`get_scheme(lock=True)`, as the route does): it
    serializes the scheme's openings, so the look-up for the reference below sees one made
    at the same time, once committed, and answers its 409 `duplicate_sub_account`."""
    _active(scheme)
    terms: dict[str, Any] = {}
    errors: list[dict[str, str]] = []

    def forbid(*names: str) -> None:
        for name in names:
            if getattr(body, name) is not None:
                errors.append({"field": f"body.{name}", "message": f"not used by {scheme.kind} schemes"})

    if scheme.kind == "tuition":
        if body.total_classes is None:
            errors.append({"field": "body.total_classes", "message": "required for tuition"})
        elif body.total_classes > scheme.policy["max_classes"]:
            errors.append({"field": "body.total_classes",
                           "message": f"at most {scheme.policy['max_classes']} classes may be prepaid"})
        if body.tuition is None:
            errors.append({"field": "body.tuition", "message": "required for tuition"})
        forbid("supervised_total")
        if not errors:
            assert body.total_classes is not None and body.tuition is not None
            terms = {"total_classes": body.total_classes, "tuition_fen": body.tuition.fen}
    elif scheme.kind == "presale_housing":
        if body.supervised_total is None:
            errors.append({"field": "body.supervised_total", "message": "required for pre-sale housing"})
        forbid("total_classes", "tuition")
        if not errors:
            assert body.supervised_total is not None
            terms = {"supervised_total_fen": body.supervised_total.fen}
    else:
        forbid("total_classes", "tuition", "supervised_total")
        if scheme.kind == "bid_deposit" and scheme.awarded_at is not None:
            raise ReleaseNotAllowed("The tender is awarded: no new bidders.", code="tender_awarded")
    if errors:
        raise ValidationFailed(f"{len(errors)} field(s) are not valid.", errors=errors,
                               code="invalid_terms")
    taken = session.scalar(select(EscrowSubAccount.id).where(
        EscrowSubAccount.scheme_id == scheme.id, EscrowSubAccount.reference == body.reference))
    if taken is not None:
        raise DuplicateSubAccount(f"Sub-account {taken} already has reference {body.reference!r}.",
                                  extra={"sub_account_id": taken})
    now = clock_for(session, scheme.tenant_id).now()
    account = ledger.open_sub_account(session, scheme.tenant_id,
                                      parent_account_id=scheme.escrow_account_id,
                                      label=f"{scheme.reference}/{body.reference}", at=now)
    masked = mask_name(body.holder_name) if scheme.kind in PERSONAL_HOLDERS else body.holder_name
    sub = EscrowSubAccount(
        id=new_id("esub"), tenant_id=scheme.tenant_id, scheme_id=scheme.id, reference=body.reference,
        holder_name=body.holder_name, holder_name_masked=masked, ledger_account_id=account.id,
        terms=terms, status="open", deposited_fen=0, released_fen=0, refunded_fen=0,
        consumed_classes=0, created_by=actor, created_at=now, updated_at=now)
    session.add(sub)
    session.flush()
    _publish_sub(session, sub, "escrow_sub_account.opened", actor, now)
    return sub


def get_sub_account(session: Session, scheme: EscrowScheme, sub_id: str, *,
                    lock: bool = False) -> EscrowSubAccount:
    query = select(EscrowSubAccount).where(EscrowSubAccount.id == sub_id,
                                           EscrowSubAccount.scheme_id == scheme.id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    sub = session.scalars(query).first()
    if sub is None:
        raise EscrowSubAccountNotFound(f"No sub-account {sub_id} in scheme {scheme.id}.")
    return sub


def list_sub_accounts(session: Session, scheme: EscrowScheme, *, limit: int,
                      cursor: str | None) -> tuple[list[EscrowSubAccount], str | None]:
    query = select(EscrowSubAccount).where(EscrowSubAccount.scheme_id == scheme.id)
    return page(session, query, EscrowSubAccount.id, limit=limit, cursor=cursor, newest_first=False)


# --- deposits -----------------------------------------------------------------------------

def deposit(session: Session, scheme: EscrowScheme, body: DepositIn, sub_id: str, *,
            actor: str) -> EscrowDeposit:
    """Pay money into a sub-account from an account of the tenant."""
    _active(scheme)
    sub = get_sub_account(session, scheme, sub_id, lock=True)
    if sub.status != "open":
        raise DepositRefused(f"Sub-account {sub.id} is {sub.status}: it takes no more deposits.",
                             code="sub_account_not_open")
    amount = body.amount.fen
    if scheme.kind == "tuition" and sub.deposited_fen + amount > sub.terms["tuition_fen"]:
        raise DepositRefused("Deposits would exceed the tuition of the classes bought.",
                             code="deposit_exceeds_terms")
    if scheme.kind == "bid_deposit":
        if scheme.awarded_at is not None:
            raise DepositRefused("The tender is awarded: no more bid deposits.", code="tender_awarded")
        if sub.deposited_fen or amount != scheme.policy["deposit_fen"]:
            raise DepositRefused("A bidder pays the bid deposit once, in exactly the policy's amount.",
                                 code="deposit_exceeds_terms")
    source = ledger.get_account(session, scheme.tenant_id, body.from_account_id)
    if source.id in (sub.ledger_account_id, scheme.escrow_account_id):
        raise DepositRefused("A sub-account cannot fund itself.", code="same_account")
    now = clock_for(session, scheme.tenant_id).now()
    dep_id = new_id("edep")
    entry = ledger.deposit_into(session, scheme.tenant_id, from_account_id=source.id,
                                to_account_id=sub.ledger_account_id, amount_fen=amount,
                                deposit_id=dep_id, at=now)
    dep = EscrowDeposit(id=dep_id, tenant_id=scheme.tenant_id, scheme_id=scheme.id, sub_account_id=sub.id,
                        from_account_id=source.id, amount_fen=amount, journal_ref=entry.journal_ref,
                        journal_entry_id=entry.id, created_by=actor, created_at=now)
    session.add(dep)
    sub.deposited_fen += amount
    sub.updated_at = now
    session.flush()
    _publish(session, tenant_id=scheme.tenant_id, type_="escrow_deposit.received",
             resource_type="escrow_deposit", resource_id=dep.id, data=deposit_view(dep), actor=actor,
             at=now)
    return dep


def list_deposits(session: Session, sub: EscrowSubAccount, *, limit: int,
                  cursor: str | None) -> tuple[list[EscrowDeposit], str | None]:
    """A page of the deposits into a sub-account, newest first (as money movements list)."""
    query = select(EscrowDeposit).where(EscrowDeposit.sub_account_id == sub.id)
    return page(session, query, EscrowDeposit.id, limit=limit, cursor=cursor)


def get_deposit(session: Session, sub: EscrowSubAccount, deposit_id: str) -> EscrowDeposit:
    """A deposit into this sub-account (the caller found the sub-account in its scheme, so
    another tenant's or another sub-account's deposit is not found)."""
    dep = session.scalars(select(EscrowDeposit).where(
        EscrowDeposit.id == deposit_id, EscrowDeposit.sub_account_id == sub.id)).first()
    if dep is None:
        raise EscrowDepositNotFound(f"No deposit {deposit_id} in sub-account {sub.id}.")
    return dep


# --- release instructions ------------------------------------------------------------------

def _outstanding(session: Session, sub: EscrowSubAccount) -> list[ReleaseInstruction]:
    return list(session.scalars(select(ReleaseInstruction).where(
        ReleaseInstruction.sub_account_id == sub.id,
        ReleaseInstruction.status.in_(INSTRUCTION_OUTSTANDING))))


def _available(session: Session, sub: EscrowSubAccount) -> int:
    """What is not yet promised: the ledger balance minus outstanding instructions."""
    balance = ledger.balance_fen(session, sub.tenant_id, sub.ledger_account_id)
    return balance - sum(i.amount_fen for i in _outstanding(session, sub))


def _refundable(session: Session, sub: EscrowSubAccount) -> dict[str, int]:
    """Per depositing account: deposited minus refunded or promised back to it (原路退回)."""
    net: dict[str, int] = {}
    for account_id, amount in session.execute(
            select(EscrowDeposit.from_account_id, func.sum(EscrowDeposit.amount_fen))
            .where(EscrowDeposit.sub_account_id == sub.id).group_by(EscrowDeposit.from_account_id)):
        net[account_id] = int(amount)
    for account_id, amount in session.execute(
            select(ReleaseInstruction.destination_account_id, func.sum(ReleaseInstruction.amount_fen))
            .where(ReleaseInstruction.sub_account_id == sub.id, ReleaseInstruction.kind == "refund",
                   ReleaseInstruction.status.in_(INSTRUCTION_OUTSTANDING | {"executed"}))
            .group_by(ReleaseInstruction.destination_account_id)):
        if account_id in net:
            net[account_id] -= int(amount)
    return {k: v for k, v in net.items() if v > 0}


def pro_rata(total_fen: int, shares: dict[str, int]) -> dict[str, int]:
    """Split `total_fen` among accounts in proportion to their (positive) shares, to the fen by
    the largest-remainder method: each gets the floor of its exact part, and the fen left over
    go one each to the largest remainders (ties: the larger share, then the account id), so the
    parts add up to exactly `total_fen`. With `total_fen` at most the shares' sum, no part is
    above its share. Accounts whose part is 0 are left out."""
    weight = sum(shares.values())
    if total_fen <= 0 or weight <= 0:
        return {}
    parts = {account: total_fen * share // weight for account, share in shares.items()}
    left = total_fen - sum(parts.values())
    by_remainder = sorted(shares, key=lambda a: (-(total_fen * shares[a] % weight), -shares[a], a))
    for account in by_remainder[:left]:
        parts[account] += 1
    return {account: part for account, part in parts.items() if part > 0}


def _class_value(terms: dict[str, Any], classes: int) -> int:
    """Tuition of the first `classes` classes, rounded down: the last class takes the remainder,
    so the releases of all classes add up to exactly the tuition."""
    return terms["tuition_fen"] * classes // terms["total_classes"]


def _milestone_cap(terms: dict[str, Any], share_percent: str) -> int:
    cap = Decimal(terms["supervised_total_fen"]) * Decimal(share_percent) / Decimal(100)
    return int(cap.to_integral_value(rounding=ROUND_DOWN))


def _required(scheme: EscrowScheme) -> int:
    """Approvals every instruction of the scheme needs (award refunds aside, see `award`)."""
    return int(scheme.policy["required_approvals"])


@dataclass
class _Plan:
    amount_fen: int
    destination: str
    basis: dict[str, Any]
    required: int
    by_policy: bool


def _plan_release(session: Session, scheme: EscrowScheme, sub: EscrowSubAccount,
                  body: InstructionIn) -> _Plan:
    policy = scheme.policy
    required = _required(scheme)
    kind = scheme.kind
    if kind == "tuition":
        if body.classes is None:
            raise ValidationFailed("A tuition release names the classes consumed.", code="classes_required",
                                   errors=[{"field": "body.classes", "message": "required"}])
        total = sub.terms["total_classes"]
        pending = sum(int(i.basis.get("classes", 0)) for i in _outstanding(session, sub)
                      if i.kind == "release")
        done = sub.consumed_classes + pending
        if done + body.classes > total:
            raise ReleaseExceedsPolicy(
                f"Only {total - done} of the {total} classes bought are not yet consumed (or "
                f"awaiting approval); {body.classes} cannot be released.",
                extra={"classes_remaining": total - done})
        amount = _class_value(sub.terms, done + body.classes) - _class_value(sub.terms, done)
        if body.amount is not None and body.amount.fen != amount:
            raise ValidationFailed(f"{body.classes} class(es) are worth {Money.of(amount).amount}; "
                                   "omit amount or send exactly that.", code="amount_mismatch")
        assert scheme.beneficiary_account_id is not None
        return _Plan(amount, scheme.beneficiary_account_id,
                     {"classes": body.classes, "classes_after": done + body.classes}, required, False)
    if body.amount is None:
        raise ValidationFailed("amount is required.", code="amount_required",
                               errors=[{"field": "body.amount", "message": "required"}])
    amount = body.amount.fen
    if kind == "presale_housing":
        milestones = {m["code"]: m for m in policy["milestones"]}
        if body.milestone is None or body.milestone not in milestones:
            raise ValidationFailed("A pre-sale housing release names a milestone of the policy.",
                                   code="milestone_required",
                                   errors=[{"field": "body.milestone",
                                            "message": f"one of {', '.join(milestones)}"}])
        cap = _milestone_cap(sub.terms, milestones[body.milestone]["share_percent"])
        released = sum(i.amount_fen for i in session.scalars(select(ReleaseInstruction).where(
            ReleaseInstruction.sub_account_id == sub.id, ReleaseInstruction.kind == "release",
            ReleaseInstruction.status.in_(INSTRUCTION_OUTSTANDING | {"executed"})))
            if i.basis.get("milestone") == body.milestone)
        if released + amount > cap:
            raise ReleaseExceedsPolicy(
                f"Milestone {body.milestone} may release at most {Money.of(cap).amount} "
                f"({milestones[body.milestone]['share_percent']}% of the supervised total); "
                f"{Money.of(released).amount} is already released or awaiting approval.",
                extra={"milestone_cap": Money.of(cap).model_dump(),
                       "milestone_released": Money.of(released).model_dump()})
        assert scheme.beneficiary_account_id is not None
        return _Plan(amount, scheme.beneficiary_account_id, {"milestone": body.milestone}, required,
                     False)
    if kind == "bid_deposit":
        if scheme.awarded_sub_account_id is None:
            raise ReleaseNotAllowed("A bid deposit is released only after the award.",
                                    code="tender_not_awarded")
        if sub.id != scheme.awarded_sub_account_id:
            raise ReleaseExceedsPolicy("A losing bidder's deposit is only ever refunded to the "
                                       "bidder, never released.")
        assert scheme.beneficiary_account_id is not None
        return _Plan(amount, scheme.beneficiary_account_id, {"award": scheme.awarded_sub_account_id},
                     required, False)
    # court funds
    if body.court_order is None or body.destination_account_id is None:
        raise ValidationFailed("A court-funds release carries the court order and its payee.",
                               code="court_order_required",
                               errors=[{"field": "body.court_order", "message": "required"},
                                       {"field": "body.destination_account_id", "message": "required"}])
    ledger.check_payee(session, scheme.tenant_id, body.destination_account_id, "destination_account_id")
    return _Plan(amount, body.destination_account_id, _court_order_basis(session, scheme, body),
                 required, False)


def _court_order_basis(session: Session, scheme: EscrowScheme, body: InstructionIn) -> dict[str, Any]:
    """The court order an instruction rests on; one dated after today (the tenant's business
    date, Asia/Shanghai, on its clock: the sandbox test clock too) cannot have been issued yet."""
    assert body.court_order is not None
    issued_on = body.court_order.issued_on
    today = clock_for(session, scheme.tenant_id).now().astimezone(SHANGHAI).date()
    if issued_on > today:
        raise ValidationFailed(
            f"The court order is dated {issued_on.isoformat()}, after today ({today.isoformat()}): "
            "a court order cannot be issued in the future.", code="court_order_in_future",
            errors=[{"field": "body.court_order.issued_on",
                     "message": f"must not be after {today.isoformat()}"}])
    return {"court_order": {"number": body.court_order.number, "issued_on": issued_on.isoformat()}}


def _plan_refund(session: Session, scheme: EscrowScheme, sub: EscrowSubAccount,
                 body: InstructionIn) -> _Plan:
    if body.amount is None:
        raise ValidationFailed("amount is required.", code="amount_required",
                               errors=[{"field": "body.amount", "message": "required"}])
    refundable = _refundable(session, sub)
    destination = body.destination_account_id
    if destination is None and len(refundable) == 1:
        destination = next(iter(refundable))
    if destination is None or destination not in refundable:
        raise ReleaseExceedsPolicy("A refund goes back to an account that deposited the money "
                                   "(原路退回).", extra={"refundable_accounts": sorted(refundable)})
    if body.amount.fen > refundable[destination]:
        raise ReleaseExceedsPolicy(f"At most {Money.of(refundable[destination]).amount} can be "
                                   f"refunded to {destination}.")
    basis: dict[str, Any] = {"refund_to_depositor": destination}
    if scheme.kind == "tuition" and sub.status == "open":
        # The unconsumed classes a refund gives up (the student leaves): it ends the enrolment.
        basis["withdrawal"] = True
    if scheme.kind == "court_funds":
        if body.court_order is None:
            raise ValidationFailed("Court funds move only by a court order.", code="court_order_required",
                                   errors=[{"field": "body.court_order", "message": "required"}])
        basis.update(_court_order_basis(session, scheme, body))
    # Money leaving escrow needs the regulator, a refund too: the depositing account may be the
    # operator's own (a developer paying in buyers' money), and a refund must not sidestep the caps.
    return _Plan(body.amount.fen, destination, basis, _required(scheme), False)


def create_instruction(session: Session, scheme: EscrowScheme, body: InstructionIn, *,
                       actor: str) -> ReleaseInstruction:
    """Ask to move money out of a sub-account. Checked against the policy now; it waits for the
    regulator's approval(s) and executes with the last one."""
    _active(scheme)
    sub = get_sub_account(session, scheme, body.sub_account_id, lock=True)
    if sub.status not in ("open", "awarded", "lost"):
        raise ReleaseNotAllowed(f"Sub-account {sub.id} is {sub.status}.", code="sub_account_closed")
    plan = _plan_release(session, scheme, sub, body) if body.kind == "release" \
        else _plan_refund(session, scheme, sub, body)
    available = _available(session, sub)
    if plan.amount_fen > available:
        raise InsufficientEscrowBalance(
            f"Sub-account {sub.id} has {Money.of(max(available, 0)).amount} not yet promised to "
            f"other instructions; {Money.of(plan.amount_fen).amount} was asked.",
            extra={"available": Money.of(max(available, 0)).model_dump()})
    now = clock_for(session, scheme.tenant_id).now()
    return _new_instruction(session, scheme, sub, plan, kind=body.kind, reason=body.reason, actor=actor,
                            now=now, execute_now=True)


def _new_instruction(session: Session, scheme: EscrowScheme, sub: EscrowSubAccount, plan: _Plan, *,
                     kind: str, reason: str, actor: str, now: datetime, execute_now: bool,
                     due_by: datetime | None = None) -> ReleaseInstruction:
    ins_id = new_id("erel")
    ins = ReleaseInstruction(
        id=ins_id, tenant_id=scheme.tenant_id, scheme_id=scheme.id, sub_account_id=sub.id, kind=kind,
        amount_fen=plan.amount_fen, destination_account_id=plan.destination, basis=plan.basis,
        reason=reason, status="pending_approval", required_approvals=plan.required,
        approved_by_policy=plan.by_policy, due_by=due_by, journal_ref=f"egov:release:{ins_id}",
        created_by=actor, created_at=now)
    session.add(ins)
    session.flush()
    _publish_instruction(session, ins, "release_instruction.created", actor, now)
    if plan.by_policy:
        check_instruction(ins.status, "approved", action="approved")
        ins.status = "approved"
        ins.decided_at = now
        session.flush()
        _publish_instruction(session, ins, "release_instruction.approved", "policy", now)
        if execute_now:
            _execute(session, scheme, sub, ins, actor="policy", now=now)
    return ins


def _execute(session: Session, scheme: EscrowScheme, sub: EscrowSubAccount, ins: ReleaseInstruction,
             *, actor: str, now: datetime) -> None:
    """Make the ledger transfer of an approved instruction (the guard checks it once more)."""
    try:
        entry = ledger.release_from(session, ins.tenant_id, from_account_id=sub.ledger_account_id,
                                    to_account_id=ins.destination_account_id, amount_fen=ins.amount_fen,
                                    instruction_id=ins.id, journal_ref=ins.journal_ref, at=now)
    except ledger.PaymentRefused as exc:
        check_instruction(ins.status, "failed", action="failed")
        ins.status = "failed"
        ins.failure = f"{exc.code}: {exc.detail or exc.title}"[:200]
        session.flush()
        _publish_instruction(session, ins, "release_instruction.failed", actor, now)
        return
    check_instruction(ins.status, "executed", action="executed")
    ins.status = "executed"
    ins.journal_entry_id = entry.id
    ins.executed_at = entry.created_at
    if ins.kind == "release":
        sub.released_fen += ins.amount_fen
        if "classes" in ins.basis:
            sub.consumed_classes += int(ins.basis["classes"])
    else:
        sub.refunded_fen += ins.amount_fen
    sub.updated_at = now
    session.flush()
    _publish_instruction(session, ins, "release_instruction.executed", actor, now)
    _settle_sub_account(session, scheme, sub, ins, actor=actor, now=now)


def _settle_sub_account(session: Session, scheme: EscrowScheme, sub: EscrowSubAccount,
                        ins: ReleaseInstruction, *, actor: str, now: datetime) -> None:
    """Move the sub-account on when an executed instruction finished it."""
    target: str | None = None
    empty = _sub_balance(sub) == 0 and not _outstanding(session, sub)
    if scheme.kind == "tuition":
        if ins.basis.get("withdrawal") and empty and sub.status == "open":
            target = "withdrawn"
        elif sub.consumed_classes >= sub.terms["total_classes"] and empty and sub.status == "open":
            target = "completed"
    elif scheme.kind == "bid_deposit" and empty:
        if sub.status == "lost" or (sub.status == "awarded" and ins.kind == "refund"):
            target = "refunded"
        elif sub.status == "awarded":
            target = "completed"
    if target is not None:
        check_sub_account(sub.status, target, action=target)
        sub.status = target
        session.flush()
        _publish_sub(session, sub, f"escrow_sub_account.{target}", actor, now)


def get_instruction(session: Session, scheme: EscrowScheme, instruction_id: str, *,
                    lock: bool = False) -> ReleaseInstruction:
    query = select(ReleaseInstruction).where(ReleaseInstruction.id == instruction_id,
                                             ReleaseInstruction.scheme_id == scheme.id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    ins = session.scalars(query).first()
    if ins is None:
        raise ReleaseInstructionNotFound(f"No release instruction {instruction_id} in scheme {scheme.id}.")
    return ins


def list_instructions(session: Session, *, scheme: EscrowScheme | None = None,
                      regulator: Principal | None = None, status: str | None = None, limit: int,
                      cursor: str | None) -> tuple[list[ReleaseInstruction], str | None]:
    query = select(ReleaseInstruction)
    if scheme is not None:
        query = query.where(ReleaseInstruction.scheme_id == scheme.id)
    if regulator is not None:
        query = query.join(EscrowScheme, EscrowScheme.id == ReleaseInstruction.scheme_id).where(
            EscrowScheme.regulator_partner_id == regulator.partner_id,
            EscrowScheme.environment == regulator.environment)
    if status:
        query = query.where(ReleaseInstruction.status == status)
    return page(session, query, ReleaseInstruction.id, limit=limit, cursor=cursor)


def supervised_instruction(session: Session, principal: Principal,
                           instruction_id: str) -> tuple[EscrowScheme, ReleaseInstruction]:
    ins = session.scalars(select(ReleaseInstruction).where(ReleaseInstruction.id == instruction_id)).first()
    if ins is None:
        raise ReleaseInstructionNotFound(f"No release instruction {instruction_id} under your supervision.")
    try:
        scheme = supervised_scheme(session, principal, ins.scheme_id)
    except EscrowSchemeNotFound:
        raise ReleaseInstructionNotFound(
            f"No release instruction {instruction_id} under your supervision.") from None
    return scheme, ins


def cancel_instruction(session: Session, scheme: EscrowScheme, instruction_id: str, *,
                       actor: str) -> ReleaseInstruction:
    ins = get_instruction(session, scheme, instruction_id, lock=True)
    check_instruction(ins.status, "cancelled", action="cancelled")
    now = clock_for(session, scheme.tenant_id).now()
    ins.status = "cancelled"
    ins.decided_at = now
    session.flush()
    _publish_instruction(session, ins, "release_instruction.cancelled", actor, now)
    return ins


def _approvers(session: Session, ins: ReleaseInstruction) -> int:
    """Distinct regulator users (OAuth clients) that approved: the approver_id a caller sends is
    only a label, so it cannot make one user count twice; and an approval by the scheme's own
    partner never counts (four-eyes; `decide` refuses one, this holds for the debit guard too)."""
    return int(session.scalar(select(func.count(func.distinct(ReleaseApproval.client_id))).where(
        ReleaseApproval.instruction_id == ins.id, ReleaseApproval.decision == "approve",
        ReleaseApproval.regulator_partner_id != _own_partner(session, ins.tenant_id))) or 0)


def _authorised(session: Session, ins: ReleaseInstruction) -> bool:
    """Whether money may leave escrow for this instruction: the scheme's approvals by distinct
    regulator users, or a losing bidder's automatic refund after an award (nothing else)."""
    if ins.approved_by_policy:
        return ins.kind == "refund" and "award" in ins.basis and "refund_to_depositor" in ins.basis
    return ins.required_approvals >= 1 and _approvers(session, ins) >= ins.required_approvals


def _check_first_decision(session: Session, principal: Principal, ins: ReleaseInstruction,
                          body: DecisionIn) -> None:
    """One decision per regulator user, the user being the authenticated client (caller under
    the instruction's lock, so two concurrent decisions of one client cannot both pass)."""
    mine = session.scalars(select(ReleaseApproval).where(
        ReleaseApproval.instruction_id == ins.id, ReleaseApproval.client_id == principal.client_id)).first()
    if mine is not None:
        raise DuplicateApprover(
            f"Your credential (client {principal.client_id}) already decided on {ins.id} as "
            f"{mine.approver_id!r}; a second approval must come from another regulator user, "
            "signed in with their own client credential.", extra={"client_id": principal.client_id})
    if session.get(ReleaseApproval, (ins.id, body.approver_id)) is not None:
        raise DuplicateApprover(f"approver_id {body.approver_id!r} is already used on {ins.id}; "
                                "each regulator user signs with their own label.",
                                extra={"approver_id": body.approver_id})


def _check_independent(session: Session, principal: Principal, scheme: EscrowScheme) -> None:
    """The scheme's own partner never decides on its instructions, even recognised as a
    regulator and named by the scheme (one opened before independence was checked)."""
    if principal.partner_id == _own_partner(session, scheme.tenant_id):
        raise DecisionNotIndependent(
            f"Scheme {scheme.id} is your own partner's: a regulator independent of it must "
            "decide on its instructions.", extra={"scheme_id": scheme.id})


def _check_still_recognised(session: Session, principal: Principal, scheme: EscrowScheme) -> None:
    if not _recognised(session, principal.partner_id, scheme.kind, scheme.tenant_id):
        raise SupervisionWithdrawn(f"The bank no longer recognises you as a regulator of "
                                   f"{scheme.kind} schemes: you cannot decide on {scheme.id}'s "
                                   "instructions.", extra={"scheme_id": scheme.id, "kind": scheme.kind})


def decide(session: Session, principal: Principal, instruction_id: str,
           body: DecisionIn) -> ReleaseInstruction:
    """A regulator user's approval or rejection; the last approval needed executes the release."""
    scheme, ins = supervised_instruction(session, principal, instruction_id)
    _check_independent(session, principal, scheme)
    _check_still_recognised(session, principal, scheme)
    ins = get_instruction(session, scheme, instruction_id, lock=True)
    if ins.status != "pending_approval":
        check_instruction(ins.status, "approved", action="decided")
    _check_first_decision(session, principal, ins, body)
    now = clock_for(session, scheme.tenant_id).now()
    actor = f"{principal.client_id}/{body.approver_id}"[:80]
    session.add(ReleaseApproval(instruction_id=ins.id, approver_id=body.approver_id,
                                tenant_id=ins.tenant_id, regulator_partner_id=principal.partner_id,
                                client_id=principal.client_id, approver_name=body.approver_name,
                                decision=body.decision, comment=body.comment, created_at=now))
    session.flush()
    _publish_instruction(session, ins, "release_instruction.decision_recorded", actor, now)
    if body.decision == "reject":
        check_instruction(ins.status, "rejected", action="rejected")
        ins.status = "rejected"
        ins.decided_at = now
        session.flush()
        _publish_instruction(session, ins, "release_instruction.rejected", actor, now)
        return ins
    if not _authorised(session, ins):
        return ins
    sub = session.scalars(select(EscrowSubAccount).where(EscrowSubAccount.id == ins.sub_account_id)
                          .with_for_update().execution_options(populate_existing=True)).one()
    check_instruction(ins.status, "approved", action="approved")
    ins.status = "approved"
    ins.decided_at = now
    session.flush()
    _publish_instruction(session, ins, "release_instruction.approved", actor, now)
    _execute(session, scheme, sub, ins, actor=actor, now=now)
    return ins


# --- bid award and automatic refunds -------------------------------------------------------

def award(session: Session, scheme: EscrowScheme, winner_id: str, *, actor: str) -> EscrowScheme:
    """Award a tender: the winner's deposit stays; every other bidder's refund is scheduled,
    due within the policy's refund days (the `egov.escrow_refunds` job pays them)."""
    if scheme.kind != "bid_deposit":
        raise ReleaseNotAllowed("Only a bid-deposit scheme is awarded.", code="not_a_tender")
    _active(scheme)
    if scheme.awarded_at is not None:
        raise ReleaseNotAllowed(f"The tender was already awarded to {scheme.awarded_sub_account_id}.",
                                code="tender_awarded")
    winner = get_sub_account(session, scheme, winner_id, lock=True)
    if winner.status != "open" or winner.deposited_fen == 0:
        raise ReleaseNotAllowed("The winner must be a bidder that paid its deposit.",
                                code="winner_not_eligible")
    now = clock_for(session, scheme.tenant_id).now()
    due_by = now + timedelta(days=int(scheme.policy["refund_days"]))
    scheme.awarded_sub_account_id = winner.id
    scheme.awarded_at = now
    scheme.updated_at = now
    check_sub_account(winner.status, "awarded", action="awarded")
    winner.status = "awarded"
    session.flush()
    _publish(session, tenant_id=scheme.tenant_id, type_="escrow_scheme.awarded",
             resource_type="escrow_scheme", resource_id=scheme.id, data=scheme_view(session, scheme),
             actor=actor, at=now)
    _publish_sub(session, winner, "escrow_sub_account.awarded", actor, now)
    losers = list(session.scalars(select(EscrowSubAccount).where(
        EscrowSubAccount.scheme_id == scheme.id, EscrowSubAccount.id != winner.id,
        EscrowSubAccount.status == "open").order_by(EscrowSubAccount.id)
        .with_for_update().execution_options(populate_existing=True)))
    for sub in losers:
        check_sub_account(sub.status, "lost", action="lost")
        sub.status = "lost"
        session.flush()
        _publish_sub(session, sub, "escrow_sub_account.lost", actor, now)
        for destination, amount in sorted(_refundable(session, sub).items()):
            # The one instruction approved by the policy itself: the issue makes a losing bid's
            # refund automatic, to the bidder that paid it (`_authorised` knows it by its basis).
            _new_instruction(session, scheme, sub,
                             _Plan(amount, destination, {"refund_to_depositor": destination,
                                                         "award": winner.id}, 0, True),
                             kind="refund", reason="未中标退还投标保证金 (losing bid refunded)",
                             actor=actor, now=now, execute_now=False, due_by=due_by)
    return scheme


def withdraw(session: Session, scheme: EscrowScheme, sub_id: str, *, actor: str,
             reason: str) -> tuple[EscrowSubAccount, list[ReleaseInstruction]]:
    """A student leaves: refunds of the unconsumed tuition to whoever paid it are instructed; they
    wait for the regulator like any other money leaving escrow, and the sub-account is withdrawn
    when the last one executes (at once when nothing is left to refund). What is left is split
    among the depositing accounts pro rata to what each paid in, net of earlier refunds
    (`pro_rata`: to the fen, largest remainder), so every payer bears the consumed classes in
    proportion. Returns the sub-account and the refund instructions made (one per depositing
    account with a part, in account-id order; none when nothing is left)."""
    if scheme.kind != "tuition":
        raise ReleaseNotAllowed("Only a tuition sub-account is withdrawn from.", code="not_tuition")
    sub = get_sub_account(session, scheme, sub_id, lock=True)
    check_sub_account(sub.status, "withdrawn", action="withdrawn")
    if _outstanding(session, sub):
        raise ReleaseNotAllowed("Instructions on this sub-account await approval: let the regulator "
                                "decide or cancel them first.", code="instructions_outstanding")
    now = clock_for(session, scheme.tenant_id).now()
    refundable = _refundable(session, sub)
    # Never more back than was paid in (the balance is at most that: money enters by deposit only).
    left = min(_sub_balance(sub), sum(refundable.values()))
    refunds = sorted(pro_rata(left, refundable).items())
    made: list[ReleaseInstruction] = []
    for destination, part in refunds:
        plan = _Plan(part, destination, {"refund_to_depositor": destination, "withdrawal": True},
                     _required(scheme), False)
        made.append(_new_instruction(session, scheme, sub, plan, kind="refund",
                                     reason=reason or "学员退学退费 (withdrawal refund)",
                                     actor=actor, now=now, execute_now=True))
    if sub.status == "open":  # nothing to refund: settle it now
        if _sub_balance(sub) == 0:
            check_sub_account(sub.status, "withdrawn", action="withdrawn")
            sub.status = "withdrawn"
            session.flush()
            _publish_sub(session, sub, "escrow_sub_account.withdrawn", actor, now)
    return sub, made


def run_due_refunds(database: Database, batch: int = 100) -> int:
    """Job: pay policy-approved refunds (losing bids) that wait for execution, tenant by tenant
    (up to `batch` a tenant a run; a tenant whose run fails is logged and left to the next run,
    the others go on)."""
    def run(tenant_id: str) -> int:
        with database.transaction() as session:
            ids = list(session.scalars(select(ReleaseInstruction.id).where(
                ReleaseInstruction.tenant_id == tenant_id,
                ReleaseInstruction.status == "approved", ReleaseInstruction.due_by.is_not(None))
                .order_by(ReleaseInstruction.due_by).limit(batch)))
        done = 0
        for ins_id in ids:
            with database.transaction() as session:
                ins = session.scalars(select(ReleaseInstruction).where(ReleaseInstruction.id == ins_id)
                                      .with_for_update().execution_options(populate_existing=True)).first()
                if ins is None or ins.status != "approved":
                    continue
                scheme = referenced(session, EscrowScheme, ins.scheme_id)
                sub = session.scalars(select(EscrowSubAccount).where(EscrowSubAccount.id == ins.sub_account_id)
                                      .with_for_update().execution_options(populate_existing=True)).one()
                _execute(session, scheme, sub, ins, actor="system",
                         now=clock_for(session, ins.tenant_id).now())
                done += 1
        return done

    return for_each_tenant(database, select(ReleaseInstruction.tenant_id).where(
        ReleaseInstruction.status == "approved", ReleaseInstruction.due_by.is_not(None)), run,
        "escrow refunds", logger=log)


# --- the debit guard -------------------------------------------------------------------------

def guard(session: Session, account: Account, context: DebitContext) -> None:
    """Accept a debit of an escrow account only for an approved instruction of that very
    sub-account, amount and payee (called by the ledger under the account's lock)."""
    auth = context.authorization
    ins_id = auth.get("egov_release_instruction") if isinstance(auth, dict) else None
    refused = EscrowDebitRefused(
        f"Account {account.id} holds supervised escrow funds: they leave only through a release "
        "instruction the regulator approved.", extra={"account_id": account.id})
    if not isinstance(ins_id, str):
        raise refused
    ins = session.scalars(select(ReleaseInstruction).where(
        ReleaseInstruction.id == ins_id, ReleaseInstruction.tenant_id == context.tenant_id)).first()
    if ins is None or ins.status != "approved" or not _authorised(session, ins):
        raise refused
    sub_account_id = session.scalar(select(EscrowSubAccount.ledger_account_id)
                                    .where(EscrowSubAccount.id == ins.sub_account_id))
    if (sub_account_id != account.id or context.operation != "transfer"
            or context.amount_fen != ins.amount_fen
            or context.counterparty_account_id != ins.destination_account_id
            or context.reference_type != ledger.REFERENCE_RELEASE or context.reference_id != ins.id):
        raise refused


def credit_guard(session: Session, account: Account, context: DebitContext) -> None:
    """Accept a credit of an escrow account only as a deposit made through the scheme
    (`deposit`, which checks the terms and records the deposit and its evidence). Money paid in
    any other way (a transfer, a payout, a collection or payroll credit) would sit outside the
    scheme's books: never releasable nor refundable."""
    auth = context.authorization
    deposit_id = auth.get("egov_escrow_deposit") if isinstance(auth, dict) else None
    if (context.operation == "transfer" and context.reference_type == ledger.REFERENCE_DEPOSIT
            and isinstance(deposit_id, str) and deposit_id == context.reference_id):
        return
    sub = session.execute(select(EscrowSubAccount.scheme_id, EscrowSubAccount.id).where(
        EscrowSubAccount.ledger_account_id == account.id)).first()
    if sub is None:  # the scheme's own escrow account: deposits go to one of its sub-accounts
        scheme_id = session.scalar(select(EscrowScheme.id).where(
            EscrowScheme.escrow_account_id == account.id))
        route = f"POST /v1/egov/escrow-schemes/{scheme_id}/sub-accounts/{{sub_account_id}}/deposits"
    else:
        route = f"POST /v1/egov/escrow-schemes/{sub.scheme_id}/sub-accounts/{sub.id}/deposits"
    raise EscrowCreditRefused(
        f"Account {account.id} holds supervised escrow funds: money enters it only as a deposit "
        f"through the scheme, {route} (the deposit is checked against the scheme's terms and "
        "recorded as evidence).", extra={"account_id": account.id, "deposit_route": route})


def install() -> None:
    """Register the debit and credit guards and the bundle resolver (idempotent; app setup
    calls it)."""
    from gateway.evidence.service import register_bundle_resolver

    register_debit_guard(ledger.ESCROW_RESTRICTION, guard, credit_guard=credit_guard)
    register_bundle_resolver(scheme_resources)


def scheme_resources(session: Session, tenant_id: str, resource_id: str) -> list[str]:
    """Evidence bundles of a scheme cover its sub-accounts, deposits and instructions."""
    if not resource_id.startswith("escrow_"):
        return []
    scheme = session.scalars(select(EscrowScheme.id).where(EscrowScheme.id == resource_id,
                                                           EscrowScheme.tenant_id == tenant_id)).first()
    if scheme is None:
        return []
    out: list[str] = []
    for model in (EscrowSubAccount, EscrowDeposit, ReleaseInstruction):
        out += list(session.scalars(select(model.id).where(model.scheme_id == resource_id)))
    return out
