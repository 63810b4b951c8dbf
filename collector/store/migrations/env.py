"""Alembic environment: the models' metadata is the target; the connection comes from the Store.

Run through :func:`collector.store.migrate.upgrade` (``pointwatch-collector db upgrade``, or ``serve`` on
start). On PostgreSQL an advisory lock keeps two collectors starting at once from migrating twice.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from collector.store import historymodels, releasemodels, reviewmodels
from collector.store.models import Base

MIGRATION_LOCK = 0x706F696E74  # "point": advisory lock key for schema changes

config = context.config
target_metadata = Base.metadata
assert reviewmodels.TABLES and releasemodels.TABLES and historymodels.TABLES  # Base's tables too, defined beside models.py


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        from collector.store import make_engine

        engine = make_engine(config.get_main_option("sqlalchemy.url"))
        with engine.connect() as conn:
            _run(conn)
        engine.dispose()
    else:
        _run(connection)


def _run(connection) -> None:
    is_pg = connection.dialect.name == "postgresql"
    if is_pg:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        connection.commit()
    try:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
    finally:
        if is_pg:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})
            connection.commit()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run `pointwatch-collector db upgrade`")
run_migrations_online()
