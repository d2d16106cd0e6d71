"""The database remembers the keys its data was written under, and no process runs on it with
other keys.

Two keys cannot change once data was written under them:

- the personal-data encryption key (`QUANLIAN_ENCRYPTION_KEY`, else `<data dir>/keys/
  data-encryption.key`): personal data written under another key no longer decrypts (every
  read of it is a 500), and rows written meanwhile are under a key the rest are not;
- the evidence log's Ed25519 key (`<data dir>/keys/evidence-ed25519.key`): a checkpoint
  signed with another key stays in the log, which then never verifies again.

Their fingerprints are kept in `platform_keys`: the data key's key-check value (an HMAC of a
fixed label under the key) and the SHA-256 of the evidence key's public key; never a secret,
nor anything a secret can be recovered from. The OAuth token signing keys are not guarded: they
rotate (`quanlian keys rotate`), and what they sign (access tokens, e-government checkout
results) lives minutes and is checked against the published key set, so a lost set costs
clients a new token, not data.

At every start (`gateway.startup.prepare`):

- the database has fingerprints: the loaded keys must match them, or the start is refused; a
  missing key file is never generated then;
- it has none yet and holds no data (a first start): the keys are loaded, generated if absent,
  and recorded;
- it has none yet but holds data (an upgrade from a release before this table): keys are never
  generated for it; those on disk are checked against the data (one encrypted value must
  decrypt, the first checkpoint must carry the key's signature) and then recorded.

Recording inserts each fingerprint unless one is there and then compares with what is there,
in one transaction, so that processes starting together on a fresh database all agree with
whichever recorded first.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Column, String, Table, Text, exists, literal, or_, select, type_coerce
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, Session, mapped_column

from gateway import clock
from gateway.db import Base, Database
from gateway.keys import DATA_KEY, EVIDENCE_KEY, KeysMissing, PlatformKeys
from gateway.settings import Settings
from gateway.startup import StartupRefused

# Rows in these tables (and in any with an encrypted column) mean the database holds data.
DATA_TABLES = ("partners", "evidence_entries", "evidence_checkpoints")
# Encrypted values tried against a data key before it is recorded for a database with data.
SAMPLES = 5

_WHAT = {DATA_KEY: "personal-data encryption key", EVIDENCE_KEY: "evidence log signing key"}
_REMEDY = {
    DATA_KEY: "restore the data dir's keys/ or set QUANLIAN_ENCRYPTION_KEY to the key this "
              "database was written with",
    EVIDENCE_KEY: "restore the data dir's keys/ from the backup taken with this database",
}


class PlatformKey(Base):
    """The fingerprint of a key the database's data was written under (see the module)."""

    __tablename__ = "platform_keys"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime]


def open_keys(settings: Settings, database: Database) -> PlatformKeys:
    """The platform's keys for `database`, checked against it and recorded on first use; or
    `StartupRefused` with the sentence to act on."""
    with database.transaction() as session:
        recorded = dict(session.execute(select(PlatformKey.name, PlatformKey.fingerprint)).all())
        has_data = bool(recorded) or _holds_data(session)
    where = make_url(database.url).render_as_string(hide_password=True)
    try:
        keys = PlatformKeys(settings.data_dir, settings.encryption_key, generate=not has_data)
    except KeysMissing as missing:
        names = ", ".join(p.name for p in missing.paths)
        raise StartupRefused(
            f"The database at {where} holds data written under keys that are not in "
            f"{missing.paths[0].parent} (no {names}), and no keys are generated for it: restore "
            "the data dir's keys/ or set QUANLIAN_ENCRYPTION_KEY to the key this database was "
            "written with.") from None
    except ValueError as exc:  # not base64, or not 32 bytes
        source = "QUANLIAN_ENCRYPTION_KEY" if settings.encryption_key else "a key file"
        raise StartupRefused(f"The data dir's keys or {source} cannot be read as keys ({exc}): "
                             f"{_REMEDY[DATA_KEY]}.") from None
    _compare(recorded, keys, where)
    if len(recorded) < len(keys.fingerprints):
        if has_data and not recorded:
            with database.transaction() as session:
                _check_against_data(session, keys, where)
        _compare(_record(database, keys), keys, where)
    return keys


