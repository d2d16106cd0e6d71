"""The demo tenant `make run` seeds, and the quickstart it prints."""

from __future__ import annotations

from sqlalchemy import select

from gateway.cli_support import cli_transaction
from gateway.oauth.clients import partner_clients, rotate_secret
from gateway.settings import Settings
from gateway.tenancy import Partner, create_partner
from sandbox.provision import provision_sandbox

DEMO_NAME = "Quanlian Demo Platform"


def ensure_demo(settings: Settings) -> dict[str, str]:
    """Create the demo partner's seeded sandbox once; on later starts issue a fresh secret."""
    with cli_transaction(settings) as session:
        partner = session.scalars(select(Partner).where(Partner.name == DEMO_NAME)).first()
        if partner is None:
            partner = create_partner(session, name=DEMO_NAME, email="demo@quanlian.local")
            box = provision_sandbox(session, partner, seed=20261123)
            client_id, secret = box.issued.client.id, box.issued.secret or ""
        else:
            client = next(c for c in partner_clients(session, partner.id)
                          if c.environment == "sandbox" and c.status == "active")
            client_id, secret = client.id, rotate_secret(session, client.id)
    return {"client_id": client_id, "client_secret": secret}


def quickstart(settings: Settings, creds: dict[str, str]) -> str:
    base = settings.issuer.rstrip("/")
    return f"""
Quanlian is starting on {base}  (API docs: {base}/docs)

Demo sandbox credentials (client_secret_basic; the secret is new on every start):
  client_id:     {creds['client_id']}
  client_secret: {creds['client_secret']}

Quickstart:
  TOKEN=$(curl -s -u '{creds['client_id']}:{creds['client_secret']}' \\
      -d grant_type=client_credentials {base}/oauth/token | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/accounts
"""
