"""fetch_all (collector/store/rawread.py): the driver's rows, and its errors as SQLAlchemy's (the app's 503 and
422 handlers catch those), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import exc

from collector.store import points
from collector.store.rawread import fetch_all
from tests.helpers import POINT, REGION


def _mark(store) -> str:
    return "?" if store.is_sqlite else "%s"


def test_the_rows_are_those_exec_driver_sql_reads(store):
    points.upsert_point(store, POINT, "某村服务点", REGION)
    points.upsert_point(store, "510000000002", "另一服务点", REGION)
    statement = f"SELECT code, name, report_interval_s FROM points WHERE code IN ({_mark(store)}, {_mark(store)}) ORDER BY code"
    params = (POINT, "510000000002")
    with store.engine.begin() as conn:
        expected = [tuple(r) for r in conn.exec_driver_sql(statement, params)]
        assert [tuple(r) for r in fetch_all(conn, statement, params)] == expected
        assert len(expected) == 2


def test_a_driver_error_is_raised_as_sqlalchemys_naming_the_statement(store):
    with store.engine.begin() as conn, pytest.raises(exc.DBAPIError) as raised:
        fetch_all(conn, "SELECT code FROM no_such_table", ())
    assert "no_such_table" in str(raised.value)
    assert isinstance(raised.value, (exc.OperationalError, exc.ProgrammingError))
    assert not raised.value.connection_invalidated


def test_a_lost_connection_is_invalidated_as_sqlalchemy_would(store):
    with store.engine.connect() as conn:
        if store.is_sqlite:
            conn.connection.dbapi_connection.close()
        else:  # the server ends the session, as a restart or a network cut would
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with store.engine.connect() as other:
                other.exec_driver_sql("SELECT pg_terminate_backend(%s)", (pid,))
        with pytest.raises(exc.DBAPIError) as raised:
            fetch_all(conn, "SELECT 1", ())
        assert raised.value.connection_invalidated and conn.invalidated


def test_a_value_the_database_refuses_is_a_data_error_on_postgresql(store):
    if store.is_sqlite:  # SQLite stores a NUL in text; the case exists on PostgreSQL only
        with store.engine.begin() as conn:
            assert fetch_all(conn, "SELECT ?", ("a\x00b",)) == [("a\x00b",)]
        return
    with store.engine.begin() as conn, pytest.raises(exc.DataError):
        fetch_all(conn, "SELECT %s::text", ("a\x00b",))
