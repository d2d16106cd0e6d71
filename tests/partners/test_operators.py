"""Operators: password hashing, login with CSRF, cookies, lockout, TOTP, sessions, the CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyotp
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from gateway import clock as clock_module
from gateway.events import Event
from partners.models import Operator
from tests.partners.helpers import PASSWORD, ConsoleUser, apply, console_user, csrf_of, make_operator
from tests.tools.api import make_app


@pytest.fixture
def manual_clock():  # type: ignore[no-untyped-def]
    """The base clock under the test's control (restored afterwards)."""
    previous = clock_module.base_clock()
    manual = clock_module.ManualClock(datetime.now(UTC))
    clock_module.set_base_clock(manual)
    yield manual
    clock_module.set_base_clock(previous)


def test_passwords_are_hashed_with_argon2id(app, http):
    from argon2 import PasswordHasher

    from partners.settings import PartnerSettings, get_partner_settings

    # the default is RFC 9106's 64 MiB profile (these tests run with less: see conftest)
    assert PartnerSettings.model_fields["password_hash_memory_kib"].default == 65536
    memory = get_partner_settings().password_hash_memory_kib
    make_operator(app, "ada", ["admin"])
    with app.state.database.transaction() as s:
        operator = s.scalars(select(Operator)).one()
        assert operator.password_hash.startswith("$argon2id$")
        assert f"m={memory}," in operator.password_hash and PASSWORD not in operator.password_hash
        # a hash made with other parameters is upgraded at the next successful login
        operator.password_hash = PasswordHasher(memory_cost=memory * 2).hash(PASSWORD)
    assert ConsoleUser(http, "ada").login().status_code == 303
    with app.state.database.transaction() as s:
        assert f"m={memory}," in s.scalars(select(Operator)).one().password_hash


def test_weak_passwords_and_bad_roles_are_refused(app):
    from gateway.errors import Problem
    from partners.operators import create_operator

    for username, password, roles in [("ada", "short", ["admin"]),
                                      ("ada", "ada-is-my-password-1", ["admin"]),
                                      ("ada", "aaaaaaaaaaaaaaaa", ["admin"]),
                                      ("ada", PASSWORD, ["superuser"]),
                                      ("ada", PASSWORD, []),
                                      ("Not A Name!", PASSWORD, ["admin"])]:
        with pytest.raises(Problem), app.state.database.transaction() as s:
            create_operator(s, username=username, display_name="", roles=roles,
                            password=password)
    make_operator(app, "ada", ["admin"])
    with pytest.raises(Problem) as exc, app.state.database.transaction() as s:
        create_operator(s, username="ADA", display_name="", roles=["admin"], password=PASSWORD)
    assert exc.value.code == "operator_exists"


def test_console_requires_login(app, http):
    for path in ["/console", "/console/applications", "/console/partners/ptn_x"]:
        response = http.get(path, follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login?next=")
    post = http.post("/console/partners/ptn_x/transitions", data={"action": "review"},
                     follow_redirects=False)
    assert post.status_code == 303


def test_login_sets_strict_http_only_cookies(app, http):
    make_operator(app, "ada", ["admin"])
    user = ConsoleUser(http, "ada")
    page = http.get("/console/login")
    login_cookie = page.headers["set-cookie"]
    assert "HttpOnly" in login_cookie and "SameSite=strict" in login_cookie.replace("Strict", "strict")
    assert "Secure" not in login_cookie  # the issuer is http://testserver
    response = user.login()
    assert response.status_code == 303
    cookies = response.headers.get_list("set-cookie")
    session_cookie = next(c for c in cookies if c.startswith("quanlian_console="))
    assert "HttpOnly" in session_cookie and "Path=/console" in session_cookie
    assert "samesite=strict" in session_cookie.lower() and "Secure" not in session_cookie
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]


