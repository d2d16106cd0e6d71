"""Resource-side authentication: who is calling, with which scopes (RFC 6750 / RFC 9449).

Every protected route declares `Depends(require_scope("product:access"))`. The token's
signature is checked once and remembered (gateway.oauth.tokens); revocation, the client's
status and the partner's status are read on every call, so suspending a partner or revoking
a token takes effect on the very next call in every process.

The check runs on the event loop: the status read is one statement on the process's own
autocommit connection (`Database.read_one`, which never waits for a writer), so a thread
hand-off would cost more than the work. Only a DPoP proof goes to a worker thread: its
single-use `jti` is a write, which on SQLite may queue behind another request's transaction.

A refused authentication (401) counts against the caller's address; an address that has used
up its failures gets 429 for its further refused calls (gateway.ratelimit). So does a call
without a valid access token that no route takes (an unknown path, or a method the path does not
allow), under the recorded prefixes (`count_call_of_nobody`): a refused call of nobody, which the
evidence log would otherwise keep without limit.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

import anyio
from fastapi import Request

from gateway.context import state
from gateway.errors import Problem
from gateway.evidence.recorder import RECORDED_PREFIXES
from gateway.oauth.dpop import DPOP_ALGORITHMS, DPoPInvalid
from gateway.oauth.tokens import TokenInvalid
from gateway.tenancy import Principal, partner_states, remember_facts

# With the caller's status, its tenant's environment and test clock, which nearly every
# business call asks for (`gateway.tenancy.clock_for`): one round trip less for those calls.
STATUS_SQL = (
    "SELECT c.status, c.tenant_id, c.partner_id, c.environment, c.require_dpop, p.status, "
    "p.is_operations, c.rate_plan, (SELECT count(*) FROM revoked_tokens r WHERE r.jti = :jti), "
    "t.environment, t.clock_offset_seconds "
    "FROM oauth_clients c JOIN partners p ON p.id = c.partner_id "
    "JOIN tenants t ON t.id = c.tenant_id WHERE c.id = :cid"
)


class InvalidToken(Problem):
    status, code, title = 401, "invalid_token", "Invalid access token"


class InsufficientScope(Problem):
    status, code, title = 403, "insufficient_scope", "Insufficient scope"


def _challenge(scheme: str, error: str | None = None, description: str | None = None,
               scope: str | None = None) -> str:
    parts = []
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="' + description.replace('"', "'") + '"')
    if scope:
        parts.append(f'scope="{scope}"')
    if scheme == "DPoP":
        parts.append(f'algs="{DPOP_ALGORITHMS}"')
    return scheme + (" " + ", ".join(parts) if parts else "")


def _refuse(description: str, *, scheme: str = "Bearer", error: str = "invalid_token",
            status: int = 401) -> Problem:
    cls = InvalidToken if status == 401 else Problem
    title = "Invalid DPoP proof" if error == "invalid_dpop_proof" else None
    problem = cls(description, status=status, code=error, title=title)
    challenges = [_challenge(scheme, error, description)]
    if scheme == "Bearer":
        challenges.append(_challenge("DPoP"))
    problem.headers["WWW-Authenticate"] = ", ".join(challenges)
    return problem


def _unauthenticated(description: str) -> Problem:
    """The 401 for a call without an access token: challenges without an error code."""
    problem = InvalidToken(description, code="unauthorized")
    problem.headers["WWW-Authenticate"] = _challenge("Bearer") + ", " + _challenge("DPoP")
    return problem


def _count_refusal(request: Request) -> None:
    """Count a refused authentication (401) against the caller's address; once the address
    has used up its failures (QUANLIAN_AUTH_FAILURE_LIMITS) this raises 429 instead. Only a
    refused token pays, after it was checked: a valid token is served whatever its address's
    count, so a partner's server behind the same NAT as a guesser keeps working."""
    limiter = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.count_auth_failure(request)


