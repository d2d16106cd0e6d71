"""Properties over random issue / split / transfer / finance / mature sequences (service layer):

- the leaves of every live certificate tree sum exactly to its root's face;
- every split or transferred node's children sum exactly to it (nothing is spent twice);
- a facility's outstanding is the face of the unpaid leaves, and never exceeds its limit;
- the ledger balances (every entry sums to zero; balances match postings).
"""

from __future__ import annotations

import random
import uuid
from datetime import timedelta

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from gateway.errors import Problem
from gateway.identifiers import generate_uscc
from gateway.tenancy import advance_clock, clock_for, create_partner, ensure_tenant
from products.accounts import service as accounts
from products.chain_credit import service
from products.chain_credit.models import CreditFacility, PayablesCertificate
from products.chain_credit.states import UNPAID_CERTIFICATE_STATES

LIMIT_FEN = 50_000_00

_issue = st.tuples(st.just("issue"), st.integers(1, 30_000_00), st.integers(1, 40))
_accept = st.tuples(st.just("accept"), st.integers(0, 10_000), st.integers(0, 5).map(bool))
_split = st.tuples(st.just("split"), st.integers(0, 10_000), st.integers(2, 4))
_transfer = st.tuples(st.just("transfer"), st.integers(0, 10_000), st.integers(0, 10_000))
_finance = st.tuples(st.just("finance"), st.integers(0, 10_000), st.booleans())
_mature = st.tuples(st.just("mature"), st.integers(1, 30), st.integers(0, 2).map(lambda x: x == 0))



def _setup(database, rng):
    with database.transaction() as session:
        partner = create_partner(session, name="prop")
        tenant_id = ensure_tenant(session, partner.id, "sandbox").id
        members = {}

        def member(role, upstream, fund=0):
            uscc = generate_uscc(rng)
            name = f"{role}-{uscc[-6:]}有限公司"
            account = accounts.create_account(session, tenant_id, kind="settlement", owner_type="enterprise",
                                              owner_name=name, owner_uscc=uscc)
            if fund:
                accounts.deposit(session, tenant_id, account.id, fund, journal_ref=f"fund:{account.id}")
            m = service.create_member(session, tenant_id, name=name, uscc=uscc,
                                      settlement_account_id=account.id, role=role,
                                      upstream_member_id=upstream, tier=None, actor="test")
            members[m.id] = m.tier
            return m.id

        core = member("core_enterprise", None, fund=rng.choice([1_000_00, 200_000_00]))
        t1 = [member("supplier", core) for _ in range(2)]
        t2 = [member("supplier", t1[0]) for _ in range(2)]
        member("supplier", t2[0])
        service.grant_facility(session, tenant_id=tenant_id, core_enterprise_id=core, limit_fen=LIMIT_FEN,
                               expires_on=clock_for(session, tenant_id).today() + timedelta(days=400),
                               guarantee_circle="GC-PROP", discount_rate="0.05", actor="test")
    return tenant_id, core, t1, sorted(m for m, tier in members.items() if tier > 0)


def _nodes(session, tenant_id):
    return list(session.scalars(select(PayablesCertificate).where(PayablesCertificate.tenant_id == tenant_id)
                                .order_by(PayablesCertificate.id)))


def _check_invariants(database, tenant_id):
    with database.transaction() as session:
        nodes = _nodes(session, tenant_id)
        children = {}
        for n in nodes:
            children.setdefault(n.parent_id, []).append(n)
        unpaid = 0
        for n in nodes:
            kids = children.get(n.id, [])
            if n.status in ("split", "transferred"):
                assert kids and sum(k.face_fen for k in kids) == n.face_fen, n.id
            else:
                assert not kids, n.id
            if n.parent_id is None and n.status not in ("rejected", "cancelled"):
                leaves = [x for x in nodes if x.root_id == n.id and not children.get(x.id)]
                assert sum(x.face_fen for x in leaves) == n.face_fen, n.id
            if not kids and n.status in UNPAID_CERTIFICATE_STATES:
                unpaid += n.face_fen
        facility = session.scalars(select(CreditFacility).where(CreditFacility.tenant_id == tenant_id)).one()
        assert facility.outstanding_fen == unpaid
        assert 0 <= facility.outstanding_fen <= facility.limit_fen
        assert accounts.audit(session, tenant_id) == []


