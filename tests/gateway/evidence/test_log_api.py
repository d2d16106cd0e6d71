"""The evidence log through HTTP: receipts, entries, proofs, checkpoints, bundles, tampering."""

from __future__ import annotations

import base64
import hashlib
import json
import threading

import pytest
from fastapi import Depends
from sqlalchemy import select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from gateway.auth import authenticate
from gateway.db import get_session
from gateway.errors import ValidationFailed
from gateway.events import publish
from gateway.evidence import merkle, service, verifier
from gateway.evidence.models import EvidenceCheckpoint, EvidenceEntry
from gateway.evidence.note import parse_checkpoint, verify_note
from gateway.evidence.router import BundleOut
from tests.tools.api import new_partner_client


def b64d(value: str) -> bytes:
    return base64.b64decode(value)


def receipt(response) -> tuple[str, bytes]:
    header = response.headers["evidence-entry"]
    entry_id, _, leaf = header.partition("; leaf=")
    return entry_id, b64d(leaf)


def integrate(app):
    return service.integrate(app.state.database, app.state.evidence_log)


def test_a_calls_entry_names_its_route_as_the_api_document_does(app, http, partner):
    """Routes of the products' included routers too: the whole template, not its tail."""
    import pytest

    from gateway.cli import openapi_document

    documented = set(json.loads(openapi_document())["paths"])
    calls = {"/v1/accounts": "/v1/accounts",
             "/v1/transfers/trf_00000000000000000000000000": "/v1/transfers/{transfer_id}",
             "/v1/chain-credit/facilities": "/v1/chain-credit/facilities"}
    entries = {}
    for path in calls:
        entries[path] = receipt(partner.get(path))[0]
    integrate(app)
    for path, route in calls.items():
        fields = json.loads(b64d(partner.get(f"/v1/evidence/entries/{entries[path]}")
                                 .json()["canonical"]))
        if route not in documented:
            pytest.fail(f"{route} is not a documented path")
        assert fields["route"] == route, path


def test_every_call_has_a_verifiable_receipt(app, http, partner):
    response = partner.get("/v1/me")
    entry_id, leaf = receipt(response)
    integrate(app)
    entry = partner.get(f"/v1/evidence/entries/{entry_id}").json()
    canonical = b64d(entry["canonical"])
    assert hashlib.sha256(b"\x00" + canonical).digest() == leaf == b64d(entry["leaf_hash"])
    fields = json.loads(canonical)
    assert fields["method"] == "GET" and fields["route"] == "/v1/me" and fields["status"] == 200
    assert fields["client_id"] == partner.client_id
    assert fields["response_sha256"] == hashlib.sha256(response.content).hexdigest()
    note = http.get("/v1/evidence/checkpoint").text
    key = http.get("/v1/evidence/public-key").text.strip()
    assert key.startswith("quanlian.local/evidence+")
    cp = parse_checkpoint(verify_note(note, key))
    assert cp.origin == "quanlian.local/evidence"
    proof = http.get("/v1/evidence/proofs/inclusion",
                     params={"index": entry["index"], "tree_size": cp.size}).json()
    assert merkle.verify_inclusion(leaf, entry["index"], cp.size, [b64d(h) for h in proof["hashes"]],
                                   cp.root)


def test_consistency_between_checkpoints(app, http, partner):
    partner.get("/v1/me")
    integrate(app)
    first = parse_checkpoint(http.get("/v1/evidence/checkpoint").text.split("\n\n")[0] + "\n")
    for _ in range(5):
        partner.get("/v1/me")
    integrate(app)
    second_note = http.get("/v1/evidence/checkpoint").text
    second = parse_checkpoint(second_note.split("\n\n")[0] + "\n")
    assert second.size > first.size
    proof = http.get("/v1/evidence/proofs/consistency",
                     params={"first": first.size, "second": second.size}).json()
    assert merkle.verify_consistency(first.size, second.size, first.root, second.root,
                                     [b64d(h) for h in proof["hashes"]])
    assert http.get("/v1/evidence/proofs/consistency",
                    params={"first": second.size, "second": first.size}).status_code == 422


