"""Writing many rows of one table at once, inside the caller's transaction.

`insert_rows` takes rows as the ORM would see them (plain values: a name in clear for an
`EncryptedString` column, an aware datetime for a `UTCDateTime` one) and writes them with the
cheapest statement the database offers:

- PostgreSQL: `COPY ... FROM STDIN`, each value first passed through its column type's bind
  processor (so encryption and time-zone rules stay in their types, nowhere else). A COPY row
  costs about a tenth of the client time of an executemany INSERT row (SQLAlchemy's per-row
  parameter processing and the driver's per-statement work dominate an INSERT stream), which
  is what makes a 100,000-item payroll batch or a chunk of ledger postings cheap to store.
- SQLite (and anything else): one Core executemany INSERT, which SQLite runs in-process.

`one_of(session, column, values)` is `column IN (values)`, as one array parameter on
PostgreSQL (`= ANY(...)`): a 500-value IN list is 500 parameters to render, send and parse on
every call, and so is not cached by the driver.

`update_rows` sets per-row values on many rows found by a key: on PostgreSQL one
`UPDATE ... FROM unnest(<one array per column>)` statement (one round trip, one plan, however
many rows), elsewhere one executemany UPDATE.

`row_writer` is the streaming form of `insert_rows`: rows are written as they are made, so on
PostgreSQL the database inserts them while the caller makes the next ones.

Constraints are checked as for an INSERT; a violation is raised as the usual SQLAlchemy
`IntegrityError` (the transaction is then unusable, as after a failed INSERT on PostgreSQL).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

from sqlalchemy import ColumnElement, Table, any_, bindparam, func, insert, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from gateway import deferred
from gateway.db import driver_sql


def insert_rows(session: Session, table: Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert `rows` (all with the same keys) into `table` in the session's transaction.

    Pending ORM changes are flushed first, so rows may refer to objects added just before.
    """
    if not rows:
        return
    with row_writer(session, table) as write:
        for row in rows:
            write(row)


@contextmanager
def row_writer(session: Session, table: Table) -> Iterator[Callable[[Mapping[str, Any]], None]]:
    """Insert rows one at a time, as the caller makes them (all with the same keys).

    On PostgreSQL each row goes into an open COPY, so the database inserts it while the caller
    makes the next; elsewhere rows are collected and inserted when the block ends. The session
    must not be used inside the block (a COPY is in progress on its connection).
    """
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql":
        collected: list[Mapping[str, Any]] = []
        yield collected.append
        if collected:
            connection.execute(insert(table), collected)
        return
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    statement = f'COPY "{table.name}"'
    with ExitStack() as stack:
        writer: list[Callable[[Mapping[str, Any]], None]] = []

        def start(row: Mapping[str, Any]) -> None:
            # The columns are the first row's keys: open the COPY for them.
            nonlocal statement
            names = list(row)
            statement += " (" + ", ".join(f'"{n}"' for n in names) + ") FROM STDIN"
            deferred.send(connection)  # kept writes go before the COPY, as before any statement
            cursor = stack.enter_context(dbapi_connection.cursor())
            put = stack.enter_context(cursor.copy(statement)).write_row
            converters = [(i, p) for i, p in enumerate(_processor(table, n, dialect) for n in names)
                          if p is not None]

            def write_row(row: Mapping[str, Any]) -> None:
                values = [row[n] for n in names]
                for i, process in converters:
                    values[i] = process(values[i])
                put(values)

            writer.append(write_row)
            write_row(row)

        def write(row: Mapping[str, Any]) -> None:
            (writer[0] if writer else start)(row)

        try:
            yield write
            stack.close()  # ends the COPY: constraint violations surface here
        except dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(statement, None, exc, dialect.loaded_dbapi.Error,
                                      dialect=dialect) from exc


def update_rows(session: Session, table: Table, key: str,
                rows: Sequence[Mapping[str, Any]]) -> None:
    """Set each row's values (all rows with the same keys) on the row whose `key` matches."""
    if not rows:
        return
    session.flush()
    connection = session.connection()
    dialect = connection.dialect
    names = [name for name in rows[0] if name != key]
    if dialect.name != "postgresql":
        # bindparam names may not be column names in an UPDATE's SET clause: prefix them.
        statement = (update(table).where(table.c[key] == bindparam("_" + key))
                     .values({name: bindparam("_" + name) for name in names}))
        connection.execute(statement, [{"_" + k: v for k, v in row.items()} for row in rows])
        return
    # One array per column, each element processed by the column's type (ARRAY does that); a
    # column with the same value on every row (a status, a time, NULL) is one plain parameter,
    # as arrays cost the driver about a microsecond and a half per element.
    keyed = [key, *(name for name in names if not _uniform(rows, name))]
    arrays = [bindparam(f"p{i}", [row[name] for row in rows], type_=ARRAY(table.c[name].type))
              for i, name in enumerate(keyed)]
    values = func.unnest(*arrays).table_valued(*keyed).render_derived().alias("v")
    connection.execute(update(table).where(table.c[key] == values.c[key]).values(
        {name: values.c[name] if name in keyed else bindparam(None, rows[0][name],
                                                              type_=table.c[name].type)
         for name in names}))


