"""C2SP signed notes (c2sp.org/signed-note) with Ed25519, and checkpoints (c2sp.org/tlog-checkpoint).

A signed note is its text (ending in a newline), a blank line, then signature lines::

    — <key name> base64(key id (4 bytes) || Ed25519 signature (64 bytes))

The key id is SHA-256(key name || 0x0A || 0x01 || 32-byte public key)[:4], 0x01 being the
Ed25519 signature type. Keys travel as strings in the Go ``golang.org/x/mod/sumdb/note``
format, so standard tooling can check our checkpoints:

- verifier key: ``<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>``
- signer key:   ``PRIVATE+KEY+<name>+<key id>+<base64(0x01 || 32-byte seed)>``

Our checkpoints chain: every checkpoint but the first carries the extension line
``prev <base64 SHA-256 of the previous checkpoint's full signed note>``, so a checkpoint also
commits to its whole signed history, not only to the tree.

Base64 is read strictly (canonical form only) so that one signed note has exactly one
spelling, and its ``prev`` digest is well defined.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

__all__ = [
    "PREV_EXTENSION",
    "SIG_TYPE_ED25519",
    "Checkpoint",
    "NoteError",
    "NoteSignature",
    "ParsedNote",
    "Signer",
    "Verifier",
    "format_checkpoint",
    "generate_signer_key",
    "key_id",
    "note_digest",
    "parse_checkpoint",
    "parse_note",
    "parse_signer_key",
    "parse_verifier_key",
    "prev_extension",
    "sign_note",
    "signer_key",
    "verifier_key",
    "verify_note",
]

SIG_TYPE_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
MAX_SIGNATURES = 100  # the spec asks for at least 16; the Go implementation allows 100
PREV_EXTENSION = "prev"
_KEY_ID_SIZE = 4
_ED25519_SIGNATURE_SIZE = 64
_ED25519_KEY_SIZE = 32
_HASH_SIZE = 32
_PRIVATE_KEY_PREFIX = "PRIVATE+KEY+"
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")


class NoteError(ValueError):
    """A signed note, key or checkpoint is malformed, or its signature does not verify."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    """Strict standard base64: only the canonical encoding of some bytes is accepted."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise NoteError(f"{what} is not valid base64: {text!r:.80}") from None
    # b64decode ignores non-zero padding bits; refusing them keeps one spelling per value.
    if _b64(data) != text:
        raise NoteError(f"{what} is not canonical base64: {text!r:.80}")
    return data


