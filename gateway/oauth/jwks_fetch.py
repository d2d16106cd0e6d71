"""Requests to partners' URLs, and fetching a client's JWKS from its `jwks_uri`.

Partners' URLs (a `jwks_uri`, a webhook endpoint) are reached only on public addresses in
production (`check_public_url`), and on the address that was checked (`pinned`): a host name
resolved again at connection time could answer with another address (DNS rebinding).

A JWKS is cached, refetched on an unknown `kid` or, for an assertion without a `kid` that no
cached key verifies, on a failed signature (each at most once per
UNKNOWN_KID_REFETCH_INTERVAL per URI)."""

from __future__ import annotations

import ipaddress
import json
import math
import socket
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from gateway.errors import ValidationFailed

# A client that rotates in a new key uses it at once, so an unknown `kid` refetches the set;
# but assertions with made-up kids (an attacker's, or a broken client's) must not make the
# platform fetch the partner's endpoint on every request. Seconds between such refetches.
UNKNOWN_KID_REFETCH_INTERVAL = 60.0
# A key set of a few dozen keys is a few tens of KB.
MAX_JWKS_BYTES = 256 * 1024


class UnsafeURL(ValueError):
    pass


# NAT64's well-known prefix (RFC 6052): the last 32 bits are an IPv4 address it reaches.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public(address: str) -> bool:
    """Whether an address is on the public internet: globally reachable (so not private,
    loopback, link-local, shared 100.64.0.0/10, benchmarking or documentation space), not
    multicast or reserved. An IPv6 address that carries an IPv4 one (mapped, 6to4, Teredo,
    NAT64) is judged by the IPv4 address it reaches; IPv6 site-local fec0::/10 is refused."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scope id names an interface
    if isinstance(ip, ipaddress.IPv6Address):
        carried = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if carried is None and ip in _NAT64:
            carried = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if carried is not None:
            ip = carried
        elif ip.is_site_local:
            return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def check_public_url(url: str, *, require_https: bool = True) -> list[str]:
    """Resolve a URL's host and refuse it unless every address is public. Returns the addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise UnsafeURL("the URL must be absolute http(s)")
    if require_https and parts.scheme != "https":
        raise UnsafeURL("the URL must use https")
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https"
                                                                   else 80))
    except (socket.gaierror, UnicodeError):
        raise UnsafeURL("the host name does not resolve") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if not addresses or not all(_is_public(a) for a in addresses):
        raise UnsafeURL("the URL points at a private, loopback or link-local address")
    return addresses


def pinned(url: str, production: bool) -> tuple[httpx.URL, dict[str, str], dict[str, Any]]:
    """Resolve and check the host now; the URL to connect to a checked address, with the Host
    header and TLS server name (SNI) of the original, so the certificate is checked for it."""
    addresses = check_public_url(url, require_https=production)
    target = httpx.URL(url)
    host = urlsplit(url).hostname or ""
    return (target.copy_with(host=addresses[0]), {"host": target.netloc.decode("ascii")},
            {"sni_hostname": host} if target.scheme == "https" else {})


_ssl_context: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """A verifying TLS context that ignores proxy and CA settings of the environment; built once
    per process (it loads the CA bundle, about 20 ms)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = httpx.create_ssl_context(trust_env=False)
    return _ssl_context


def validate_url_setting(url: str, *, production: bool, allow_loopback: bool) -> None:
    """Validation used when a URL is registered (jwks_uri, webhook endpoint)."""
    if production or not allow_loopback:
        try:
            check_public_url(url, require_https=production)
        except UnsafeURL as exc:
            raise ValidationFailed(f"URL refused: {exc}.", code="unsafe_url") from None


class JWKSCache:
    def __init__(self, *, allow_private: bool, ttl: float = 300.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.allow_private = allow_private
        self.ttl = ttl
        self.transport = transport
        self._cache: dict[tuple[str, bool], tuple[float, dict[str, Any]]] = {}
        # When each URI was last refetched for an unknown kid (see UNKNOWN_KID_REFETCH_INTERVAL).
        self._kid_refetched: dict[tuple[str, bool], float] = {}
        self._lock = threading.Lock()

    def get(self, uri: str, kid: str | None, *, production: bool) -> dict[str, Any]:
        # Keyed by environment too: keys fetched for a sandbox client (perhaps from loopback,
        # or over http) must never serve a production client with the same URI. So every
        # production use, cached or not, has keys fetched under production's address check.
        entry = (uri, production)
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(entry)
            if cached and now - cached[0] < self.ttl:
                kids = {k.get("kid") for k in cached[1].get("keys", [])}
                if kid is None or kid in kids or not self._may_refetch(entry, now):
                    return cached[1]  # an unknown kid then finds no key and is refused
        jwks = self._fetch(uri, production=production)
        with self._lock:
            self._cache[entry] = (now, jwks)
        return jwks

    def refresh(self, uri: str, *, production: bool) -> dict[str, Any] | None:
        """The set fetched again, for an assertion without a `kid` that no cached key verifies
        (a client that rotated in a new key, signing with a library that sends no `kid`);
        None when the URI was refetched within UNKNOWN_KID_REFETCH_INTERVAL."""
        entry = (uri, production)
        now = time.monotonic()
        with self._lock:
            if not self._may_refetch(entry, now):
                return None
        jwks = self._fetch(uri, production=production)
        with self._lock:
            self._cache[entry] = (now, jwks)
        return jwks

    def _may_refetch(self, entry: tuple[str, bool], now: float) -> bool:
        """Whether an unknown kid may refetch `entry` now; if so the refetch is recorded at
        once (under the lock), so concurrent requests with unknown kids do not all fetch."""
        if now - self._kid_refetched.get(entry, -math.inf) < UNKNOWN_KID_REFETCH_INTERVAL:
            return False
        self._kid_refetched[entry] = now
        return True

    def _fetch(self, uri: str, *, production: bool) -> dict[str, Any]:
        url: str | httpx.URL = uri
        headers = {"accept": "application/json"}
        extensions: dict[str, Any] = {}
        if production or not self.allow_private:
            url, host, extensions = pinned(uri, production)
            headers.update(host)
        # No proxy or .netrc from the environment; a body no larger than a key set needs.
        with httpx.Client(timeout=5.0, follow_redirects=False, trust_env=False,
                          verify=tls_context(), transport=self.transport) as http:
            request = http.build_request("GET", url, headers=headers, extensions=extensions)
            response = http.send(request, stream=True)
            try:
                response.raise_for_status()
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError(f"jwks_uri answered more than {MAX_JWKS_BYTES} bytes")
            finally:
                response.close()
        data = json.loads(body)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("jwks_uri did not return a JWK set")
        return data
