"""Personal data: masks, keyed digests, AES-256-GCM tokens and the encrypted column type."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import String, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import gateway.pii as pii
from gateway.keys import PlatformKeys
from gateway.pii import (
    DecryptionError,
    EncryptedString,
    Vault,
    VaultNotConfigured,
    decrypt,
    encrypt,
    get_vault,
    mask_account_number,
    mask_card_number,
    mask_id_number,
    mask_name,
    mask_phone,
    pii_digest,
    set_vault,
)
from tests.tools.databases import empty_database_url

KEY = bytes(range(32))
TOKEN = re.compile(r"v1\.[A-Za-z0-9_-]+")
Mask = Callable[[str | None], str]


# --- masks ------------------------------------------------------------------------------


def test_masks() -> None:
    assert mask_id_number("110101199003077777") == "110***********7777"
    assert mask_id_number("11010519491231002X") == "110***********002X"
    assert mask_account_number("6222021234561234") == "6222********1234"
    assert mask_card_number("6222021234567890128") == "6222***********0128"
    assert mask_phone("13812345678") == "138****5678"
    assert mask_name("张三") == "张*"
    assert mask_name("欧阳娜娜") == "欧***"
    assert mask_name("王") == "王*"


@pytest.mark.parametrize(
    ("mask", "value"),
    [
        (mask_id_number, "1234567"),
        (mask_account_number, "12345678"),
        (mask_phone, "1234567"),
        (mask_id_number, "1"),
        (mask_account_number, ""),
    ],
)
def test_values_too_short_to_mask_partly_are_masked_entirely(mask: Mask, value: str) -> None:
    assert mask(value) == "*" * len(value)


@pytest.mark.parametrize("mask", [mask_id_number, mask_account_number, mask_phone, mask_name])
def test_masks_tolerate_empty_values(mask: Mask) -> None:
    assert mask("") == ""
    assert mask(None) == ""


def test_masks_keep_the_length_and_hide_the_middle() -> None:
    number = "6217001234567890123"
    masked = mask_account_number(number)
    assert len(masked) == len(number)
    assert "12345678901" not in masked and set(masked[4:-4]) == {"*"}


# --- vault ------------------------------------------------------------------------------


def _raw(token: str) -> bytes:
    body = token[3:]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def _token(raw: bytes) -> str:
    return "v1." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("value", ["110101199003077777", "张三", "", "a" * 1000, "🙂\x00\n"])
def test_encrypt_decrypt_round_trip(value: str) -> None:
    vault = Vault(KEY)
    token = vault.encrypt(value)
    assert TOKEN.fullmatch(token)
    assert "=" not in token
    raw = _raw(token)
    assert len(raw) == 12 + len(value.encode()) + 16  # nonce, ciphertext, tag
    assert vault.decrypt(token) == value


def test_each_encryption_uses_a_fresh_nonce() -> None:
    vault = Vault(KEY)
    tokens = {vault.encrypt("110101199003077777") for _ in range(100)}
    assert len(tokens) == 100
    assert len({_raw(t)[:12] for t in tokens}) == 100
    assert all("110101199003077777" not in t for t in tokens)


def test_any_altered_byte_is_refused() -> None:
    vault = Vault(KEY)
    raw = _raw(vault.encrypt("6222021234567890128"))
    for i in range(len(raw)):
        tampered = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1 :]
        with pytest.raises(DecryptionError, match="altered"):
            vault.decrypt(_token(tampered))


def test_truncated_and_extended_tokens_are_refused() -> None:
    vault = Vault(KEY)
    raw = _raw(vault.encrypt("13812345678"))
    with pytest.raises(DecryptionError, match="altered"):
        vault.decrypt(_token(raw[:-1]))
    with pytest.raises(DecryptionError, match="altered"):
        vault.decrypt(_token(raw + b"\x00"))
    with pytest.raises(DecryptionError, match="too short"):
        vault.decrypt(_token(raw[:27]))


def test_another_key_cannot_decrypt() -> None:
    token = Vault(KEY).encrypt("张三")
    with pytest.raises(DecryptionError, match="another key"):
        Vault(os.urandom(32)).decrypt(token)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "format v1"),
        ("110101199003077777", "format v1"),
        ("v2.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "format v1"),
        ("v1.", "format v1"),
        ("v1.AAAA AAAA", "format v1"),
        ("v1.AAAA==", "format v1"),
        ("v1.+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/", "format v1"),
        (" v1.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "format v1"),
        ("v1.A", "base64url"),
    ],
)
def test_malformed_tokens_are_refused(token: str, message: str) -> None:
    with pytest.raises(DecryptionError, match=message):
        Vault(KEY).decrypt(token)


def test_only_strings_are_encrypted_and_digested() -> None:
    vault = Vault(KEY)
    with pytest.raises(TypeError):
        vault.encrypt(12345)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        vault.digest(b"12345")  # type: ignore[arg-type]
    with pytest.raises(DecryptionError):
        vault.decrypt(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("key", [bytes(31), bytes(33), b"", "k" * 32])
def test_vault_needs_a_32_byte_key(key: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        Vault(key)  # type: ignore[arg-type]


def test_digest_is_keyed_stable_and_hex() -> None:
    vault = Vault(KEY)
    first = vault.digest("110101199003077777")
    assert re.fullmatch(r"[0-9a-f]{64}", first)
    assert vault.digest("110101199003077777") == first
    assert Vault(KEY).digest("110101199003077777") == first
    assert vault.digest("110101199003077778") != first
    assert Vault(os.urandom(32)).digest("110101199003077777") != first
    # Not a plain hash: nobody without the key can test a guessed ID number against it.
    assert first != hashlib.sha256(b"110101199003077777").hexdigest()


def test_a_vault_from_platform_keys_matches_one_from_the_raw_key(tmp_path: Path) -> None:
    keys = PlatformKeys(tmp_path, encryption_key=base64.b64encode(KEY).decode())
    from_keys, from_raw = Vault(keys), Vault(KEY)
    assert from_keys.digest("张三") == from_raw.digest("张三")
    assert from_raw.decrypt(from_keys.encrypt("张三")) == "张三"
    assert from_keys.decrypt(from_raw.encrypt("张三")) == "张三"


def test_a_generated_platform_key_works(tmp_path: Path) -> None:
    vault = Vault(PlatformKeys(tmp_path))
    assert vault.decrypt(vault.encrypt("13812345678")) == "13812345678"
    # The key file survives a restart, and so do digests and tokens.
    again = Vault(PlatformKeys(tmp_path))
    assert again.digest("x") == vault.digest("x")
    assert again.decrypt(vault.encrypt("x")) == "x"


# --- the process-wide vault and the column type -----------------------------------------


@pytest.fixture
def no_vault(monkeypatch: pytest.MonkeyPatch) -> None:
    """No process-wide vault during the test; the previous one is put back afterwards."""
    monkeypatch.setattr(pii, "_vault", None)


@pytest.fixture
def vault(no_vault: None) -> Vault:
    installed = Vault(KEY)
    set_vault(installed)
    return installed


def test_module_functions_need_set_vault(no_vault: None) -> None:
    for call in (lambda: encrypt("x"), lambda: decrypt("v1.x"), lambda: pii_digest("x"), get_vault):
        with pytest.raises(VaultNotConfigured, match="set_vault"):
            call()


def test_module_functions_use_the_installed_vault(vault: Vault) -> None:
    assert get_vault() is vault
    assert vault.decrypt(encrypt("张三")) == "张三"
    assert decrypt(vault.encrypt("张三")) == "张三"
    assert pii_digest("张三") == vault.digest("张三")


class _Base(DeclarativeBase):
    pass


class _Payee(_Base):
    __tablename__ = "pii_test_payees"

    id: Mapped[int] = mapped_column(primary_key=True)
    id_number: Mapped[str] = mapped_column(EncryptedString())
    phone: Mapped[str | None] = mapped_column(EncryptedString(), nullable=True)
    id_digest: Mapped[str] = mapped_column(String(64), index=True)


@pytest.fixture
def session() -> Iterator[Session]:
    """A session on an empty database of this test's own (SQLite, or PostgreSQL in CI)."""
    with empty_database_url() as url:
        engine = create_engine(url)
        _Base.metadata.create_all(engine)
        try:
            with Session(engine) as s:
                yield s
        finally:
            engine.dispose()


