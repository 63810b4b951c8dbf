"""Region confinement in SQL: "this path is the scope or beneath it", exactly as ``regions.is_within`` says.

``LIKE 'scope/%'`` is not that on SQLite, whose LIKE ignores ASCII letter case: a principal on
``Gansu/Lanzhou`` would see ``gansu/lanzhou/...``. So the one expression compiles per database:

- SQLite: a range on the BINARY collation, ``path >= 'scope/' AND path < 'scope0'`` ('0' follows '/'):
  exact, case-sensitive, and a plain index on the column serves it.
- PostgreSQL (and anything else): ``LIKE 'scope/%'`` with the wildcards escaped, which is case-sensitive
  there; a range would not do under a linguistic collation (en_US sorts '/' apart from its neighbours).
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, literal, or_
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from collector.registry.regions import normalize_path


class _Beneath(ColumnElement):
    """``column`` lies strictly beneath the path ``prefix`` (which ends in '/')."""

    inherit_cache = True
    # No Boolean type: SQLAlchemy would render "<expr> = 1" on SQLite, around an unparenthesised AND.
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("low", InternalTraversal.dp_clauseelement),
                           ("high", InternalTraversal.dp_clauseelement),
                           ("pattern", InternalTraversal.dp_clauseelement)]

    def __init__(self, column, prefix: str):
        self.column = column
        self.low = bindparam(None, prefix, unique=True)
        self.high = bindparam(None, prefix[:-1] + "0", unique=True)
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        self.pattern = bindparam(None, escaped + "%", unique=True)


@compiles(_Beneath)
def _like(element, compiler, **kw):
    return compiler.process(element.column.like(element.pattern, escape="\\"), **kw)


@compiles(_Beneath, "sqlite")
def _binary_range(element, compiler, **kw):
    return "(" + compiler.process(and_(element.column >= element.low, element.column < element.high), **kw) + ")"


def within(column, scope: str):
    """A WHERE clause: ``column`` is ``scope`` or a path beneath it (always true for the root ``/``)."""
    scope = normalize_path(scope)
    if scope == "/":
        return literal(True)
    return or_(column == scope, _Beneath(column, scope + "/"))


def scoped(stmt, column, scope: str):
    """``stmt`` confined to ``scope`` (unchanged for the root)."""
    scope = normalize_path(scope)
    return stmt if scope == "/" else stmt.where(within(column, scope))
