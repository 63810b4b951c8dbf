"""Shared test plumbing.

CI counts a skipped test as a failure, so a test that needs an outside tool calls :func:`require_tool`:
locally a missing tool skips with the reason, under CI (CI=true) it fails loudly, naming the package that
.ci/run must install.
"""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
ARTIFACTS = REPO / "test-artifacts"
# Fixtures shared by several modules that live beside their helpers (the `robot` receiver).
pytest_plugins = ["tests.alerts_receivers", "tests.windows.fixtures"]

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    if condition:
        return
    if IN_CI:
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    require(path is not None, f"'{name}' not found (install the Debian package '{package}')")
    return path


def require_root(what: str) -> None:
    require(os.geteuid() == 0, f"{what} needs root")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def state_tmpfs(tmp_path) -> Path:
    """A 2 MiB tmpfs for an agent's state directory: filled to the last byte (:func:`fill_file_system`) or
    remounted read-only, it is the full or read-only disk itself, not an imitation of one."""
    import subprocess

    require_root("mounting a small tmpfs as a state directory")
    require_tool("mount", "mount")
    mnt = tmp_path / "state"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill_file_system(directory: Path) -> Path:
    """Fill the file system holding ``directory`` to its last byte; unlink the returned file to free it."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1 << 9, 1):
            try:
                while True:
                    f.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


@pytest.fixture
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


def pytest_configure(config):
    # Under mutmut (tests/mutation.py) every mutant is tried by a pytest session of its own in a forked worker,
    # two at a time: each takes a directory of its own below the given --basetemp, which pytest would
    # otherwise wipe under the other's feet.
    if os.environ.get("MUTANT_UNDER_TEST") and config.option.basetemp:
        base = Path(config.option.basetemp)
        base.mkdir(parents=True, exist_ok=True)
        config.option.basetemp = str(base / f"w{os.getpid()}")


def pytest_runtest_setup(item):
    # A conformance test whose ../shared data is missing skips here, or fails in CI (tests/conformance.py).
    from tests.conformance import skip_missing_cases

    skip_missing_cases(item)


def pytest_sessionfinish(session, exitstatus):
    # Belt and braces for the CI rule: any skip at all turns a green run red.
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if IN_CI and skipped and session.exitstatus == 0:
        reporter.write_line(f"CI: {skipped} test(s) skipped; skips count as failures here", red=True)
        session.exitstatus = 1


# -- the store on both backends ------------------------------------------------------------------------
# Every store-touching test takes the `store` fixture (or `db_url`) and so runs twice: on SQLite in a
# temporary directory and on PostgreSQL (127.0.0.1:5432, trust auth). Each test session creates a database
# of its own (pw_test_<pid>_<random>) through the `test` database and drops it at the end, and every test
# gets a fresh schema in it, so parallel runs and other helpers never collide.
PG_ADMIN_URL = os.environ.get("POINTWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_database():
    """URL (libpq form) of a database private to this test session; dropped at the end."""
    import secrets

    try:
        import psycopg

        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except Exception as exc:  # psycopg missing or server down: both are set-up faults
        require(False, f"PostgreSQL at {PG_ADMIN_URL} not reachable ({exc}); install the Debian package "
                       "'postgresql' and start it")
    name = f"pw_test_{os.getpid()}_{secrets.token_hex(3)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


_schema_counter = iter(range(1, 1_000_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A SQLAlchemy URL of an empty store: a SQLite file, or a fresh PostgreSQL schema (via search_path)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'pointwatch.db'}"
    import psycopg

    base = request.getfixturevalue("pg_database")
    schema = f"t{os.getpid()}_{next(_schema_counter)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    return "postgresql+psycopg://" + base.split("://", 1)[1] + f"?options=-csearch_path%3D{schema}"


@pytest.fixture
def store(db_url):
    """A migrated, empty Store on SQLite and on PostgreSQL."""
    from collector.store import Store

    s = Store(db_url)
    s.upgrade()
    yield s
    s.close()
