"""Text from outside that people will read: the one definition of what is cleaned, refused or escaped.

Three places take such text: an agent's reports and its enrolment (hostname, fingerprint), the point
import (names, addresses) and the people's own input (usernames, descriptions). What they share:

- invisible formatting that makes a shown name read differently from what it is — bidi overrides and
  isolates (RLO), zero-width spaces and joiners, BOM, soft hyphen — is removed (``INVISIBLE``);
- control characters (C0, DEL, C1: BEL, ESC and so every terminal escape sequence) and lone UTF-16
  surrogates become U+FFFD (``CONTROL``), so what was there stays visible as "something odd".

Reports and enrolments are *cleaned* (a PC with odd bytes in a process name must not lose its reports,
collector/ingest/accept.py); a point import *refuses* such a cell (a person typed it and can fix it,
collector/registry/spreadsheet.py); and whatever the command line prints goes through ``terminal`` (the
CLI never writes a control character to a terminal, collector/cli/output.py).
"""

from __future__ import annotations

import re

INVISIBLE = re.compile("[\u00ad\u061c\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff]")
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def shown(text: str, keep_lines: bool = False) -> str:
    """A string people will read: invisible formatting removed, control characters made visible (U+FFFD)."""
    text = INVISIBLE.sub("", text)
    return (CONTROL_BUT_LINES if keep_lines else CONTROL).sub("\ufffd", text)


def needs_cleaning(text: str | None) -> bool:
    """True when ``shown`` would change the text: it holds invisible formatting or control characters."""
    return bool(text) and (INVISIBLE.search(text) is not None or CONTROL.search(text) is not None)


def terminal(value) -> str:
    """Any value as one line safe for a terminal: ``shown`` of its text, tabs and newlines included (a
    table's own separators are the caller's, never the data's)."""
    return shown("" if value is None else str(value))