def test_cookies_are_secure_when_the_issuer_is_https(database, tmp_path):
    app = make_app(database, tmp_path, issuer="https://api.quanlian.example")
    make_operator(app, "ada", ["admin"])
    with TestClient(app, base_url="https://api.quanlian.example") as http:
        page = http.get("/console/login")
        assert "Secure" in page.headers["set-cookie"]
        response = http.post("/console/login", data={
            "username": "ada", "password": PASSWORD, "csrf_token": csrf_of(page.text)},
            follow_redirects=False)
        assert response.status_code == 303
        session_cookie = next(c for c in response.headers.get_list("set-cookie")
                              if c.startswith("quanlian_console="))
        assert "Secure" in session_cookie and "HttpOnly" in session_cookie


def test_login_csrf_and_origin_are_checked(app, http):
    make_operator(app, "ada", ["admin"])
    page = http.get("/console/login")
    forged = http.post("/console/login", data={"username": "ada", "password": PASSWORD,
                                               "csrf_token": "guess"}, follow_redirects=False)
    assert forged.status_code == 403
    cross = http.post("/console/login", data={"username": "ada", "password": PASSWORD,
                                              "csrf_token": csrf_of(page.text)},
                      headers={"origin": "https://evil.example"}, follow_redirects=False)
    assert cross.status_code == 403
    assert not any(c.startswith("quanlian_console=") for c in cross.headers.get_list("set-cookie"))


def test_forms_after_login_need_the_session_csrf_token(app, http):
    admin = console_user(app, "ada", ["admin"])
    applied = apply(http)
    pid = applied["partner_id"]
    admin.get(f"/console/partners/{pid}")
    for csrf in ("", "not-the-token"):
        response = admin.post(f"/console/partners/{pid}/transitions",
                              {"action": "review", "reason": "ok"}, csrf=csrf)
        assert response.status_code == 403 and "csrf_failed" in response.text
    cross = admin.post(f"/console/partners/{pid}/transitions", {"action": "review", "reason": "x"},
                       headers={"origin": "https://evil.example"})
    assert cross.status_code == 403
    from tests.partners.helpers import partner_status

    assert partner_status(app, pid) == "submitted"
    assert admin.transition(pid, "review", "ok").status_code == 303


def test_lockout_after_repeated_failures(app, manual_clock):
    make_operator(app, "ada", ["admin"])
    user = ConsoleUser(TestClient(app), "ada")
    for _ in range(4):
        assert user.login("wrong password!!").status_code == 401
    fifth = user.login("wrong password!!")
    assert fifth.status_code == 401 and "locked" in fifth.text
    # locked: even the right password is refused
    locked = user.login()
    assert locked.status_code == 401 and "locked" in locked.text
    with app.state.database.transaction() as s:
        assert s.scalars(select(Event).where(Event.type == "operator.locked")).one()
    # an unknown user name gets the same answer as a wrong password
    ghost = ConsoleUser(TestClient(app), "ghost").login()
    assert ghost.status_code == 401 and "user name, password" in ghost.text
    manual_clock.advance(15 * 60 + 1)
    assert user.login().status_code == 303


def test_admin_unlocks_and_manages_operators(app, manual_clock):
    admin = console_user(app, "ada", ["admin"])
    make_operator(app, "rita", ["reviewer"])
    rita = ConsoleUser(TestClient(app), "rita")
    for _ in range(5):
        rita.login("wrong password!!")
    admin.get("/console/operators")
    assert "locked" in admin.last.text
    with app.state.database.transaction() as s:
        rid = s.scalars(select(Operator).where(Operator.username == "rita")).one().id
    assert admin.post(f"/console/operators/{rid}/unlock").status_code == 303
    assert rita.login().status_code == 303
    # disabling ends the operator's session at once
    admin.get("/console/operators")
    assert admin.post(f"/console/operators/{rid}/disable").status_code == 303
    assert rita.get("/console/applications").status_code == 303
    assert rita.login().status_code == 401
    # admins add operators from the console; a non-admin cannot
    admin.get("/console/operators")
    created = admin.post("/console/operators", {"username": "alan", "display_name": "Alan",
                                                "roles": ["approver"],
                                                "password": "another long password 7"})
    assert created.status_code == 303
    alan = ConsoleUser(TestClient(app), "alan")
    assert alan.login("another long password 7").status_code == 303
    assert alan.get("/console/operators").status_code == 403