def test_other_partners_see_only_leaf_hashes(app, http, partner):
    entry_id, _ = receipt(partner.get("/v1/me"))
    integrate(app)
    other = new_partner_client(app, http)
    seen = other.get(f"/v1/evidence/entries/{entry_id}").json()
    assert seen["canonical"] is None and seen["entry"] is None and seen["leaf_hash"]
    anonymous = http.get(f"/v1/evidence/entries/{entry_id}").json()
    assert anonymous["canonical"] is None


@pytest.fixture
def event_probe(app):
    @app.post("/v1/probe-event", include_in_schema=False)
    def probe(fail: bool = False, session: Session = Depends(get_session),
              principal=Depends(authenticate)):
        publish(session, tenant_id=principal.tenant_id, type="probe.happened",
                resource_type="probe", resource_id="probe_1", data={"ok": True},
                actor=principal.client_id)
        if fail:
            raise ValidationFailed("refused after writing", code="probe_refused")
        return {"ok": True}
    return app


def _entries(app, **where):
    with app.state.database.engine.connect() as conn:
        q = select(EvidenceEntry.kind, EvidenceEntry.canonical)
        for k, v in where.items():
            q = q.where(getattr(EvidenceEntry, k) == v)
        return [(k, json.loads(c)) for k, c in conn.execute(q)]


def test_change_and_its_evidence_commit_together(event_probe, partner):
    ok = partner.post("/v1/probe-event", headers={"X-Request-ID": "ev-ok"})
    assert ok.status_code == 200
    assert [k for k, _ in _entries(event_probe, resource_id="probe_1")] == ["event"]
    bad = partner.post("/v1/probe-event?fail=true", headers={"X-Request-ID": "ev-bad"})
    assert bad.status_code == 422
    assert len(_entries(event_probe, resource_id="probe_1")) == 1  # the rolled-back event left none
    assert not _entries(event_probe, request_id="ev-bad")  # the caller's id names no entry
    calls = _entries(event_probe, request_id=bad.headers["x-request-id"])
    assert [(k, f["status"]) for k, f in calls] == [("call", 422)]


def test_bundle_verifies_offline(event_probe, partner, http):
    partner.post("/v1/probe-event")
    partner.post("/v1/probe-event")
    bundle = partner.get("/v1/evidence/bundles/probe_1").json()
    BundleOut.model_validate(bundle)  # the document's shape
    cp = parse_checkpoint(verify_note(bundle["checkpoint"], bundle["verifier_key"]))
    assert len(bundle["entries"]) == 2
    for e in bundle["entries"]:
        leaf = merkle.leaf_hash(b64d(e["canonical"]))
        assert merkle.verify_inclusion(leaf, e["index"], cp.size,
                                       [b64d(h) for h in e["inclusion_proof"]], cp.root)
    other = new_partner_client(event_probe, http)
    assert other.get("/v1/evidence/bundles/probe_1").status_code == 404