def _compare(recorded: dict[str, str], keys: PlatformKeys, where: str) -> None:
    for name, fingerprint in recorded.items():
        loaded = keys.fingerprints.get(name)
        if loaded is not None and loaded != fingerprint:
            raise StartupRefused(
                f"The database at {where} was written under the {_WHAT[name]} with fingerprint "
                f"{fingerprint[:16]}, but {keys.sources[name]} holds the key with fingerprint "
                f"{loaded[:16]}: {_REMEDY[name]}.")


def _record(database: Database, keys: PlatformKeys) -> dict[str, str]:
    """Insert the fingerprints the database has not got, keeping any it has (another process
    may have recorded them a moment ago), and return what it holds then."""
    table = PlatformKey.__table__
    rows = [{"name": name, "fingerprint": fingerprint, "recorded_at": clock.utcnow()}
            for name, fingerprint in keys.fingerprints.items()]
    with database.transaction() as session:
        dialect = session.get_bind().dialect.name
        statement = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)
        session.execute(statement.on_conflict_do_nothing(), rows)
        return dict(session.execute(select(PlatformKey.name, PlatformKey.fingerprint)).all())


def _encrypted_columns() -> list[Column[str]]:
    from gateway.pii import EncryptedString

    return [column for table in Base.metadata.sorted_tables for column in table.columns
            if isinstance(column.type, EncryptedString)]


def _holds_data(session: Session) -> bool:
    """Whether any row exists that was written under the guarded keys (or beside such rows)."""
    tables: dict[str, Table] = {name: Base.metadata.tables[name] for name in DATA_TABLES}
    tables.update({column.table.name: column.table for column in _encrypted_columns()})
    return bool(session.scalar(select(literal(True)).where(
        or_(*(exists().select_from(table) for table in tables.values())))))


def _check_against_data(session: Session, keys: PlatformKeys, where: str) -> None:
    """Before keys are first recorded for a database that holds data: some encrypted value
    must decrypt under the data key, and the log's first checkpoint must be signed with the
    evidence key (the first: a later one may have been signed under a wrong key already)."""
    from gateway.evidence.models import EvidenceCheckpoint
    from gateway.evidence.note import NoteError, key_id, parse_note
    from gateway.pii import DecryptionError, Vault

    vault, decrypted, failed = Vault(keys), False, 0
    for column in _encrypted_columns():
        if failed == SAMPLES:
            break
        value = session.scalar(select(type_coerce(column, Text)).where(column.is_not(None)).limit(1))
        if value is None:
            continue
        try:
            vault.decrypt(value)
        except DecryptionError:
            failed += 1
            continue
        decrypted = True
        break
    if failed and not decrypted:
        raise StartupRefused(
            f"The personal data in the database at {where} does not decrypt under the key "
            f"from {keys.sources[DATA_KEY]}: {_REMEDY[DATA_KEY]}.")
    note = session.scalar(select(EvidenceCheckpoint.note).order_by(EvidenceCheckpoint.tree_size)
                          .limit(1))
    if note is None:
        return
    public = keys.evidence_key.public_key()
    try:
        parsed = parse_note(note)
    except NoteError:
        parsed = None
    if parsed is None or not any(
            sig.key_id == key_id(sig.name, public)
            and _verifies(public, sig.signature, parsed.text.encode("utf-8"))
            for sig in parsed.signatures):
        raise StartupRefused(
            f"The evidence log in the database at {where} was not signed with the key in "
            f"{keys.sources[EVIDENCE_KEY]}: {_REMEDY[EVIDENCE_KEY]}.")


def _verifies(public: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public.verify(signature, message)
    except InvalidSignature:
        return False
    return True