def test_sessions_expire_when_idle_and_on_logout(app, manual_clock):
    admin = console_user(app, "ada", ["admin"])
    assert admin.get("/console/applications").status_code == 200
    manual_clock.advance(29 * 60)
    assert admin.get("/console/applications").status_code == 200
    manual_clock.advance(31 * 60)
    assert admin.get("/console/applications").status_code == 303
    assert admin.login().status_code == 303
    admin.get("/console/applications")
    token = admin.http.cookies.get("quanlian_console")
    assert admin.post("/console/logout").status_code == 303
    # the old cookie value is dead even if replayed
    replay = TestClient(app)
    replay.cookies.set("quanlian_console", token or "", path="/console")
    assert replay.get("/console/applications", follow_redirects=False).status_code == 303


def test_totp_enrolment_and_login(app):
    admin = console_user(app, "ada", ["admin"])
    admin.get("/console/account")
    assert admin.post("/console/account/totp/begin").status_code == 303
    begun = admin.get("/console/account")
    assert begun.status_code == 200 and "data:image/svg+xml;base64," in begun.text
    secret = begun.text.split('data-testid="totp-secret">')[1].split("<")[0]
    wrong = admin.post("/console/account/totp/confirm", {"code": "000000"})
    assert wrong.status_code == 422
    admin.get("/console/account")
    # the secret is kept encrypted at rest
    with app.state.database.transaction() as s:
        raw = s.connection().exec_driver_sql("SELECT totp_secret FROM operators").scalar()
        assert raw and secret not in raw
    totp = pyotp.TOTP(secret)
    confirm_code = totp.now()
    ok = admin.post("/console/account/totp/confirm", {"code": confirm_code})
    assert ok.status_code == 303
    assert "TOTP is on" in admin.get(ok.headers["location"]).text
    user = ConsoleUser(TestClient(app), "ada")
    assert user.login().status_code == 401  # no code
    assert user.login(totp="123456" if totp.now() != "123456" else "654321").status_code == 401
    # the code used to confirm cannot be replayed; a fresh step's code works
    assert user.login(totp=confirm_code).status_code == 401
    next_code = totp.at(datetime.now(UTC) + timedelta(seconds=30))
    assert user.login(totp=next_code).status_code == 303


def test_cli_creates_the_first_admin(database, tmp_path, monkeypatch):
    from gateway.cli import app as cli
    from gateway.settings import get_settings

    monkeypatch.setenv("QUANLIAN_DATABASE_URL", database.url)
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        result = runner.invoke(cli, ["operators", "create", "--username", "root",
                                     "--role", "admin", "--password-stdin"],
                               input=PASSWORD + "\n")
        assert result.exit_code == 0, result.output
        created = json.loads(result.stdout)
        assert created["roles"] == ["admin"] and created["id"].startswith("opr_")
        again = runner.invoke(cli, ["operators", "create", "--username", "root",
                                    "--password-stdin"], input=PASSWORD + "\n")
        assert again.exit_code == 1 and "taken" in again.output
        weak = runner.invoke(cli, ["operators", "create", "--username", "bob",
                                   "--password-stdin"], input="short\n")
        assert weak.exit_code == 1
        listed = runner.invoke(cli, ["operators", "list"])
        assert [o["username"] for o in json.loads(listed.stdout)] == ["root"]
    finally:
        get_settings.cache_clear()
    app = make_app(database, tmp_path)
    assert ConsoleUser(TestClient(app), "root").login().status_code == 303