def driver_insert(dialect: Dialect, cursor: Any, table: Table,
                  rows: Sequence[Mapping[str, Any]], *, skip_conflicts: bool = False) -> int:
    """Insert `rows` (all with the same keys) on a driver cursor (from
    `Database.driver_transaction`, or `session_insert`), each value passed through its column
    type's bind processor as in `row_writer`: one compiled statement, with none of SQLAlchemy's per-statement and
    per-row work. `skip_conflicts`: a row that breaks a unique key is left out (ON CONFLICT DO
    NOTHING). Returns the number of rows inserted (for one row: 1 or 0)."""
    if not rows:
        return 0
    return _execute(cursor, _insert_write(dialect, table, rows, skip_conflicts))


def driver_insert_returning(dialect: Dialect, cursor: Any, table: Table,
                            rows: Sequence[Mapping[str, Any]], returning: tuple[str, ...], *,
                            skip_conflicts: bool = False) -> list[tuple[Any, ...]]:
    """`driver_insert` that reads back the `returning` columns (as the driver gives them) of
    each row it inserted; a row skipped for a conflict returns nothing. Up to `MULTI_VALUES`
    rows per statement, so a few rows cost one statement and one round trip."""
    stored: list[tuple[Any, ...]] = []
    for start in range(0, len(rows), MULTI_VALUES):
        part = rows[start:start + MULTI_VALUES]
        _execute(cursor, _multi_write(_driver_multi_statement(
            dialect, table, tuple(part[0]), skip_conflicts, len(part), returning), part))
        stored.extend(tuple(row) for row in cursor.fetchall())
    return stored


# Up to this many rows go in one `INSERT ... VALUES (...), (...)`: for a few rows (a journal
# entry's postings, an order's splits, a transaction's evidence entries) that costs the driver
# about what one row costs, where an executemany costs it a statement per row (psycopg, client
# CPU per call of two rows, `python -m tests.bench.bench_statements`: 97-107 us by executemany,
# 51-73 us in one statement; one row 48-59 us). More rows go by executemany.
MULTI_VALUES = 16


@contextmanager
def session_cursor(session: Session) -> Iterator[tuple[Any, Dialect]]:
    """A driver cursor in the session's own transaction, and its dialect, for the few
    statements every call makes; pending ORM changes are not flushed first. Driver errors are
    raised as SQLAlchemy's, as from any other statement. Writes kept for the next statement
    (`gateway.deferred`) are sent first."""
    connection = session.connection()
    deferred.send(connection)
    dialect = connection.dialect
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor()
    try:
        yield cursor, dialect
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance("(driver statement)", None, exc, dialect.loaded_dbapi.Error,
                                  dialect=dialect) from exc
    finally:
        cursor.close()


def driver_update(dialect: Dialect, cursor: Any, table: Table, key: str,
                  rows: Sequence[Mapping[str, Any]]) -> int:
    """Set each row's values (all rows with the same keys) on the row whose `key` matches, on a
    driver cursor, values passed through their column types' bind processors as in
    `driver_insert`. Returns the number of rows changed."""
    if not rows:
        return 0
    return _execute(cursor, _update_write(dialect, table, key, rows))


def session_insert(session: Session, table: Table, rows: Sequence[Mapping[str, Any]], *,
                   skip_conflicts: bool = False) -> int:
    """`driver_insert` in the session's own transaction, for rows nothing reads back as objects
    in it (evidence entries, ledger postings), and that refer to no pending ORM object."""
    with session_cursor(session) as (cursor, dialect):
        return driver_insert(dialect, cursor, table, rows, skip_conflicts=skip_conflicts)


def session_insert_later(session: Session, table: Table,
                         rows: Sequence[Mapping[str, Any]]) -> None:
    """`session_insert` for rows whose INSERT nobody waits on: on PostgreSQL it goes with the
    transaction's next statement or its COMMIT (`gateway.deferred`), on SQLite at once. A
    broken constraint fails that statement or the commit, and the transaction."""
    if rows:
        _later(session, _insert_write(session.get_bind().dialect, table, rows))


