"""Query parameters the API's routes do not take are refused, not ignored (QA F-04).

A misspelt filter (`?account=` for `?account_id=`, `?state=` for `?status=`) used to return the
unfiltered list, and a partner reconciling from it had no error to see; a single-valued
parameter sent twice (`?limit=1&limit=3`) silently took the last value. Both are now a 422
`validation_failed` among the request's other field errors, each on `query.<name>` with the code
`unknown_parameter` or `repeated_parameter` (a parameter declared as a list may repeat).

Which names a route takes is read once per route from FastAPI's record of its parameters (the
route's own and those of every dependency it runs, `Dependant.dependencies`, with their aliases);
a request pays for a set look-up per parameter it sends, and nothing when it sends none.

Only the API's routes are strict, by path (`STRICT_PREFIXES`: `/v1/…`, `/sandbox/…`). Left as
they were, so that no client that works today breaks for nothing it gains:
- HTML pages (the console, `/apply`, the hosted checkout): a browser, a bookmark or a marketing
  link may carry anything (`?utm_source=`), and a page answers a person, not a JSON problem;
- `/docs`, `/openapi.json`, `/.well-known/…`, `/oauth/jwks`, `/healthz`, `/readyz`, `/metrics`:
  documents and probes that read no parameter, fetched by libraries, load balancers and
  scrapers that may add their own (a cache buster, Prometheus's `params`);
- the OAuth endpoints (`/oauth/token`, `/introspect`, `/revoke`): they read a form, never the
  query, and RFC 6749 (3.2) has an authorization server ignore parameters it does not know;
  its refusals are 400s with `error`, which a 422 would not be.
"""

from __future__ import annotations

import difflib
from typing import Any, NamedTuple

from fastapi._compat import field_annotation_is_sequence
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import _get_flat_fields_from_params, _get_param_aliases
from starlette.datastructures import QueryParams

STRICT_PREFIXES = ("/v1/", "/sandbox/")

# A request naming more unknown parameters than this is told about the first ones only: the
# answer stays small whatever the query's length.
_AT_MOST = 20


class Declared(NamedTuple):
    """The query parameters a route takes: each by every name it may be sent under."""

    single: frozenset[str]  # one value each
    lists: frozenset[str]  # may be sent more than once
    names: frozenset[str]  # both


def declared(dependant: Dependant) -> Declared | None:
    """The query parameters a route's dependant takes, its dependencies' included; None for a
    route outside `STRICT_PREFIXES`, which takes any."""
    if not (dependant.path or "").startswith(STRICT_PREFIXES):
        return None
    single: set[str] = set()
    lists: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        # A parameter model (`Annotated[Model, Query()]`) stands for its fields.
        for field in _get_flat_fields_from_params(current.query_params):
            names = {key for _, key in _get_param_aliases(field)}
            sequence = field_annotation_is_sequence(field.field_info.annotation)
            (lists if sequence else single).update(names)
        stack.extend(current.dependencies)
    return Declared(frozenset(single - lists), frozenset(lists), frozenset(single | lists))


def refused(taken: Declared, query: QueryParams) -> list[dict[str, Any]]:
    """The request's unknown and repeated query parameters, as validation errors shaped as
    pydantic's (`gateway.errors.validation_problem` words and places them)."""
    pairs = query.multi_items()
    if len(pairs) == len(query) and taken.names.issuperset(query.keys()):
        return []  # every name known, none repeated: what nearly every call sends
    errors: list[dict[str, Any]] = []
    known = sorted(taken.names)
    for name in dict.fromkeys(name for name, _ in pairs):  # each once, in the order sent
        if len(errors) == _AT_MOST:
            break
        if name in taken.lists:
            continue
        if name in taken.single:
            count = len(query.getlist(name))
            if count > 1:
                errors.append({"type": "repeated_parameter", "loc": ("query", name),
                               "msg": f"Sent {count} times; this parameter takes one value.",
                               "input": query.getlist(name)})
            continue
        errors.append({"type": "unknown_parameter", "loc": ("query", name),
                       "msg": _unknown(name, known), "input": query[name]})
    return errors


def _unknown(name: str, known: list[str]) -> str:
    if not known:
        return "Unknown query parameter: this call takes none."
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6) if len(name) <= 64 else []
    hint = f" Did you mean {close[0]}?" if close else ""
    return f"Unknown query parameter.{hint} This call takes {', '.join(known)}."