def test_failed_logins_from_one_address_are_limited_across_user_names(database, tmp_path):
    """Guessing passwords for many operators from one address: once the address's failures use
    up the window, no login is attempted from it (even a right one), and others are unaffected."""
    app = make_app(database, tmp_path, console_login_failure_limits="3/15 minutes")
    make_operator(app, "ada", ["admin"])
    attacker = TestClient(app, client=("203.0.113.9", 40000))
    for name in ("ada", "bob", "eve"):
        assert ConsoleUser(attacker, name).login("wrong password!!").status_code == 401
    refused = ConsoleUser(attacker, "ada").login()
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert "Too many failed logins from this address" in refused.text
    assert "quanlian_console=" not in refused.headers.get("set-cookie", "")
    assert csrf_of(refused.text)  # the form is shown again, ready for later
    # ada herself was not locked by the refused attempt (it was never made) ...
    elsewhere = ConsoleUser(TestClient(app, client=("198.51.100.7", 40000)), "ada")
    assert elsewhere.login().status_code == 303
    # ... and logging in well never counts against an address.
    for _ in range(5):  # five browsers behind one office address
        office = TestClient(app, client=("192.0.2.1", 40000))
        assert ConsoleUser(office, "ada").login().status_code == 303


@pytest.fixture
def cli(app, database, monkeypatch):  # type: ignore[no-untyped-def]
    """`quanlian …` against the test's database, with the app's keys (TOTP seeds are encrypted)."""
    from gateway.cli import app as cli_app
    from gateway.settings import get_settings

    monkeypatch.setenv("QUANLIAN_DATABASE_URL", database.url)
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(app.state.settings.data_dir))
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args, input=None: runner.invoke(cli_app, list(args), input=input)
    get_settings.cache_clear()


def _events_of(app, type_: str) -> list[Event]:  # type: ignore[no-untyped-def]
    with app.state.database.transaction() as s:
        return list(s.scalars(select(Event).where(Event.type == type_)))


def test_resetting_a_password_ends_the_operators_sessions(app, cli):
    rita = console_user(app, "rita", ["reviewer"])
    assert rita.get("/console/applications").status_code == 200
    new_password = "a brand new passphrase 42"
    result = cli("operators", "reset-password", "rita", input=f"{new_password}\n" * 2)
    assert result.exit_code == 0, result.output
    # The session opened with the old password is over: the login page.
    assert rita.get("/console/applications").status_code == 303
    assert rita.login().status_code == 401
    assert rita.login(new_password).status_code == 303


def _login_error(response) -> str:  # type: ignore[no-untyped-def]
    return response.text.split('class="flash error" role="alert">')[1].split("<")[0]


def test_unknown_and_locked_user_names_get_the_same_answers(app):
    """Trying a name that exists and one that does not: the same answers, attempt after
    attempt, through and after the existing one's lockout (even with its right password)."""
    make_operator(app, "ada", ["admin"])
    answers = {}
    for name in ("ada", "nobody-here"):
        user = ConsoleUser(TestClient(app), name)
        answers[name] = [(r.status_code, _login_error(r)) for r in
                         [user.login("wrong password!!") for _ in range(6)] + [user.login()]]
    assert answers["ada"] == answers["nobody-here"]
    assert len({a for a in answers["ada"]}) == 1  # one message for every failure
    assert "locked" in answers["ada"][0][1] and "15 minutes" in answers["ada"][0][1]
    assert _events_of(app, "operator.locked")  # the lockout itself still happened


