"""When the database, not the request, fails: a lost connection is a 503 with Retry-After (never
a 500), a transaction the database rolled back for a concurrent one is a 409, nothing is
written twice, and the pool heals by itself after a restart."""

from __future__ import annotations

import sqlite3
import uuid

import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import NoResultFound
from sqlalchemy.orm.exc import StaleDataError

from gateway import db as db_module
from gateway.errors import database_problem
from products.accounts import service
from tests.products.accounts.factories import enterprise_account, funded_account
from tests.tools.databases import PG_URL

pg_only = pytest.mark.skipif(not PG_URL, reason="PostgreSQL connections are terminated here")


def _sqlite_error(tmp_path, sql: str) -> sqlite3.OperationalError:
    path = tmp_path / "x.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE IF NOT EXISTS t (x)")
    holder.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute(sql)
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        holder.rollback()
        holder.close()
        other.close()
    raise AssertionError("no error")


def test_sqlite_busy_is_a_retryable_conflict_and_a_missing_table_stays_a_bug(tmp_path):
    busy = database_problem(_sqlite_error(tmp_path, "INSERT INTO t VALUES (1)"))
    assert busy is not None and (busy.status, busy.code) == (409, "concurrent_update")
    assert database_problem(_sqlite_error(tmp_path, "SELECT * FROM no_such_table")) is None
    assert database_problem(ValueError("not the database")) is None


@pg_only
@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
def test_a_transaction_postgresql_rolled_back_is_a_retryable_conflict(sqlstate):
    with (psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql")) as conn,
          pytest.raises(psycopg.Error) as raised):
        conn.execute(f"DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = '{sqlstate}'; END $$")
    problem = database_problem(raised.value)
    assert problem is not None and (problem.status, problem.code) == (409, "concurrent_update")


def test_an_unreachable_database_is_unavailable_with_retry_after():
    with pytest.raises(psycopg.OperationalError) as raised:
        psycopg.connect("host=127.0.0.1 port=1 dbname=x user=x connect_timeout=2")
    problem = database_problem(raised.value)
    assert problem is not None and problem.status == 503
    assert problem.headers["Retry-After"] == "1"


def _terminate_connections(database) -> int:
    """Cut every connection the app holds to its database, as a restart would."""
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"),
                {"name": database.engine.url.database}).all())
    finally:
        admin.dispose()


