"""What the command line prints: every value from the store or the user goes through ``cell`` (one
definition, collector/cleantext.py's ``terminal``), so a hostname holding ESC sequences cannot move the
cursor, retitle the window or hide a row on the admin's terminal."""

from __future__ import annotations

import sys
from contextlib import contextmanager

from collector.cleantext import shown, terminal


def cell(value) -> str:
    return terminal(value)


def row(*cells) -> None:
    """One table row: cells escaped, separated by tabs."""
    print("\t".join(cell(c) for c in cells))


def say(template: str, *values, err: bool = False) -> None:
    """A sentence with values in it (``{}`` placeholders), each escaped."""
    print(template.format(*(cell(v) for v in values)), file=sys.stderr if err else sys.stdout)


class _Guarded:
    """A text stream whose writes are cleaned (lines and tabs kept): the net under every other print."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(shown(text, keep_lines=True))
        return len(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextmanager
def terminal_guard():
    """While a command runs, nothing it prints to stdout or stderr carries a control character other
    than newline and tab (ESC, BEL, CR, C1) or invisible formatting (RLO, zero-width): tables escape their
    cells with ``cell``; this catches the rest (a verify problem naming a zip entry, a point name in a
    score sheet, an error quoting input)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Guarded(sys.stdout), _Guarded(sys.stderr)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