def _pick(session, tenant_id, index, statuses):
    candidates = [n for n in _nodes(session, tenant_id) if n.status in statuses]
    return candidates[index % len(candidates)] if candidates else None


def _run(database, tenant_id, core, t1, members, op):
    kind, a, b = op
    with database.transaction() as session:
        if kind == "issue":
            service.issue_certificate(session, tenant_id, acting_member_id=core, to_member_id=t1[b % 2],
                                      amount_fen=a, maturity_date=clock_for(session, tenant_id).today()
                                      + timedelta(days=b), invoice_numbers=[f"INV-{uuid.uuid4().hex}"], contract_number="C-1")
        elif kind == "accept":
            node = _pick(session, tenant_id, a, {"issued"})
            if node is not None:
                fn = service.accept_certificate if b else service.reject_certificate
                fn(session, tenant_id, node.id, acting_member_id=node.holder_member_id)
        elif kind == "split":
            node = _pick(session, tenant_id, a, {"accepted"})
            if node is not None:
                rng = random.Random(a)
                cuts = sorted(rng.sample(range(1, node.face_fen), min(b - 1, node.face_fen - 1))) \
                    if node.face_fen > 1 else []
                parts = [y - x for x, y in zip([0] + cuts, cuts + [node.face_fen], strict=True)]
                service.split_certificate(session, tenant_id, node.id, acting_member_id=node.holder_member_id,
                                          parts_fen=parts)
        elif kind == "transfer":
            node = _pick(session, tenant_id, a, {"accepted"})
            if node is not None:
                service.transfer_certificate(session, tenant_id, node.id,
                                             acting_member_id=node.holder_member_id,
                                             to_member_id=members[b % len(members)])
        elif kind == "finance":
            node = _pick(session, tenant_id, a, {"accepted"})
            if node is not None:
                quote = service.request_financing_quote(session, tenant_id, node.id,
                                                        acting_member_id=node.holder_member_id)
                if b:
                    service.accept_financing_quote(session, tenant_id, quote.id,
                                                   acting_member_id=node.holder_member_id)
        elif kind == "mature":
            advance_clock(session, tenant_id, a * 86400)
    if kind == "mature":
        with database.transaction() as session:
            now = clock_for(session, tenant_id).now()
            roots = sorted({n.root_id for n in _nodes(session, tenant_id)})
        for root in roots:
            with database.transaction() as session:
                outcome = service.mature_root(session, tenant_id, root, now)
            if outcome:
                event(f"matured: {outcome}")
        if b:  # sometimes the core enterprise tops up, so overdue trees get paid late
            with database.transaction() as session:
                account = session.scalars(select(CreditFacility).where(
                    CreditFacility.tenant_id == tenant_id)).one()
                from products.chain_credit.repository import get_member

                core_account = get_member(session, tenant_id, account.core_enterprise_id).settlement_account_id
                accounts.deposit(session, tenant_id, core_account, 20_000_00,
                                 journal_ref=f"topup:{now.isoformat()}:{a}")


def _applicable(database, tenant_id):
    """The kinds of step that can do something now (so that sequences grow deep trees)."""
    with database.transaction() as session:
        statuses = {n.status for n in _nodes(session, tenant_id)}
    kinds = ["issue", "mature"]
    if "issued" in statuses:
        kinds += ["accept", "accept"]
    if "accepted" in statuses:
        kinds += ["split", "split", "transfer", "transfer", "finance", "finance"]
    return kinds


STEPS = {"issue": _issue, "accept": _accept, "split": _split, "transfer": _transfer,
         "finance": _finance, "mature": _mature}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(data=st.data(), seed=st.integers(0, 2**16), length=st.integers(4, 30))
def test_random_sequences_keep_the_invariants(app, data, seed, length):
    database = app.state.database  # the app fixture also sets up the personal-data vault
    tenant_id, core, t1, members = _setup(database, random.Random(seed))
    for _ in range(length):
        kind = data.draw(st.sampled_from(_applicable(database, tenant_id)), label="kind")
        op = data.draw(STEPS[kind], label="step")
        try:
            _run(database, tenant_id, core, t1, members, op)
        except Problem as exc:
            event(f"refused {op[0]}: {exc.code}")  # a refused step changes nothing
        _check_invariants(database, tenant_id)
    with database.transaction() as session:
        for status in sorted({n.status for n in _nodes(session, tenant_id)}):
            event(f"reached {status}")
