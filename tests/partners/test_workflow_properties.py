"""Property: whatever operators try, a partner's status only moves along the transition table,
maker-checker holds, and every change (and only a change) is in the history and the log."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from gateway.errors import Problem
from gateway.events import Event
from gateway.tenancy import Partner, create_partner
from partners.models import PartnerTransition
from partners.workflow import TRANSITIONS, Actor, record_submission, transition

ACTORS = [
    Actor("opr_rev1", frozenset({"reviewer"})),
    Actor("opr_rev2", frozenset({"reviewer"})),
    Actor("opr_app1", frozenset({"approver"})),
    Actor("opr_both", frozenset({"reviewer", "approver"})),
    Actor("opr_adm1", frozenset({"admin"})),
    Actor("opr_adm2", frozenset({"admin"})),
    Actor("opr_aud1", frozenset({"auditor"})),
]
ACTIONS = [*TRANSITIONS, "teleport"]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(st.tuples(st.sampled_from(ACTIONS), st.sampled_from(ACTORS),
                                st.sampled_from(["checked", "", "  "])), max_size=14))
def test_status_only_moves_along_the_table(app, steps):
    database = app.state.database
    with database.transaction() as s:
        partner = create_partner(s, name="Property partner", status="submitted")
        record_submission(s, partner, actor="applicant")
        pid = partner.id
    status, maker, changes = "submitted", None, 0
    for action, actor, reason in steps:
        spec = TRANSITIONS.get(action)
        allowed = (spec is not None and bool(reason.strip()) and actor.has_any(spec.roles)
                   and status in spec.sources
                   and not (action == "approve" and maker == actor.id))
        try:
            with database.transaction() as s:
                transition(s, pid, action, actor=actor, reason=reason)
        except Problem as exc:
            assert not allowed, (action, actor, status, exc)
            assert 403 <= exc.status < 500
        else:
            assert allowed, (action, actor, status)
            assert spec is not None
            status = spec.target
            changes += 1
            if action == "review":
                maker = actor.id
        with database.transaction() as s:
            assert s.get(Partner, pid).status == status  # type: ignore[union-attr]
    with database.transaction() as s:
        rows = s.scalar(select(func.count()).select_from(PartnerTransition).where(
            PartnerTransition.partner_id == pid))
        events = s.scalar(select(func.count()).select_from(Event).where(
            Event.resource_id == pid, Event.type.like("partner.%")))
        assert rows == events == changes + 1