def test_encrypted_column_stores_tokens_and_loads_clear_text(vault: Vault, session: Session) -> None:
    session.add_all(
        [
            _Payee(
                id=1,
                id_number="110101199003077777",
                phone="13812345678",
                id_digest=pii_digest("110101199003077777"),
            ),
            _Payee(
                id=2, id_number="11010519491231002X", phone=None, id_digest=pii_digest("11010519491231002X")
            ),
        ]
    )
    session.commit()
    session.expunge_all()

    stored = dict(session.execute(text("SELECT id, id_number FROM pii_test_payees")).all())
    assert all(TOKEN.fullmatch(v) for v in stored.values())
    assert "1990" not in stored[1] and vault.decrypt(stored[1]) == "110101199003077777"
    raw_phone = session.execute(text("SELECT phone FROM pii_test_payees WHERE id = 2")).scalar()
    assert raw_phone is None

    # Look-ups go through the digest; the loaded row is in clear.
    found = session.scalars(select(_Payee).where(_Payee.id_digest == pii_digest("110101199003077777"))).one()
    assert (found.id, found.id_number, found.phone) == (1, "110101199003077777", "13812345678")
    assert session.get(_Payee, 2).phone is None  # type: ignore[union-attr]


def test_encrypted_column_without_a_vault_fails_clearly(no_vault: None, session: Session) -> None:
    session.add(_Payee(id=1, id_number="110101199003077777", id_digest="0" * 64))
    with pytest.raises(Exception, match="set_vault") as info:
        session.flush()
    assert isinstance(info.value.__cause__ or info.value, VaultNotConfigured)


def test_a_tampered_row_is_refused_on_load(vault: Vault, session: Session) -> None:
    session.add(_Payee(id=1, id_number="110101199003077777", id_digest="0" * 64))
    session.commit()
    token = session.execute(text("SELECT id_number FROM pii_test_payees")).scalar_one()
    raw = _raw(token)
    forged = _token(raw[:-1] + bytes([raw[-1] ^ 1]))
    session.execute(text("UPDATE pii_test_payees SET id_number = :t"), {"t": forged})
    session.commit()
    session.expunge_all()
    with pytest.raises(DecryptionError):
        session.get(_Payee, 1)
