"""The demo tenant `make run` seeds, and the quickstart it prints.

Every `serve` start with `QUANLIAN_SEED_DEMO` calls `ensure_demo`, and several may start at
once on one database (the API processes of a deployment, a second `serve` on another port).
Seeding is serialized (an advisory lock on PostgreSQL; SQLite's `BEGIN IMMEDIATE` on SQLite),
so there is one demo partner whatever the race. Its secret is not rotated at each start:
what a start printed must keep working while another start (or one that then fails to bind
its port) prints its own. The secret is kept in the data dir beside the platform's keys
(`demo-credentials.json`, mode 0600) and printed again while it still matches the client; a
new one is issued only when it does not (first start, a new data dir, a secret rotated
meanwhile). Deleting the file gives the next start a fresh secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path

from sqlalchemy import select

from gateway.cli_support import cli_transaction
from gateway.db import advisory_lock
from gateway.oauth.clients import partner_clients, rotate_secret
from gateway.oauth.models import OAuthClient
from gateway.settings import Settings
from gateway.tenancy import Partner, create_partner
from sandbox.provision import provision_sandbox

DEMO_NAME = "Quanlian Demo Platform"
CREDENTIALS_FILE = "demo-credentials.json"


def credentials_path(settings: Settings) -> Path:
    return Path(settings.data_dir) / CREDENTIALS_FILE


def _saved_secret(path: Path, client: OAuthClient) -> str | None:
    """The secret a former start printed for `client`, if it still authenticates it."""
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(saved, dict) or saved.get("client_id") != client.id:
        return None
    secret = saved.get("client_secret")
    if not isinstance(secret, str):
        return None
    return secret if client.check_client_secret(secret) else None


def _save(path: Path, creds: dict[str, str]) -> None:
    """Write the credentials readable by the owner only, replacing the file at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".demo-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(creds, out)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def ensure_demo(settings: Settings) -> dict[str, str]:
    """The demo partner's seeded sandbox, created once, and a working credential for it: the
    one printed before while it still works, else a fresh secret."""
    path = credentials_path(settings)
    with cli_transaction(settings) as session:
        # Until this transaction ends, another start waits here (on SQLite, at its first
        # statement): it then finds the partner this one made, and the secret it saved.
        advisory_lock(session, "sandbox.demo")
        partner = session.scalars(select(Partner).where(Partner.name == DEMO_NAME)
                                  .order_by(Partner.created_at, Partner.id)).first()
        if partner is None:
            partner = create_partner(session, name=DEMO_NAME, email="demo@quanlian.local")
            box = provision_sandbox(session, partner, seed=20261123)
            creds = {"client_id": box.issued.client.id,
                     "client_secret": box.issued.secret or ""}
        else:
            client = next(c for c in partner_clients(session, partner.id)
                          if c.environment == "sandbox" and c.status == "active")
            secret = _saved_secret(path, client)
            if secret is not None:
                return {"client_id": client.id, "client_secret": secret}
            creds = {"client_id": client.id, "client_secret": rotate_secret(session, client.id)}
        # Saved before the commit: should the commit fail, the next start finds a secret that
        # does not match and issues another.
        _save(path, creds)
    return creds


def quickstart(settings: Settings, creds: dict[str, str]) -> str:
    base = settings.issuer.rstrip("/")
    return f"""
Quanlian is starting on {base}  (API docs: {base}/docs)

Demo sandbox credentials (client_secret_basic; the same on every start until
{credentials_path(settings)} is deleted):
  client_id:     {creds['client_id']}
  client_secret: {creds['client_secret']}

Quickstart:
  TOKEN=$(curl -s -u '{creds['client_id']}:{creds['client_secret']}' \\
      -d grant_type=client_credentials {base}/oauth/token | python3 -c 'import sys,json;print(json.load(sys.stdin)["access_token"])')
  curl -s -H "Authorization: Bearer $TOKEN" {base}/v1/accounts
"""
