"""Regenerate the initial Alembic revision from the models (pre-release only).

Until the first release nothing is deployed, so the schema lives in one initial revision
that is rewritten from the models; after the first release every change gets its own
revision (`alembic revision --autogenerate`). Run with `make migration`.
"""

from __future__ import annotations

import tempfile

from alembic import command

from gateway.migrate import ROOT, alembic_config

TARGET = ROOT / "migrations" / "versions" / "0001_initial.py"


def main() -> None:
    for old in (ROOT / "migrations" / "versions").glob("*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/empty.db"
        cfg = alembic_config(url)
        command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001",
                         version_path=str(TARGET.parent))
    produced = sorted(TARGET.parent.glob("0001_*.py"))
    produced[0].rename(TARGET)
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