def test_a_lost_authenticator_is_reset_by_an_administrator(app, cli):
    rita = console_user(app, "rita", ["reviewer"])
    rita.get("/console/account")
    rita.post("/console/account/totp/begin")
    secret = rita.get("/console/account").text.split('data-testid="totp-secret">')[1].split("<")[0]
    assert rita.post("/console/account/totp/confirm",
                     {"code": pyotp.TOTP(secret).now()}).status_code == 303
    assert ConsoleUser(TestClient(app), "rita").login().status_code == 401  # a code is needed
    # The phone is lost: an administrator removes the TOTP from the command line.
    result = cli("operators", "reset-totp", "rita")
    assert result.exit_code == 0, result.output
    assert rita.get("/console/applications").status_code == 303  # sessions ended
    assert rita.login().status_code == 303  # the password alone, then TOTP set up again
    assert "Set up TOTP" in rita.get("/console/account").text
    [event] = _events_of(app, "operator.totp_reset")
    assert event.actor == "cli" and event.data["totp_enabled"] is False
    assert cli("operators", "reset-totp", "nobody").exit_code == 1

    # ... or from the console's Operators page.
    rita.post("/console/account/totp/begin")
    secret = rita.get("/console/account").text.split('data-testid="totp-secret">')[1].split("<")[0]
    rita.post("/console/account/totp/confirm", {"code": pyotp.TOTP(secret).now()})
    admin = console_user(app, "ada", ["admin"])
    page = admin.get("/console/operators")
    assert 'data-action="reset-totp"' in page.text
    with app.state.database.transaction() as s:
        rid = s.scalars(select(Operator).where(Operator.username == "rita")).one().id
    done = admin.post(f"/console/operators/{rid}/reset-totp")
    assert done.status_code == 303 and "TOTP removed" in admin.get(done.headers["location"]).text
    assert rita.get("/console/applications").status_code == 303
    assert rita.login().status_code == 303
    assert [e.actor for e in _events_of(app, "operator.totp_reset")].count(admin_id(app)) == 1


def admin_id(app) -> str:  # type: ignore[no-untyped-def]
    with app.state.database.transaction() as s:
        return s.scalars(select(Operator).where(Operator.username == "ada")).one().id


def test_mistakes_are_named_by_their_page_and_a_mistyped_code_keeps_the_set_up(app):
    admin = console_user(app, "ada", ["admin"])
    admin.get("/console/operators")
    bad_name = admin.post("/console/operators", {"username": "Bad User!", "display_name": "Bea",
                                                 "roles": ["reviewer"], "password": PASSWORD})
    assert bad_name.status_code == 422
    assert "password is too weak" not in bad_name.text and "The user name is not allowed" in bad_name.text
    assert 'value="Bea"' in bad_name.text  # what was typed is kept
    no_role = admin.post("/console/operators", {"username": "bea", "password": PASSWORD})
    assert no_role.status_code == 422 and "Choose the operator&#39;s roles" in no_role.text
    assert "Your role does not allow this" not in no_role.text
    added = admin.post("/console/operators", {"username": "bea", "roles": ["reviewer"],
                                              "password": PASSWORD})
    assert "Operator added." in admin.get(added.headers["location"]).text

    admin.get("/console/account")
    admin.post("/console/account/totp/begin")
    secret = admin.get("/console/account").text.split('data-testid="totp-secret">')[1].split("<")[0]
    wrong = admin.post("/console/account/totp/confirm", {"code": "000000"})
    assert wrong.status_code == 422 and "password is too weak" not in wrong.text
    assert "That code does not match" in wrong.text
    # The same set-up is shown again, and starting again keeps the secret already scanned.
    assert f'data-testid="totp-secret">{secret}<' in wrong.text
    admin.get("/console/account")
    admin.post("/console/account/totp/begin")
    assert f'data-testid="totp-secret">{secret}<' in admin.get("/console/account").text
    # A confirmation sent twice turns TOTP on once.
    code = pyotp.TOTP(secret).now()
    assert admin.post("/console/account/totp/confirm", {"code": code}).status_code == 303
    assert admin.post("/console/account/totp/confirm", {"code": code}).status_code == 303
    assert len(_events_of(app, "operator.totp_enabled")) == 1


def test_an_unconfirmed_totp_set_up_expires(app, manual_clock):
    admin = console_user(app, "ada", ["admin"])
    admin.get("/console/account")
    admin.post("/console/account/totp/begin")
    secret = admin.get("/console/account").text.split('data-testid="totp-secret">')[1].split("<")[0]
    manual_clock.advance(31 * 60)
    assert admin.login().status_code == 303  # the idle session ended meanwhile
    page = admin.get("/console/account")
    assert "totp-secret" not in page.text and "Set up TOTP" in page.text
    late = admin.post("/console/account/totp/confirm",
                      {"code": pyotp.TOTP(secret).at(manual_clock.now())})
    assert late.status_code == 422 and "expired" in late.text
    admin.post("/console/account/totp/begin")
    assert secret not in admin.get("/console/account").text