def _holds_valid_token(request: Request) -> bool:
    """Whether the call carries one access token issued here and not expired. Its signature is
    checked once and remembered (gateway.oauth.tokens), so for a partner's token this is a
    dictionary read: no database, no DPoP proof (whose single-use `jti` is a write). A token
    revoked within its lifetime (at most 10 minutes) still passes; everything a guesser can
    make (no header, another scheme, a forged or expired token) does not."""
    headers = request.headers.getlist("authorization")
    if len(headers) != 1:
        return False
    scheme, _, token = headers[0].partition(" ")
    token = token.strip()
    if scheme.strip().lower() not in ("bearer", "dpop") or not token:
        return False
    try:
        request.app.state.tokens.verify(token)
    except TokenInvalid:
        return False
    return True


def count_call_of_nobody(request: Request) -> None:
    """A call the router turned away (no route has its path, or none of them its method:
    gateway.errors), under the recorded prefixes, without a valid access token, counts as a
    refused authentication for its address; once the address has used up its failures this
    raises that 429 instead. Without it a scanner probing `/v1/admin` or `/v1/.env` appends
    evidence entries (database writes) without limit. A valid token's caller is not counted."""
    if request.scope["path"].startswith(RECORDED_PREFIXES) and not _holds_valid_token(request):
        _count_refusal(request)