def session_execute_later(session: Session, sql: str, params: Mapping[str, Any]) -> None:
    """One write statement (`:name` parameters) whose outcome nobody waits on, sent as
    `session_insert_later` sends rows."""
    _later(session, (driver_sql(sql, session.get_bind().dialect.name), params, False))


def session_update_later(session: Session, table: Table, key: str,
                         rows: Sequence[Mapping[str, Any]]) -> None:
    """`session_update` as `session_insert_later` sends its rows: with the transaction's next
    statement on PostgreSQL, at once on SQLite."""
    if rows:
        _later(session, _update_write(session.get_bind().dialect, table, key, rows))


def _later(session: Session, write: deferred.Write) -> None:
    """Keep `write` for the transaction's next statement where the engine keeps writes
    (PostgreSQL), else run it now."""
    if deferred.keeps(session):
        deferred.keep(session, write)
        return
    with session_cursor(session) as (cursor, _):
        deferred.run(cursor, write)


def session_store(session: Session, objects: Sequence[Any], *, flush: bool = True,
                  skip_conflicts: bool = False, later: bool = False) -> int:
    """Store new ORM objects of one class, made in this call, with one driver statement (as
    `session_insert`), and make them the session's own as if they had been read: the unit of
    work's flush of a row costs several times its driver INSERT. A column the object leaves
    unset takes its column's constant default (else NULL; one computed at insert time must be
    set), and is set on the object, so nothing is left to load back. `flush` first stores
    pending objects the rows may refer to; a caller that knows there are none may skip it.

    A broken constraint raises `IntegrityError`, as a flush would (and on PostgreSQL the
    transaction is then lost). With `skip_conflicts` (one object only) a row that breaks a
    unique key is left out instead: 0 is returned, the object stays out of the session and the
    transaction goes on, so the caller can read what holds the key. `later`: the INSERT goes
    with the transaction's next statement (`session_insert_later`); the objects are the
    session's own at once. Returns the rows stored."""
    if not objects:
        return 0
    if skip_conflicts and (len(objects) != 1 or later):
        raise ValueError("skip_conflicts stores one object at a time, at once")
    if flush:
        session.flush()
    table, columns = _stored_columns(type(objects[0]))
    rows = []
    for obj in objects:
        state = obj.__dict__
        row = {}
        for key, default in columns:
            if key in state:
                row[key] = state[key]
            elif default is _MADE_BY_DATABASE:
                raise ValueError(f"{table.name}.{key}: set it before storing (its default is "
                                 "computed)")
            else:
                row[key] = default
                setattr(obj, key, default)
        rows.append(row)
    if later:
        session_insert_later(session, table, rows)
        stored = len(rows)
    else:
        stored = session_insert(session, table, rows, skip_conflicts=skip_conflicts)
    if stored:
        for obj in objects:
            make_transient_to_detached(obj)
            session.add(obj)
    return stored


_MADE_BY_DATABASE = object()  # a default computed at insert time: the caller sets the value


def session_save(session: Session, objects: Sequence[Any], names: Sequence[str], *,
                 later: bool = False) -> None:
    """Write the attributes `names` of persistent objects (one class, a one-column primary
    key) with one driver UPDATE by key, and make those values the objects' committed state:
    the unit of work then has nothing of them left to flush. Other changes to the objects
    stay pending, flushed as usual. `later`: the UPDATE goes with the transaction's next
    statement (`session_update_later`)."""
    if not objects:
        return
    table, _ = _stored_columns(type(objects[0]))
    (key,) = [column.key for column in table.primary_key.columns]
    rows = [{key: getattr(obj, key), **{name: getattr(obj, name) for name in names}}
            for obj in objects]
    (session_update_later if later else session_update)(session, table, key, rows)
    for obj, row in zip(objects, rows, strict=True):
        for name in names:
            set_committed_value(obj, name, row[name])


@functools.lru_cache(maxsize=64)
def _stored_columns(model: type) -> tuple[Table, tuple[tuple[str, Any], ...]]:
    """A mapped class's table, and each column's attribute name with its scalar default."""
    table = model.__table__  # type: ignore[attr-defined]
    columns = []
    for column in table.columns:
        if column.default is None and column.server_default is None:
            default = None
        elif column.default is not None and column.default.is_scalar:
            default = column.default.arg
        else:
            default = _MADE_BY_DATABASE
        if column.key != column.name:  # pragma: no cover - no model renames a column
            raise ValueError(f"{table.name}.{column.name}: stored objects use column names")
        columns.append((column.key, default))
    return table, tuple(columns)