def _check_text_chars(text: str, what: str) -> None:
    """Valid UTF-8 and no ASCII control characters other than newline (signed-note Format)."""
    for position, char in enumerate(text):
        if char < " " and char != "\n":
            raise NoteError(f"{what} contains control character {char!r} at offset {position}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise NoteError(f"{what} is not valid UTF-8: {exc.reason}") from None


def _check_name(name: object) -> str:
    """Key names are non-empty, without Unicode spaces, plus signs or control characters."""
    if not isinstance(name, str) or not name:
        raise NoteError("key name must be a non-empty string")
    for char in name:
        if char.isspace() or char == "+" or char < " ":
            raise NoteError(f"key name {name!r} must not contain spaces, '+' or control characters")
    _check_text_chars(name, "key name")
    return name


def _public_bytes(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def key_id(name: str, public_key: Ed25519PublicKey | bytes) -> bytes:
    """SHA-256(name || 0x0A || 0x01 || public key)[:4]: the 4-byte Ed25519 key id."""
    raw = public_key if isinstance(public_key, bytes) else _public_bytes(public_key)
    if len(raw) != _ED25519_KEY_SIZE:
        raise NoteError(f"an Ed25519 public key is {_ED25519_KEY_SIZE} bytes, got {len(raw)}")
    digest = hashlib.sha256(_check_name(name).encode("utf-8") + b"\n" + bytes([SIG_TYPE_ED25519]) + raw)
    return digest.digest()[:_KEY_ID_SIZE]


@dataclass(frozen=True)
class Verifier:
    """A parsed verifier key: who signs, under which key id, with which public key."""

    name: str
    key_id: bytes
    public_key: Ed25519PublicKey

    def __str__(self) -> str:
        return verifier_key(self.name, self.public_key)


@dataclass(frozen=True)
class Signer:
    """A parsed signer key."""

    name: str
    key_id: bytes
    private_key: Ed25519PrivateKey

    @property
    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier(self.name, self.key_id, self.private_key.public_key())


def verifier_key(name: str, public_key: Ed25519PublicKey) -> str:
    """``<name>+<hex key id>+<base64(0x01 || public key)>``: the key clients are configured with."""
    raw = _public_bytes(public_key)
    return f"{name}+{key_id(name, raw).hex()}+{_b64(bytes([SIG_TYPE_ED25519]) + raw)}"


def signer_key(name: str, private_key: Ed25519PrivateKey) -> str:
    """``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``: the secret to keep."""
    seed = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    kid = key_id(name, private_key.public_key())
    return f"{_PRIVATE_KEY_PREFIX}{name}+{kid.hex()}+{_b64(bytes([SIG_TYPE_ED25519]) + seed)}"


def generate_signer_key(name: str) -> tuple[str, str]:
    """A fresh Ed25519 key pair for ``name``: (signer key, verifier key)."""
    private_key = Ed25519PrivateKey.generate()
    return signer_key(name, private_key), verifier_key(name, private_key.public_key())


def _split_key(text: str, parts: int, what: str) -> list[str]:
    if not isinstance(text, str):
        raise NoteError(f"{what} must be a string")
    # Names and key ids hold no '+', but base64 key material may: split at the first ones only.
    fields = text.split("+", parts - 1)
    if len(fields) != parts:
        form = "name+keyid+key" if parts == 3 else "PRIVATE+KEY+name+keyid+key"
        raise NoteError(f"{what} must have the form {form}")
    return fields


def _parse_key_fields(name: str, kid_hex: str, key_b64: str, what: str) -> tuple[str, bytes, bytes]:
    _check_name(name)
    if not re.fullmatch(r"[0-9a-f]{8}", kid_hex):
        raise NoteError(f"{what} key id must be 8 lowercase hex digits, got {kid_hex!r}")
    material = _unb64(key_b64, f"{what} key")
    if len(material) != 1 + _ED25519_KEY_SIZE or material[0] != SIG_TYPE_ED25519:
        raise NoteError(f"{what} is not an Ed25519 key (0x01 followed by {_ED25519_KEY_SIZE} bytes)")
    return name, bytes.fromhex(kid_hex), material[1:]


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse ``<name>+<hex key id>+<base64(0x01 || public key)>``; the key id must match."""
    name, kid_hex, key_b64 = _split_key(vkey, 3, "verifier key")
    name, kid, raw = _parse_key_fields(name, kid_hex, key_b64, "verifier key")
    if key_id(name, raw) != kid:
        raise NoteError(f"verifier key id {kid.hex()} does not match name {name!r} and its public key "
                        f"(expected {key_id(name, raw).hex()})")
    return Verifier(name, kid, Ed25519PublicKey.from_public_bytes(raw))


def parse_signer_key(skey: str) -> Signer:
    """Parse ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || seed)>``; the key id must match."""
    fields = _split_key(skey, 5, "signer key")
    if fields[0] != "PRIVATE" or fields[1] != "KEY":
        raise NoteError("signer key must start with PRIVATE+KEY+")
    name, kid, seed = _parse_key_fields(fields[2], fields[3], fields[4], "signer key")
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    if key_id(name, private_key.public_key()) != kid:
        raise NoteError(f"signer key id {kid.hex()} does not match name {name!r} and its key")
    return Signer(name, kid, private_key)


def _check_note_text(text: object) -> str:
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteError("note text must be a string ending in a newline")
    _check_text_chars(text, "note text")
    return text


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The signed note: ``text``, a blank line and one Ed25519 signature line by ``name``."""
    _check_note_text(text)
    kid = key_id(name, private_key.public_key())
    signature = private_key.sign(text.encode("utf-8"))
    return f"{text}\n{SIGNATURE_PREFIX}{name} {_b64(kid + signature)}\n"


@dataclass(frozen=True)
class NoteSignature:
    """One signature line, not yet verified."""

    name: str
    key_id: bytes
    signature: bytes


@dataclass(frozen=True)
class ParsedNote:
    """A signed note split into its text and its (unverified) signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]


def parse_note(signed: str) -> ParsedNote:
    """Split a signed note into text and signature lines, checking the format only.

    The text is everything up to and including the newline before the last blank line;
    it MUST be ignored unless ``verify_note`` accepts the note.
    """
    if not isinstance(signed, str):
        raise NoteError("a signed note must be a string")
    _check_text_chars(signed, "signed note")
    split = signed.rfind("\n\n")
    if split < 0:
        raise NoteError("malformed note: no blank line between the text and the signatures")
    text, block = signed[: split + 1], signed[split + 2:]
    if not block.endswith("\n"):
        raise NoteError("malformed note: the signature lines must follow the blank line and end "
                        "in a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    signatures = []
    for number, line in enumerate(lines, 1):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"malformed note: signature line {number} does not start with "
                            f"an em dash and a space: {line!r:.80}")
        name, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
        try:
            _check_name(name)
        except NoteError as exc:
            raise NoteError(f"malformed note: signature line {number}: {exc}") from None
        if not encoded:
            raise NoteError(f"malformed note: signature line {number} has no signature")
        raw = _unb64(encoded, f"signature on line {number}")
        if len(raw) <= _KEY_ID_SIZE:
            raise NoteError(f"malformed note: signature on line {number} is too short")
        signatures.append(NoteSignature(name, raw[:_KEY_ID_SIZE], raw[_KEY_ID_SIZE:]))
    return ParsedNote(text, tuple(signatures))


def verify_note(signed: str, verifier_key: str | Verifier) -> str:
    """The text of ``signed`` once a signature by ``verifier_key`` verifies; else ``NoteError``.

    As c2sp.org/signed-note requires, signatures by other keys (other names, or the same
    name under another key id, e.g. witnesses' cosignatures or a rotated key) are ignored,
    and a signature by the key that does not verify rejects the whole note.
    """
    verifier = verifier_key if isinstance(verifier_key, Verifier) else parse_verifier_key(verifier_key)
    note = parse_note(signed)
    message = note.text.encode("utf-8")
    verified = False
    for sig in note.signatures:
        if sig.name != verifier.name or sig.key_id != verifier.key_id:
            continue
        label = f"{verifier.name}+{verifier.key_id.hex()}"
        if len(sig.signature) != _ED25519_SIGNATURE_SIZE:
            raise NoteError(f"invalid signature for key {label}: an Ed25519 signature is "
                            f"{_ED25519_SIGNATURE_SIZE} bytes, got {len(sig.signature)}")
        try:
            verifier.public_key.verify(sig.signature, message)
        except InvalidSignature:
            raise NoteError(f"invalid signature for key {label}: the note text or the "
                            f"signature was altered, or another key signed it") from None
        verified = True
    if verified:
        return note.text
    same_name = [sig.key_id.hex() for sig in note.signatures if sig.name == verifier.name]
    if same_name:
        raise NoteError(f"note is signed by {verifier.name!r} under key id {', '.join(same_name)}, "
                        f"not under the expected key id {verifier.key_id.hex()}")
    signers = sorted({sig.name for sig in note.signatures})
    raise NoteError(f"note is not signed by {verifier.name!r} (signed by: {', '.join(signers)})")


def note_digest(signed_note: str) -> bytes:
    """SHA-256 of the full signed note text (UTF-8): what the next checkpoint's ``prev`` holds."""
    return hashlib.sha256(signed_note.encode("utf-8")).digest()


def prev_extension(previous_signed_note: str) -> str:
    """The ``prev <base64 SHA-256>`` extension line chaining a checkpoint to its predecessor."""
    return f"{PREV_EXTENSION} {_b64(note_digest(previous_signed_note))}"


@dataclass(frozen=True)
class Checkpoint:
    """The body of a c2sp.org/tlog-checkpoint."""

    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...] = ()

    @property
    def prev(self) -> bytes | None:
        """The digest of the previous signed checkpoint, or None for the log's first checkpoint."""
        for line in self.extensions:
            if line.startswith(PREV_EXTENSION + " "):
                return _unb64(line[len(PREV_EXTENSION) + 1:], "prev extension")
        return None

    def text(self) -> str:
        """The note text of this checkpoint."""
        return format_checkpoint(self.origin, self.size, self.root, self.extensions)


def _check_line(line: object, what: str) -> str:
    if not isinstance(line, str) or not line or "\n" in line:
        raise NoteError(f"{what} must be a non-empty single line, got {line!r:.80}")
    _check_text_chars(line, what)
    return line


def format_checkpoint(origin: str, tree_size: int, root_hash: bytes,
                      extensions: Sequence[str] = ()) -> str:
    """The checkpoint note text: origin, decimal size, base64 root, then extension lines.

    Our log's extension is ``prev_extension(previous signed checkpoint)``; the log's very
    first checkpoint has no predecessor and therefore no ``prev`` line (rather than a
    made-up digest), so "no prev" means "the start of the chain". The origin must also be
    a valid key name, because the log signs with its origin as key name.
    """
    _check_name(origin)
    if not isinstance(tree_size, int) or isinstance(tree_size, bool) or tree_size < 0:
        raise NoteError(f"tree size must be a non-negative integer, got {tree_size!r}")
    if not isinstance(root_hash, bytes) or len(root_hash) != _HASH_SIZE:
        raise NoteError(f"root hash must be {_HASH_SIZE} bytes")
    lines = [origin, str(tree_size), _b64(root_hash)]
    lines += [_check_line(line, "extension line") for line in extensions]
    _check_prev(lines[3:])
    return "\n".join(lines) + "\n"


def _check_prev(extensions: Sequence[str]) -> None:
    prev = [line for line in extensions if line.split(" ", 1)[0] == PREV_EXTENSION]
    if len(prev) > 1:
        raise NoteError("a checkpoint has at most one prev extension line")
    if prev:
        if not prev[0].startswith(PREV_EXTENSION + " "):
            raise NoteError("the prev extension line is 'prev <base64 SHA-256>'")
        if len(_unb64(prev[0][len(PREV_EXTENSION) + 1:], "prev extension")) != _HASH_SIZE:
            raise NoteError(f"the prev extension holds a {_HASH_SIZE}-byte SHA-256 digest")


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse checkpoint note text (the verified text, not the signed note) or raise ``NoteError``.

    Checks the tlog-checkpoint rules (at least three non-empty lines, decimal size without
    leading zeroes, base64 32-byte root, non-empty extension lines) and our ``prev`` line.
    """
    if not isinstance(text, str) or not text.endswith("\n"):
        raise NoteError("checkpoint text must end in a newline")
    _check_text_chars(text, "checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteError("a checkpoint has at least three lines: origin, tree size, root hash")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise NoteError("checkpoint origin line is empty")
    if not _TREE_SIZE.fullmatch(size_text):
        raise NoteError(f"checkpoint tree size must be decimal without leading zeroes, got {size_text!r:.40}")
    root_hash = _unb64(root_text, "checkpoint root hash")
    if len(root_hash) != _HASH_SIZE:
        raise NoteError(f"checkpoint root hash must be {_HASH_SIZE} bytes, got {len(root_hash)}")
    for line in extensions:
        if not line:
            raise NoteError("checkpoint extension lines must be non-empty")
    _check_prev(extensions)
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))
