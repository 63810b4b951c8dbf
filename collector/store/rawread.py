"""Reads on the DBAPI cursor of a SQLAlchemy connection, for the hot paths that fetch many small rows."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError


def fetch_all(conn, statement: str, params) -> list[tuple]:
    """The rows of one statement in the driver's own style, on the connection's DBAPI cursor, fetched at once.

    For reads of many small rows per transaction (a group's tails): SQLAlchemy's result wraps each row it
    fetches, which cost more than the database's lookup. A driver error is raised as SQLAlchemy's, as
    exec_driver_sql would (the app maps OperationalError to 503, DataError to 422), and a lost connection is
    invalidated."""
    dbapi = conn.dialect.loaded_dbapi
    raw = conn.connection.dbapi_connection
    cursor = None
    try:
        cursor = raw.cursor()
        cursor.execute(statement, params)
        return cursor.fetchall()
    except dbapi.Error as exc:
        gone = conn.dialect.is_disconnect(exc, raw, cursor)
        if gone:  # as SQLAlchemy does: the pool must not hand this connection out again
            conn.invalidate(exc)
        raise DBAPIError.instance(statement, params, exc, dbapi.Error, connection_invalidated=gone,
                                  dialect=conn.dialect) from exc
    finally:
        if cursor is not None:
            try:
                cursor.close()
            except dbapi.Error:  # the connection is gone; what went wrong is raised above
                pass
