"""The platform's own keys, generated on first start into the data dir (0600) when absent.

- token signing keys (ES256 JWK set; the newest signs, all are published so that an old key
  keeps validating until its tokens expire),
- the evidence log's Ed25519 key,
- the AES-256 key that encrypts personal data at rest.

The last two cannot be replaced once data was written under them (the personal data would no
longer decrypt, and checkpoints signed with another key fork the evidence log), so their
fingerprints are kept in the database and compared at every start (`gateway.keyguard`), which
also asks for them not to be generated (`generate=False`) once the database holds data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from joserfc.jwk import ECKey, KeySet

from gateway.ids import new_id

# The longest access token's life (QUANLIAN_ACCESS_TOKEN_TTL is at most 600 s) and a minute for
# clocks: how long a superseded signing key stays published.
RETAIN_RETIRED_SECONDS = 600 + 60

# The names of the keys whose loss damages data, as `PlatformKeys.fingerprints` gives them.
DATA_KEY = "data-encryption"
EVIDENCE_KEY = "evidence-signing"
DATA_KEY_FILE = "data-encryption.key"
EVIDENCE_KEY_FILE = "evidence-ed25519.key"
# The data key's key-check value is an HMAC of this label: it shows which key is loaded
# without revealing it (nor any key derived from it for use, which take other labels).
_KEY_CHECK_LABEL = b"quanlian key check: personal-data encryption key"


class KeysMissing(FileNotFoundError):
    """Key files that `PlatformKeys(..., generate=False)` needed and did not find."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(", ".join(str(p) for p in paths) + " missing")
        self.paths = paths


def _write_secret(path: Path, data: bytes) -> None:
    """Create `path` holding `data`, readable by the owner only; FileExistsError if it exists.
    The file appears whole (written aside, then linked into place), so a process starting at
    the same moment never reads it empty or half written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, path)
    finally:
        os.unlink(tmp)


def _load_or_create(path: Path, make: Any) -> bytes:
    if path.exists() or make is None:
        return path.read_bytes()
    try:
        _write_secret(path, make())
    except FileExistsError:  # another process won the race; use its key
        pass
    return path.read_bytes()


class PlatformKeys:
    """Key material of one data dir."""

    def __init__(self, data_dir: Path, encryption_key: str | None = None, *,
                 generate: bool = True) -> None:
        """Load the keys of `data_dir` (the data key from `encryption_key` when given). Absent
        keys are generated, except with `generate=False`: then a missing data or evidence key
        raises `KeysMissing` before any file is written (token signing keys are generated
        either way: they only sign tokens that live minutes)."""
        self.dir = Path(data_dir) / "keys"
        evidence_path = self.dir / EVIDENCE_KEY_FILE
        data_path = None if encryption_key else self.dir / DATA_KEY_FILE
        if not generate:
            missing = [p for p in (evidence_path, data_path) if p is not None and not p.exists()]
            if missing:
                raise KeysMissing(missing)
        self._lock = threading.Lock()
        self._signing_path = self.dir / "signing-keys.json"
        raw = _load_or_create(self._signing_path, lambda: json.dumps(
            {"keys": [self._new_signing_key()]}).encode())
        self._signing = json.loads(raw)
        self._signing_file = str(self._signing_path)
        self._signing_mtime = self._signing_path.stat().st_mtime_ns
        self._signing_checked = time.monotonic()
        self._active: tuple[dict[str, Any], ECKey] | None = None
        make_seed = (lambda: base64.b64encode(os.urandom(32))) if generate else None
        seed = _load_or_create(evidence_path, make_seed)
        self.evidence_key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed))
        if data_path is None:
            dek = base64.b64decode(encryption_key or "")
        else:
            dek = base64.b64decode(_load_or_create(data_path, make_seed))
        if len(dek) != 32:
            raise ValueError("the data encryption key must be 32 bytes (base64)")
        self.data_key = AESGCM(dek)
        public = self.evidence_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.fingerprints = {
            DATA_KEY: hmac.new(dek, _KEY_CHECK_LABEL, hashlib.sha256).hexdigest(),
            EVIDENCE_KEY: hashlib.sha256(public).hexdigest(),
        }
        # Where each of those keys came from, for an operator reading a refusal.
        self.sources = {DATA_KEY: str(data_path) if data_path else "QUANLIAN_ENCRYPTION_KEY",
                        EVIDENCE_KEY: str(evidence_path)}

    @staticmethod
    def _new_signing_key() -> dict[str, Any]:
        key = ECKey.generate_key("P-256", parameters={"kid": new_id("key"), "alg": "ES256",
                                                      "use": "sig"}, private=True)
        return key.as_dict(private=True)

    def _current_signing(self, *, fresh: bool = False) -> dict[str, Any]:
        """The signing key set, re-read when the file changed (`quanlian keys rotate` in
        another process), so that every server process signs with the newest key and accepts
        tokens signed with it. Looked at no more than once a second unless `fresh` (a token
        with an unknown `kid` asks at once)."""
        now = time.monotonic()
        if not fresh and now - self._signing_checked < 1.0:
            return self._signing
        self._signing_checked = now
        try:
            mtime = os.stat(self._signing_file).st_mtime_ns
        except FileNotFoundError:
            return self._signing
        if mtime != self._signing_mtime:
            with self._lock:
                if mtime != self._signing_mtime:
                    self._signing = json.loads(self._signing_path.read_bytes())
                    self._active = None
                    self._signing_mtime = mtime
        return self._signing

    @property
    def signing_keys(self) -> KeySet:
        return KeySet.import_key_set(self._current_signing(fresh=True))

    @property
    def active_signing_key(self) -> ECKey:
        # Parsed once per key set: importing a private key costs as much as a signature.
        signing = self._current_signing()
        active = self._active
        if active is None or active[0] is not signing:
            active = (signing, ECKey.import_key(signing["keys"][-1]))
            self._active = active
        return active[1]

    def public_jwks(self) -> dict[str, Any]:
        return {"keys": [ECKey.import_key(k).as_dict(private=False) | {"alg": "ES256",
                                                                      "use": "sig"}
                         for k in self._current_signing()["keys"]]}

    def rotate_signing_key(self) -> str:
        """Add a new active key. A superseded key stays published until every token it signed
        has expired (`RETAIN_RETIRED_SECONDS` after it was superseded), however often keys
        rotate in between; then it is dropped."""
        with self._lock:
            current = json.loads(self._signing_path.read_bytes())
            now = time.time()
            retired = {kid: float(at) for kid, at in current.get("retired", {}).items()}
            for key in current["keys"]:  # the active key is superseded now
                retired.setdefault(key["kid"], now)
            keys = [k for k in current["keys"] if now - retired[k["kid"]] < RETAIN_RETIRED_SECONDS]
            keys.append(self._new_signing_key())
            self._signing = {"keys": keys, "retired": {
                k["kid"]: retired[k["kid"]] for k in keys if k["kid"] in retired}}
            self._active = None
            tmp = self._signing_path.with_suffix(".tmp")
            if tmp.exists():
                tmp.unlink()
            _write_secret(tmp, json.dumps(self._signing).encode())
            tmp.replace(self._signing_path)
            self._signing_mtime = self._signing_path.stat().st_mtime_ns
            return str(self._signing["keys"][-1]["kid"])
