"""The conformance layer: tests that read ../shared/ (the standards' texts in seeds/, real SNMP recordings
in testdata/snmp/), which sits beside the repository in the steering checkout and in CI but not in a
clone of its own.

Such a test asks for its data through :func:`shared_path`: when the data is there it runs; elsewhere it
skips, naming what is missing; in CI (CI=true) the same call fails, since CI must run every conformance
test. A test parametrised by that data takes its cases from :func:`shared_cases`, which never returns an
empty set (an empty parameter set would let the test vanish without a word): when the data is missing it
returns one case that skips (fails in CI) with the reason.

Everything else runs on data the project writes itself (tests/testdata/), in every clone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from tests.conftest import SHARED, require

WHY = "conformance test runs beside the steering repo and in CI"


def shared_missing(*parts: str) -> str | None:
    """Why ../shared/<parts> cannot be used here, or None when it is there."""
    path = SHARED.joinpath(*parts)
    return None if path.exists() else f"../shared/{'/'.join(parts)} not found: {WHY}"


def shared_path(*parts: str) -> Path:
    """../shared/<parts>; skips the calling test (fails it in CI) when that path is not there."""
    reason = shared_missing(*parts)
    require(reason is None, reason or "")
    return SHARED.joinpath(*parts)


class MissingShared:
    """The one parameter a conformance test gets when its data is missing; see pytest_runtest_setup."""

    def __init__(self, reason: str):
        self.reason = reason

    def __repr__(self) -> str:
        return "MissingShared"


def shared_cases(load: Callable[[Path], Sequence], *parts: str, ids: Callable[[object], str] | None = None) -> list:
    """Parameters read from ../shared/<parts> by ``load``; never empty (see the module docstring)."""
    reason = shared_missing(*parts)
    cases = [] if reason else list(load(SHARED.joinpath(*parts)))
    if not cases:
        reason = reason or f"../shared/{'/'.join(parts)} holds no cases: {WHY}"
        return [pytest.param(MissingShared(reason), id="shared-missing")]
    return [pytest.param(c, id=ids(c)) if ids else c for c in cases]


def skip_missing_cases(item) -> None:
    """Called from conftest's pytest_runtest_setup: a MissingShared parameter skips (fails in CI)."""
    callspec = getattr(item, "callspec", None)
    for value in (callspec.params.values() if callspec else ()):
        if isinstance(value, MissingShared):
            require(False, value.reason)