@pg_only
def test_after_a_restart_a_payment_is_refused_at_most_once_and_never_made_twice(app, http, partner):
    database = app.state.database
    with database.transaction() as s:
        payer = funded_account(s, partner.tenant_id, 10_000).id
        payee = enterprise_account(s, partner.tenant_id).id
    body = {"from_account_id": payer, "to_account_id": payee,
            "amount": {"amount": "12.34", "currency": "CNY"}}
    # Warm the pool with several connections, then cut them all.
    for _ in range(3):
        assert http.get("/v1/accounts", headers=partner.auth()).status_code == 200
    headers = {**partner.auth("POST", "/v1/transfers"), "Idempotency-Key": uuid.uuid4().hex}
    assert _terminate_connections(database) >= 1

    first = http.post("/v1/transfers", json=body, headers=headers)
    assert first.status_code in (201, 503), first.text
    if first.status_code == 503:
        assert first.headers["Retry-After"] == "1"
        assert first.json()["code"] == "service_unavailable"
    again = http.post("/v1/transfers", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert http.get("/v1/accounts", headers=partner.auth()).status_code == 200
    with database.transaction() as s:
        assert service.balance(s, partner.tenant_id, payer).ledger_fen == 10_000 - 1_234
        assert service.balance(s, partner.tenant_id, payee).ledger_fen == 1_234


@pg_only
def test_an_idle_pooled_connection_that_was_cut_is_replaced_before_use(database, monkeypatch):
    engine = database.engine
    with engine.connect() as conn:
        first_pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    _terminate_connections(database)
    monkeypatch.setattr(db_module, "PING_AFTER_IDLE_SECONDS", 0.0)
    with engine.connect() as conn:  # pinged at checkout, found gone, replaced: no error
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != first_pid


@pg_only
def test_once_a_lost_connection_is_noted_every_pooled_one_is_checked(database):
    engine = database.engine
    conns = [engine.connect() for _ in range(3)]
    pids = {c.execute(text("SELECT pg_backend_pid()")).scalar() for c in conns}
    for c in conns:
        c.close()
    _terminate_connections(database)
    db_module.note_connection_lost(engine)
    for _ in range(3):  # each would have failed on first use; each is pinged and replaced
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_backend_pid()")).scalar() not in pids


def test_a_call_while_the_database_is_down_is_a_503_not_a_500(app, http, partner):
    from gateway.db import Database

    headers = partner.auth()  # the token is issued while the database is up
    working = app.state.database
    app.state.database = Database("postgresql+psycopg://quanlian@127.0.0.1:1/quanlian")
    try:
        for _ in range(2):
            down = http.get("/v1/accounts", headers=headers)
            assert down.status_code == 503, down.text
            assert down.headers["Retry-After"] == "1"
            assert down.headers["content-type"].startswith("application/problem+json")
            assert down.json()["code"] == "service_unavailable"
    finally:
        app.state.database.dispose()
        app.state.database = working
    assert http.get("/v1/accounts", headers=headers).status_code == 200


@pg_only
@pytest.mark.parametrize(("sql", "params", "code"), [
    ("SELECT %s::text", ["a\x00b"], "nul_character"),
    ("SELECT %s::int4", [2**31], "value_out_of_range"),
])
def test_input_postgresql_cannot_hold_is_a_422_even_on_the_driver_paths(sql, params, code):
    # The bulk writes go to the driver unwrapped; the answer is the one SQLAlchemy's paths get.
    with (psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql")) as conn,
          pytest.raises(psycopg.DataError) as raised):
        conn.execute(sql, params)
    problem = database_problem(raised.value)
    assert problem is not None and (problem.status, problem.code) == (422, code)


def test_text_with_nul_is_refused_by_either_database_on_every_path(database):
    """On the driver itself, as the bulk writes use it: PostgreSQL's driver refuses the text,
    and SQLite's connections are made to refuse it alike; either way it is a 422."""
    from gateway.db import driver_sql

    dialect = database.engine.dialect.name
    with (pytest.raises((psycopg.DataError, sqlite3.DataError)) as raised,
          database.driver_transaction() as cursor):
        cursor.execute(driver_sql("SELECT CAST(:x AS TEXT)", dialect), {"x": "a\x00b"})
    problem = database_problem(raised.value)
    assert problem is not None and (problem.status, problem.code) == (422, "nul_character")
    with database.driver_transaction() as cursor:  # other text passes
        cursor.execute(driver_sql("SELECT CAST(:x AS TEXT)", dialect), {"x": "a\tb 中文"})
        assert cursor.fetchone()[0] == "a\tb 中文"


@pg_only
def test_a_deadlock_postgresql_reports_mid_request_is_a_409_that_moves_no_money(app, http, partner):
    with app.state.database.transaction() as s:
        account = enterprise_account(s, partner.tenant_id).id
    path = f"/v1/partner-probe-rollback/{account}"
    response = http.post(path, headers=partner.auth("POST", path))
    assert response.status_code == 409, response.text
    assert response.json()["code"] == "concurrent_update"
    with app.state.database.transaction() as s:
        assert service.balance(s, partner.tenant_id, account).ledger_fen == 0


@pytest.mark.parametrize("write", [
    "INSERT INTO {p} (id) VALUES ('a')",  # the key is taken
    "INSERT INTO {c} (p_id) VALUES ('gone')",  # the row referred to is gone
])
def test_a_row_taken_or_gone_before_the_write_is_a_retryable_conflict_on_either_database(
        database, write):
    """Routes check what they refer to before writing; the database refuses the write only
    when a concurrent request (or a sandbox reset) took the key or deleted the row in between:
    409, as for a deadlock. Other constraint failures stay bugs."""
    p, c = f"p_{uuid.uuid4().hex[:8]}", f"c_{uuid.uuid4().hex[:8]}"
    with (pytest.raises((psycopg.IntegrityError, sqlite3.IntegrityError)) as raised,
          database.driver_transaction() as cursor):
        cursor.execute(f"CREATE TEMP TABLE {p} (id VARCHAR(10) PRIMARY KEY)")
        cursor.execute(f"CREATE TEMP TABLE {c} (p_id VARCHAR(10) NOT NULL REFERENCES {p} (id))")
        cursor.execute(f"INSERT INTO {p} (id) VALUES ('a')")
        cursor.execute(write.format(p=p, c=c))
    problem = database_problem(raised.value)
    assert problem is not None and (problem.status, problem.code) == (409, "concurrent_update")
    with (pytest.raises((psycopg.IntegrityError, sqlite3.IntegrityError)) as raised,
          database.driver_transaction() as cursor):
        cursor.execute(f"CREATE TEMP TABLE {p}n (x VARCHAR(10) NOT NULL)")
        cursor.execute(f"INSERT INTO {p}n (x) VALUES (NULL)")
    assert database_problem(raised.value) is None
    assert database_problem(StaleDataError("UPDATE matched 0 rows")).code == "concurrent_update"
    assert database_problem(NoResultFound("row gone")).code == "concurrent_update"


@pg_only
def test_text_longer_than_its_column_is_a_422_on_postgresql():
    with (psycopg.connect(PG_URL.replace("postgresql+psycopg", "postgresql")) as conn,
          pytest.raises(psycopg.DataError) as raised):
        conn.execute("CREATE TEMP TABLE short_text (x VARCHAR(3))")
        conn.execute("INSERT INTO short_text VALUES ('abcd')")
    problem = database_problem(raised.value)
    assert problem is not None and (problem.status, problem.code) == (422, "value_too_long")


@pytest.mark.parametrize("at", ["flush", "commit", "reference"])
def test_a_row_deleted_under_a_request_is_a_409_that_changes_nothing(app, http, partner, at):
    with app.state.database.transaction() as s:
        account = enterprise_account(s, partner.tenant_id, label="kept").id
    path = f"/v1/partner-probe-row-gone/{account}"
    response = http.post(path, params={"at": at}, headers=partner.auth("POST", path))
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "concurrent_update"
    with app.state.database.transaction() as s:  # the delete rolled back with the rest
        kept = service.get_account(s, partner.tenant_id, account)
        assert (kept.label, kept.ledger_fen) == ("kept", 0)  # and the deposit did not land