def test_only_one_integrator_at_a_time(app, partner):
    for _ in range(30):
        partner.get("/v1/me")
    threads = [threading.Thread(target=integrate, args=(app,)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with app.state.database.engine.connect() as conn:
        idx = sorted(i for (i,) in conn.execute(select(EvidenceEntry.idx)))
        notes = [n for (n,) in conn.execute(select(EvidenceCheckpoint.note)
                                            .order_by(EvidenceCheckpoint.tree_size))]
    assert idx == list(range(len(idx)))
    sizes, problem = verifier.verify_checkpoints(notes, app.state.evidence_log.verifier_key)
    assert problem is None and sizes[-1][0] == len(idx)


# -- tampering ---------------------------------------------------------------------------

@pytest.fixture
def filled(app, partner):
    for _ in range(3):
        for _ in range(7):
            partner.get("/v1/me")
        integrate(app)
    return app


def _export_and_verify(app, tmp_path):
    with app.state.database.transaction() as s:
        verifier.export(s, tmp_path, app.state.evidence_log.verifier_key)
    return verifier.verify_directory(tmp_path, app.state.evidence_log.verifier_key)


def test_untampered_log_verifies_and_cli_says_ok(filled, tmp_path):
    report = _export_and_verify(filled, tmp_path)
    assert report.ok and report.entries >= 21 and report.checkpoints == 3
    from gateway.evidence.cli import evidence_app
    result = CliRunner().invoke(evidence_app, ["verify", str(tmp_path)])
    assert result.exit_code == 0 and "OK" in result.output
    assert "pass --key" in result.stderr  # whose log it is needs a key from elsewhere
    pinned = CliRunner().invoke(evidence_app, ["verify", str(tmp_path), "--key",
                                               filled.state.evidence_log.verifier_key])
    assert pinned.exit_code == 0 and "OK" in pinned.output and "--key" not in pinned.stderr


def _exec(app, sql, **params):
    with app.state.database.engine.begin() as conn:
        conn.execute(text(sql), params)


def test_changed_row_found(filled, tmp_path):
    with filled.state.database.engine.begin() as conn:
        canonical = conn.execute(select(EvidenceEntry.canonical).where(EvidenceEntry.idx == 9)).scalar()
        changed = canonical.replace(b'"status":200', b'"status":201')
        conn.execute(update(EvidenceEntry).where(EvidenceEntry.idx == 9).values(canonical=changed))
    report = _export_and_verify(filled, tmp_path)
    assert report.problem.index == 9
    from gateway.evidence.cli import evidence_app
    result = CliRunner().invoke(evidence_app, ["verify", str(tmp_path)])
    assert result.exit_code == 1 and "index 9" in result.output


def test_changed_row_and_its_leaf_found(filled, tmp_path):
    with filled.state.database.engine.begin() as conn:
        canonical = conn.execute(select(EvidenceEntry.canonical).where(EvidenceEntry.idx == 4)).scalar()
        changed = canonical.replace(b'"status":200', b'"status":500')
        conn.execute(update(EvidenceEntry).where(EvidenceEntry.idx == 4)
                     .values(canonical=changed, leaf_hash=merkle.leaf_hash(changed)))
    assert _export_and_verify(filled, tmp_path).problem.index == 4


def test_deleted_row_found(filled, tmp_path):
    _exec(filled, "DELETE FROM evidence_entries WHERE idx = 12")
    assert _export_and_verify(filled, tmp_path).problem.index == 12


def test_reordered_rows_found(filled, tmp_path):
    _exec(filled, "UPDATE evidence_entries SET idx = -1 WHERE idx = 6")
    _exec(filled, "UPDATE evidence_entries SET idx = 6 WHERE idx = 7")
    _exec(filled, "UPDATE evidence_entries SET idx = 7 WHERE idx = -1")
    assert _export_and_verify(filled, tmp_path).problem.index == 6


def test_inserted_row_found(filled, tmp_path):
    with filled.state.database.engine.begin() as conn:
        rows = conn.execute(select(EvidenceEntry.seq, EvidenceEntry.idx)
                            .where(EvidenceEntry.idx >= 15).order_by(EvidenceEntry.idx.desc())).all()
        for seq, idx in rows:
            conn.execute(update(EvidenceEntry).where(EvidenceEntry.seq == seq).values(idx=idx + 1))
        forged = b'{"forged":true}'
        conn.execute(EvidenceEntry.__table__.insert().values(
            id="ev_forged", kind="call", canonical=forged, leaf_hash=merkle.leaf_hash(forged),
            idx=15, created_at=rows[0][1] and __import__("gateway.clock", fromlist=["utcnow"]).utcnow()))
    assert _export_and_verify(filled, tmp_path).problem.index == 15


def test_tampered_checkpoint_found(filled, tmp_path):
    with filled.state.database.engine.begin() as conn:
        size, note = conn.execute(select(EvidenceCheckpoint.tree_size, EvidenceCheckpoint.note)
                                  .order_by(EvidenceCheckpoint.tree_size)).first()
        conn.execute(update(EvidenceCheckpoint).where(EvidenceCheckpoint.tree_size == size)
                     .values(note=note.replace(f"\n{size}\n", f"\n{size + 1}\n")))
    report = _export_and_verify(filled, tmp_path)
    assert report.problem.index is None and "checkpoint #1" in report.problem.message
