"""Proactive content negotiation by `Accept` (RFC 9110 §12.5.1), in one place.

A route that offers one resource in several media types (a receipt as JSON or PDF, a
statement as CSV or JSON) names them, its documented default first, and asks `negotiate`
which to send:

- Media types are case-insensitive (§8.3.1); parameters of a media range other than `q` are
  ignored (the offered types carry none).
- `q=0` means "not acceptable"; a higher q wins. Between equal q, the more specific range
  (`text/csv` over `text/*` over `*/*`), then the range the client listed first, then the
  route's own order (its default first).
- No `Accept` (or an empty one) accepts anything: the route's default. So does `*/*`.
- Nothing offered is acceptable: a 406 `not_acceptable` problem listing what is offered.
  A range with a malformed q-value is left out, as if not sent.

Each such response depends on `Accept`: send `VARY` (`Vary: Accept`, §12.5.5) with it, so that
a shared cache never hands a PDF to a client that asked for JSON.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.datastructures import Headers

from gateway.errors import Problem

VARY = {"Vary": "Accept"}

_QVALUE = re.compile(r"(?:0(?:\.\d{0,3})?|1(?:\.0{0,3})?)")


class NotAcceptable(Problem):
    status, code, title = 406, "not_acceptable", "None of the acceptable media types is offered"


def _ranges(accept: str) -> list[tuple[str, str, float, int]]:
    """(type, subtype, q, position) of each well-formed media range of an Accept value."""
    out = []
    for position, item in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        kind, slash, sub = media.lower().partition("/")
        if not slash or not kind or not sub or (kind == "*" and sub != "*"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                value = value.strip()
                if not _QVALUE.fullmatch(value):
                    break
                q = float(value)
        else:
            out.append((kind, sub, q, position))
    return out


def choose(accept: str | None, offered: Sequence[str]) -> str | None:
    """The offered media type `accept` prefers (see the module docstring); None when none is
    acceptable. `offered` is in the route's order, its default first."""
    if not offered:
        raise ValueError("offer at least one media type")
    if accept is None or not accept.strip():
        return offered[0]
    ranges = _ranges(accept)
    best: tuple[float, int, int, int] | None = None
    chosen = None
    for rank, media_type in enumerate(offered):
        kind, _, sub = media_type.lower().partition("/")
        # The most specific range that matches this type decides its q (RFC 9110 §12.5.1).
        match = None
        for r_kind, r_sub, q, position in ranges:
            specificity = 2 if (r_kind, r_sub) == (kind, sub) else 1 if (
                r_kind == kind and r_sub == "*") else 0 if r_kind == "*" else -1
            if specificity < 0:
                continue
            key = (specificity, -position)
            if match is None or key > match[0]:
                match = (key, q)
        if match is None or match[1] <= 0:
            continue
        (specificity, neg_position), q = match
        score = (q, specificity, neg_position, -rank)
        if best is None or score > best:
            best, chosen = score, media_type
    return chosen


def accept_of(headers: Headers) -> str | None:
    """A request's Accept value: several Accept header lines are one comma-separated list."""
    values = headers.getlist("accept")
    return ", ".join(values) if values else None


def negotiate(accept: str | None, offered: Sequence[str]) -> str:
    """`choose`, or a 406 problem (with `Vary: Accept`) when nothing offered is acceptable."""
    chosen = choose(accept, offered)
    if chosen is None:
        raise NotAcceptable(
            "This resource is available as " + " or ".join(offered) + "; the Accept header "
            "accepts none of them.", headers=dict(VARY), extra={"available": list(offered)})
    return chosen