def session_update(session: Session, table: Table, key: str,
                   rows: Sequence[Mapping[str, Any]]) -> int:
    """`driver_update` in the session's own transaction. The caller keeps any ORM object of
    those rows in step (`sqlalchemy.orm.attributes.set_committed_value`)."""
    with session_cursor(session) as (cursor, dialect):
        return driver_update(dialect, cursor, table, key, rows)


def session_rows(session: Session, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a plain read (`:name` parameters) in the session's own transaction, on the
    driver: a few columns read on every call, where the ORM would build objects and SQLAlchemy
    a statement. Pending ORM changes are flushed first, as a query would. Values come back as
    the driver gives them (no column type processing)."""
    session.flush()
    with session_cursor(session) as (cursor, dialect):
        cursor.execute(driver_sql(sql, dialect.name), params)
        return list(cursor.fetchall())


def session_select(session: Session, table: Table, columns: Sequence[str], where: str,
                   params: Mapping[str, Any], *, share_lock: bool = False) -> list[tuple[Any, ...]]:
    """`SELECT <columns> FROM <table> WHERE <where>` (`:name` parameters) on the driver, in the
    session's transaction, each value passed through its column type's result processor (a
    date from SQLite is a date, an encrypted column is decrypted): the ORM's read of a few
    columns at a fraction of its cost. `share_lock` holds the rows FOR SHARE until the
    transaction ends (PostgreSQL; SQLite's writes are serialized already). Pending ORM changes
    are flushed first, as a query would."""
    session.flush()
    with session_cursor(session) as (cursor, dialect):
        sql, processors = _select_statement(dialect, table, tuple(columns), where, share_lock)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not processors:
        return [tuple(row) for row in rows]
    out = []
    for row in rows:
        line = list(row)
        for i, process in processors:
            line[i] = process(line[i])
        out.append(tuple(line))
    return out


@functools.lru_cache(maxsize=128)
def _select_statement(dialect: Dialect, table: Table, columns: tuple[str, ...], where: str,
                      share_lock: bool) -> tuple[str, _Converters]:
    # Built from the caller's column names (each checked against the table below) and its
    # own condition text; values only ever come as parameters.
    sql = f"SELECT {', '.join(columns)} FROM {table.name} WHERE {where}"  # noqa: S608
    if share_lock and dialect.name == "postgresql":
        sql += " FOR SHARE"
    processors = []
    for i, name in enumerate(columns):
        process = table.c[name].type.dialect_impl(dialect).result_processor(dialect, None)
        if process is not None:
            processors.append((i, process))
    return driver_sql(sql, dialect.name), processors


_Converters = list[tuple[int, Callable[[Any], Any]]]
# SQL, the row keys in parameter order, their bind processors, the parameter names (None: positional)
_Statement = tuple[str, tuple[str, ...], _Converters, tuple[str, ...] | None]
# The same for several rows in one statement: each parameter's (row index, key) in order
_MultiStatement = tuple[str, tuple[tuple[int, str], ...], _Converters, tuple[str, ...] | None]


def _insert_write(dialect: Dialect, table: Table, rows: Sequence[Mapping[str, Any]],
                  skip_conflicts: bool = False) -> deferred.Write:
    """How `rows` are inserted: a few in one multi-row statement, one or many by the one-row
    statement (executemany), their values processed as their column types bind them."""
    if 1 < len(rows) <= MULTI_VALUES:
        return _multi_write(_driver_multi_statement(
            dialect, table, tuple(rows[0]), skip_conflicts, len(rows)), rows)
    return _rows_write(_driver_statement(dialect, table, tuple(rows[0]), skip_conflicts), rows)


def _update_write(dialect: Dialect, table: Table, key: str,
                  rows: Sequence[Mapping[str, Any]]) -> deferred.Write:
    return _rows_write(_driver_update_statement(dialect, table, key, tuple(rows[0])), rows)


def _rows_write(statement: _Statement, rows: Sequence[Mapping[str, Any]]) -> deferred.Write:
    sql, names, converters, params = statement
    values = [_driver_values(row, names, converters, params) for row in rows]
    return (sql, values[0], False) if len(values) == 1 else (sql, values, True)


def _multi_write(statement: _MultiStatement, rows: Sequence[Mapping[str, Any]]) -> deferred.Write:
    sql, slots, converters, params = statement
    line = [rows[i][key] for i, key in slots]
    for j, process in converters:
        line[j] = process(line[j])
    return sql, line if params is None else dict(zip(params, line, strict=True)), False


def _execute(cursor: Any, write: deferred.Write) -> int:
    deferred.run(cursor, write)
    return int(cursor.rowcount)


def _driver_run(cursor: Any, statement: _Statement, rows: Sequence[Mapping[str, Any]]) -> int:
    """Run a one-row statement for each of `rows` (`tests/bench/bench_statements.py` times
    it against `driver_insert`)."""
    return _execute(cursor, _rows_write(statement, rows))


def _driver_values(row: Mapping[str, Any], names: tuple[str, ...], converters: _Converters,
                   params: tuple[str, ...] | None) -> Any:
    """A row's values in the statement's order, processed; keyed by `params` for a driver
    with named parameters (None: positional)."""
    line = [row[n] for n in names]
    for i, process in converters:
        line[i] = process(line[i])
    return line if params is None else dict(zip(params, line, strict=True))


@functools.lru_cache(maxsize=64)
def _driver_update_statement(dialect: Dialect, table: Table, key: str, keys: tuple[str, ...]) -> _Statement:
    # Parameters are named after their columns with a prefix: a SET clause may not bind a
    # parameter of its column's own name.
    names = [name for name in keys if name != key]
    statement = (update(table).where(table.c[key] == bindparam("_" + key))
                 .values({name: bindparam("_" + name) for name in names}))
    compiled = statement.compile(dialect=dialect)
    binds = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
    columns = tuple(bind[1:] for bind in binds)
    if set(columns) != set(keys):
        raise ValueError(f"{table.name}: an update sets given columns only ({sorted(keys)})")
    converters = [(i, p) for i, p in enumerate(_processor(table, n, dialect) for n in columns)
                  if p is not None]
    return compiled.string, columns, converters, None if compiled.positional else binds


@functools.lru_cache(maxsize=64)
def _driver_statement(dialect: Dialect, table: Table, keys: tuple[str, ...],
                      skip_conflicts: bool = False) -> _Statement:
    statement = _insert_of(dialect, table, skip_conflicts)
    # inline: no RETURNING of a generated key, which nothing here would read
    compiled = statement.inline().compile(dialect=dialect, column_keys=list(keys))
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
    if set(names) != set(keys):  # a column default would need SQLAlchemy to fill it in
        raise ValueError(f"{table.name}: give every inserted column a value ({sorted(keys)})")
    converters = [(i, p) for i, p in enumerate(_processor(table, n, dialect) for n in names)
                  if p is not None]
    return compiled.string, names, converters, None if compiled.positional else names


def _insert_of(dialect: Dialect, table: Table, skip_conflicts: bool) -> Any:
    if skip_conflicts:
        return (postgresql_insert(table) if dialect.name == "postgresql"
                else sqlite_insert(table)).on_conflict_do_nothing()
    return insert(table)


@functools.lru_cache(maxsize=128)
def _driver_multi_statement(dialect: Dialect, table: Table, keys: tuple[str, ...],
                            skip_conflicts: bool, count: int,
                            returning: tuple[str, ...] = ()) -> _MultiStatement:
    """`_driver_statement` for `count` rows in one statement: each parameter is named after
    its row and column, and comes with the row's index and the column's key. `returning`
    names columns the statement returns of each row it inserts."""
    slot_of = {f"{key}__{i}": (i, key) for i in range(count) for key in keys}
    statement = _insert_of(dialect, table, skip_conflicts).values([
        {key: bindparam(f"{key}__{i}", type_=table.c[key].type) for key in keys}
        for i in range(count)])
    if returning:
        statement = statement.returning(*(table.c[name] for name in returning))
    compiled = statement.inline().compile(dialect=dialect)
    names = tuple(compiled.positiontup or ()) if compiled.positional else tuple(compiled.binds)
    if set(names) != set(slot_of):  # a column default would need SQLAlchemy to fill it in
        raise ValueError(f"{table.name}: give every inserted column a value ({sorted(keys)})")
    slots = tuple(slot_of[name] for name in names)
    converters = [(j, p) for j, p in enumerate(_processor(table, key, dialect)
                                               for _, key in slots) if p is not None]
    return compiled.string, slots, converters, None if compiled.positional else names


def _uniform(rows: Sequence[Mapping[str, Any]], name: str) -> bool:
    first = rows[0][name]
    return all(row[name] == first for row in rows)


def _processor(table: Table, name: str, dialect: Dialect) -> Callable[[Any], Any] | None:
    return table.c[name].type.dialect_impl(dialect).bind_processor(dialect)


def one_of(session: Session, column: ColumnElement[Any],
           values: Sequence[Any]) -> ColumnElement[bool]:
    """A `column IN (values)` condition, as one array parameter on PostgreSQL."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)