async def authenticate(request: Request) -> Principal:
    """Check the access token (and DPoP proof) of a request and return its principal."""
    st = state(request)
    cached = st.get("principal")
    if cached is not None:
        return cached
    # Inline (not a wrapper coroutine): the `try` costs a valid call nothing.
    try:
        app = request.app
        # Parse the query only when it could name a token (literally or percent-encoded): most
        # calls have no query to parse.
        query = request.scope.get("query_string", b"")
        if ((b"access_token" in query or b"%" in query)
                and "access_token" in request.query_params):
            raise _refuse("Access tokens are not accepted in the query string.",
                          error="invalid_request", status=400)
        headers = request.headers.getlist("authorization")
        if not headers:
            raise _unauthenticated("This call needs an access token.")
        if len(headers) > 1:
            raise _refuse("Send one Authorization header.", error="invalid_request", status=400)
        scheme, _, token = headers[0].partition(" ")
        scheme = scheme.strip()
        token = token.strip()
        if scheme.lower() not in ("bearer", "dpop"):
            # Credentials of another scheme (Basic, say) are no access token: the plain
            # challenge, naming the schemes that are (RFC 6750, 3.1; RFC 9110, 11.6.1).
            raise _unauthenticated("This call needs an access token: use the Bearer or DPoP "
                                   "authorization scheme.")
        if not token:
            raise _refuse("Use the Bearer or DPoP authorization scheme with a token.",
                          error="invalid_request", status=400)
        is_dpop = scheme.lower() == "dpop"
        shown = "DPoP" if is_dpop else "Bearer"
        try:
            claims = app.state.tokens.verify(token)
        except TokenInvalid as exc:
            raise _refuse(str(exc), scheme=shown) from None

        jkt = (claims.get("cnf") or {}).get("jkt")
        proofs = request.headers.getlist("dpop")
        if jkt:
            if not is_dpop:
                raise _refuse("This token is bound to a key: use the DPoP scheme with a proof.",
                              scheme="DPoP")
            if len(proofs) != 1:
                raise _refuse("Send exactly one DPoP proof.", scheme="DPoP",
                              error="invalid_dpop_proof")
            scope = request.scope
            # The path as sent (percent-encoded), as the client signed it; `path` is decoded.
            raw = scope.get("raw_path")
            path = raw.decode("latin-1") if raw else scope.get("root_path", "") + scope["path"]
            url = app.state.settings.issuer.rstrip("/") + path
            try:
                proved = await anyio.to_thread.run_sync(partial(
                    app.state.oauth.dpop.verify, proofs[0], method=request.method, url=url,
                    access_token=token))
            except DPoPInvalid as exc:
                raise _refuse(str(exc), scheme="DPoP", error="invalid_dpop_proof") from None
            if proved != jkt:
                raise _refuse("The DPoP proof's key is not the key the token is bound to.",
                              scheme="DPoP", error="invalid_dpop_proof")
        elif is_dpop:
            raise _refuse("This token is not DPoP-bound: use the Bearer scheme.")

        row = app.state.database.read_one(STATUS_SQL, {"jti": claims["jti"],
                                                       "cid": claims["client_id"]})
        if row is None:
            raise _refuse("The client of this token no longer exists.", scheme=shown)
        (client_status, tenant_id, partner_id, environment, require_dpop, partner_status,
         is_operations, rate_plan, revoked, tenant_environment, clock_offset) = row
        if revoked:
            raise _refuse("The access token has been revoked.", scheme=shown)
        if client_status != "active":
            raise _refuse("The client of this token has been revoked.", scheme=shown)
        if partner_status not in partner_states(environment):
            raise _refuse("The partner of this token is not active.", scheme=shown)
        if require_dpop and not jkt:
            raise _refuse("This client must use DPoP-bound tokens.", scheme="DPoP")
    except InvalidToken:
        _count_refusal(request)
        raise
    principal = Principal(
        client_id=claims["client_id"], partner_id=partner_id, tenant_id=tenant_id,
        environment=environment, scopes=frozenset(claims["scope"].split()),
        token_id=claims["jti"], expires_at=claims["exp"], is_operations=bool(is_operations),
        rate_plan=rate_plan,
    )
    st["principal"] = principal
    remember_facts(st, tenant_id, tenant_environment, clock_offset)
    limiter = getattr(app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check_client(request, principal)
    return principal


def require_scope(*scopes: str) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: the caller must hold every listed scope."""
    needed = " ".join(scopes)

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        missing = [s for s in scopes if s not in principal.scopes]
        if missing:
            problem = InsufficientScope(f"This call needs the scope(s): {needed}.")
            scheme = "DPoP" if request.headers.get("authorization", "").lower().startswith(
                "dpop") else "Bearer"
            problem.headers["WWW-Authenticate"] = _challenge(scheme, "insufficient_scope",
                                                             None, needed)
            raise problem
        return principal

    dependency.__name__ = "require_" + "_".join(s.replace(":", "_") for s in scopes)
    dependency.required_scopes = scopes  # type: ignore[attr-defined]  # for the document
    return dependency


def require_operations(write: bool = False) -> Callable[[Request], Awaitable[Principal]]:
    """Bank operations routes: an operations credential, never a partner's."""
    inner = require_scope("operations:write" if write else "operations:read")

    async def dependency(request: Request) -> Principal:
        principal = await inner(request)
        if not principal.is_operations:
            raise Problem("This call needs a bank operations credential.", status=403,
                          code="operations_only", title="Forbidden")
        return principal

    dependency.required_scopes = inner.required_scopes  # type: ignore[attr-defined]
    return dependency


def documented_security(calls: Iterable[Any]) -> list[dict[str, list[str]]] | None:
    """The OpenAPI security requirement of an operation whose dependencies (`calls`)
    authenticate the caller: the `oauth2` scheme with the scopes they require; None for a
    public operation. The dependencies read the `Authorization` header themselves (to answer
    RFC 6750 problems), so FastAPI does not know to document it."""
    scopes: set[str] = set()
    any_of: tuple[str, ...] = ()
    authenticated = False
    for call in calls:
        required = getattr(call, "required_scopes", None)
        if call is authenticate or required is not None:
            authenticated = True
            scopes.update(required or ())
        any_of = getattr(call, "any_of_scopes", None) or any_of
    if not authenticated:
        return None
    if any_of:  # alternatives: OpenAPI's list of requirements, any one of which will do
        return [{"oauth2": sorted(scopes | {scope})} for scope in any_of]
    return [{"oauth2": sorted(scopes)}]
