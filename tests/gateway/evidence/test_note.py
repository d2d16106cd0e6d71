"""C2SP signed notes and checkpoints.

Known answers: golang.org/x/mod ``sumdb/note/note_test.go`` (keys PeterNeumann and EnochRoot,
and the exact signed note Go produces; Ed25519 is deterministic, so ours must be identical).
Checkpoint example: c2sp.org/tlog-checkpoint.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.evidence.merkle import EMPTY_ROOT
from gateway.evidence.note import (
    Checkpoint,
    NoteError,
    format_checkpoint,
    generate_signer_key,
    key_id,
    note_digest,
    parse_checkpoint,
    parse_note,
    parse_signer_key,
    parse_verifier_key,
    prev_extension,
    sign_note,
    signer_key,
    verifier_key,
    verify_note,
)

PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = ("\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngot"
             "pRZb6KE6RyyBwJnAM=\n")
ENOCH_SIG = ("\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox"
             "33WWd1RvMc+QQ=\n")
SIGNED = TEXT + "\n" + PETER_SIG


def _public_bytes(vkey: str) -> bytes:
    return base64.b64decode(vkey.split("+", 2)[2])[1:]


# --- keys ----------------------------------------------------------------------------------


def test_key_id_known_answers() -> None:
    peter = _public_bytes(PETER_VKEY)
    assert key_id("PeterNeumann", peter).hex() == "c74f20a3"
    assert key_id("EnochRoot", _public_bytes(ENOCH_VKEY)).hex() == "af0cfe78"
    # The definition, spelled out: SHA-256(name || 0x0A || 0x01 || public key)[:4].
    assert key_id("PeterNeumann", peter) == hashlib.sha256(b"PeterNeumann\n\x01" + peter).digest()[:4]
    # The name is part of the id: the same key under another name is another signer.
    assert key_id("PeterNeumann2", peter) != key_id("PeterNeumann", peter)


def test_key_strings_round_trip_with_the_go_format() -> None:
    signer = parse_signer_key(PETER_SKEY)
    verifier = parse_verifier_key(PETER_VKEY)
    assert signer.name == verifier.name == "PeterNeumann"
    assert signer.key_id == verifier.key_id == bytes.fromhex("c74f20a3")
    assert signer_key(signer.name, signer.private_key) == PETER_SKEY
    assert verifier_key(verifier.name, verifier.public_key) == PETER_VKEY == str(signer.verifier)
    skey, vkey = generate_signer_key("quanlian.example/evidence")
    assert str(parse_signer_key(skey).verifier) == vkey
    assert vkey.startswith("quanlian.example/evidence+")


def test_mangled_verifier_keys_are_refused() -> None:
    # As golang.org/x/mod's TestNewVerifier: every single-character change breaks the key.
    for i in range(len(PETER_VKEY)):
        mangled = PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1:]
        with pytest.raises(NoteError):
            parse_verifier_key(mangled)
    for bad in ["", PETER_VKEY[:-4], PETER_VKEY + "A", "PeterNeumann+c74f20a3",
                "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
                "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
                "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"]:
        with pytest.raises(NoteError):
            parse_verifier_key(bad)
    for i in range(len(PETER_SKEY)):
        mangled = PETER_SKEY[:i] + chr(ord(PETER_SKEY[i]) + 1) + PETER_SKEY[i + 1:]
        with pytest.raises(NoteError):
            parse_signer_key(mangled)


# --- signing and verifying -----------------------------------------------------------------


def test_signing_reproduces_the_go_reference_note() -> None:
    signer = parse_signer_key(PETER_SKEY)
    assert sign_note(TEXT, "PeterNeumann", signer.private_key) == SIGNED
    assert verify_note(SIGNED, PETER_VKEY) == TEXT
    assert verify_note(SIGNED, parse_verifier_key(PETER_VKEY)) == TEXT


def test_round_trip_with_a_fresh_key() -> None:
    key = Ed25519PrivateKey.generate()
    name = "quanlian.example/evidence"
    text = "第一行\n\nthe text may hold blank lines\n"
    signed = sign_note(text, name, key)
    assert signed.startswith(text + "\n\u2014 " + name + " ")
    assert verify_note(signed, verifier_key(name, key.public_key())) == text
    parsed = parse_note(signed)
    assert parsed.text == text
    assert [(s.name, s.key_id, len(s.signature)) for s in parsed.signatures] == [
        (name, key_id(name, key.public_key()), 64)]


def test_other_signatures_are_ignored_and_each_known_one_verifies() -> None:
    cosigned = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert verify_note(cosigned, PETER_VKEY) == TEXT
    assert verify_note(cosigned, ENOCH_VKEY) == TEXT
    # A rotated key under the same name is just an unknown signature.
    other = Ed25519PrivateKey.generate()
    rotated = sign_note(TEXT, "PeterNeumann", other)
    assert verify_note(rotated + PETER_SIG, PETER_VKEY) == TEXT


def test_tampered_text_is_refused() -> None:
    for tampered in [SIGNED.replace("answer", "Answer"), "Note: " + SIGNED,
                     SIGNED.replace("problem is.\n", "problem is.\nextra line\n")]:
        with pytest.raises(NoteError, match="invalid signature for key PeterNeumann\\+c74f20a3"):
            verify_note(tampered, PETER_VKEY)


def test_wrong_key_is_refused() -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(NoteError, match="under key id c74f20a3, not under the expected key id"):
        verify_note(SIGNED, verifier_key("PeterNeumann", other.public_key()))
    with pytest.raises(NoteError, match="not signed by 'EnochRoot'.*PeterNeumann"):
        verify_note(SIGNED, ENOCH_VKEY)


def test_wrong_name_is_refused() -> None:
    # Same key material, another name: another key id, so the signature is not by that key.
    signer = parse_signer_key(PETER_SKEY)
    with pytest.raises(NoteError, match="not signed by 'PeterNeuman'"):
        verify_note(SIGNED, verifier_key("PeterNeuman", signer.private_key.public_key()))
    renamed = SIGNED.replace("\u2014 PeterNeumann ", "\u2014 CarmenSandiego ")
    with pytest.raises(NoteError, match="not signed by 'PeterNeumann'.*CarmenSandiego"):
        verify_note(renamed, PETER_VKEY)


def test_truncated_or_altered_signatures_are_refused() -> None:
    encoded = PETER_SIG.split(" ")[2].rstrip("\n")
    raw = base64.b64decode(encoded)
    variants = [encoded[:-4], encoded[:-1], encoded[:60],
                base64.b64encode(raw[:-1]).decode(),  # well-formed base64, one byte short
                base64.b64encode(raw[:4]).decode(),  # the key id alone
                base64.b64encode(raw + b"\x00").decode(),
                base64.b64encode(raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]).decode(),
                encoded[:60] + "ABCD" + encoded[60:]]
    for variant in variants:
        with pytest.raises(NoteError):
            verify_note(TEXT + "\n\u2014 PeterNeumann " + variant + "\n", PETER_VKEY)


def test_non_canonical_base64_is_refused() -> None:
    # The last character carries 2 unused bits ("=" padding): setting them keeps the bytes but
    # changes the spelling, which would make the prev digest of a note ambiguous.
    encoded = PETER_SIG.split(" ")[2].rstrip("\n")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = encoded[-2]
    bent = encoded[:-2] + alphabet[alphabet.index(last) | 1] + "="
    assert bent != encoded and base64.b64decode(bent) == base64.b64decode(encoded)
    with pytest.raises(NoteError, match="canonical"):
        verify_note(TEXT + "\n\u2014 PeterNeumann " + bent + "\n", PETER_VKEY)


@pytest.mark.parametrize("signed", [
    TEXT,  # no signatures
    TEXT + "\n",  # blank line, no signatures
    TEXT + "\n" + PETER_SIG[:-1],  # signature line without its newline
    "\x01" + SIGNED,  # control character
    SIGNED.replace("\n", "\r\n"),
    TEXT + "\n" + "\u2014 Bad Name x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqf"
                  "qdngotpRZb6KE6RyyBwJnAM=\n",
    TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
    TEXT + "\n" + PETER_SIG.replace("\u2014", "-"),  # hyphen for the em dash
    TEXT + "\n" + PETER_SIG.replace("\u2014 ", "\u2014"),
    TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Peter+Neumann"),
    TEXT + "\n" + "\u2014 PeterNeumann \n",
    TEXT + "\n" + PETER_SIG * 101,  # too many signatures
    TEXT + "\n" + "\ud800" + PETER_SIG,  # not encodable as UTF-8
])
def test_malformed_notes_are_refused(signed: str) -> None:
    with pytest.raises(NoteError):
        verify_note(signed, PETER_VKEY)


def test_sign_refuses_malformed_text_and_names() -> None:
    key = Ed25519PrivateKey.generate()
    for text in ["no newline", "", "tab\there\n", "\ud800\n"]:
        with pytest.raises(NoteError):
            sign_note(text, "log", key)
    for name in ["", "has space", "has+plus", "new\nline", "nb\u00a0sp"]:
        with pytest.raises(NoteError):
            sign_note("text\n", name, key)


# --- checkpoints ---------------------------------------------------------------------------


def test_checkpoint_format_and_parse_round_trip() -> None:
    root_hash = hashlib.sha256(b"root").digest()
    text = format_checkpoint("quanlian.example/evidence", 20852163, root_hash, [])
    assert text == f"quanlian.example/evidence\n20852163\n{base64.b64encode(root_hash).decode()}\n"
    assert parse_checkpoint(text) == Checkpoint("quanlian.example/evidence", 20852163, root_hash, ())
    assert parse_checkpoint(text).prev is None
    empty = format_checkpoint("log", 0, EMPTY_ROOT)
    assert parse_checkpoint(empty) == Checkpoint("log", 0, EMPTY_ROOT)
    prev_line = "prev " + base64.b64encode(EMPTY_ROOT).decode()
    with_ext = format_checkpoint("log", 3, root_hash, [prev_line, "x y"])
    parsed = parse_checkpoint(with_ext)
    assert parsed.extensions == (prev_line, "x y")
    assert parsed.prev == EMPTY_ROOT
    assert parsed.text() == with_ext


def test_the_c2sp_example_checkpoint_parses() -> None:
    cp = parse_checkpoint(
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    assert (cp.origin, cp.size, cp.root.hex()[:8], cp.extensions) == (
        "example.com/behind-the-sofa", 20852163, "0ac5186a", ())


def test_signed_checkpoints_chain_through_prev() -> None:
    key = Ed25519PrivateKey.generate()
    origin = "quanlian.example/evidence"
    vkey = verifier_key(origin, key.public_key())
    first = sign_note(format_checkpoint(origin, 1, hashlib.sha256(b"a").digest()), origin, key)
    second = sign_note(format_checkpoint(origin, 2, hashlib.sha256(b"b").digest(), [prev_extension(first)]),
                       origin, key)
    assert parse_checkpoint(verify_note(first, vkey)).prev is None  # the first checkpoint
    checkpoint = parse_checkpoint(verify_note(second, vkey))
    assert checkpoint.size == 2
    assert checkpoint.prev == note_digest(first) == hashlib.sha256(first.encode()).digest()


@pytest.mark.parametrize("text", [
    "log\n5\n" + base64.b64encode(EMPTY_ROOT).decode(),  # no final newline
    "log\n5\n",  # two lines
    "\n5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n",  # empty origin
    "log\n05\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n",  # leading zero
    "log\n-5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n",
    "log\n+5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n",
    "log\n\u0665\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n",  # a non-ASCII digit
    "log\n5\n" + base64.b64encode(EMPTY_ROOT[:31]).decode() + "\n",  # 31-byte root
    "log\n5\nnot base64!\n",
    "log\n5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n\n",  # empty extension line
    "log\n5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\nprev\n",
    "log\n5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\nprev AAAA\n",  # not a digest
    "log\n5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\n" + 2 * (
        "prev " + base64.b64encode(EMPTY_ROOT).decode() + "\n"),  # two prev lines
    "log\n5\n" + base64.b64encode(EMPTY_ROOT).decode() + "\x00\n",
])
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(NoteError):
        parse_checkpoint(text)


def test_format_checkpoint_refuses_bad_fields() -> None:
    for args in [("", 1, EMPTY_ROOT, ()), ("a b", 1, EMPTY_ROOT, ()), ("a+b", 1, EMPTY_ROOT, ()),
                 ("log", -1, EMPTY_ROOT, ()), ("log", True, EMPTY_ROOT, ()), ("log", 1, EMPTY_ROOT[:31], ()),
                 ("log", 1, EMPTY_ROOT, ("",)), ("log", 1, EMPTY_ROOT, ("two\nlines",)),
                 ("log", 1, EMPTY_ROOT, ("prev x", "prev y"))]:
        with pytest.raises(NoteError):
            format_checkpoint(*args)  # type: ignore[arg-type]
