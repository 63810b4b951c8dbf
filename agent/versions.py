"""Agent release versions: dotted numbers (``0.2.1``, PEP 440's release segment only), compared as numbers.

One definition for both halves of self-upgrade: the collector checks a release's version with it when one is
added, and the agent compares the policy's ``agent.version`` with its own (an older one is a downgrade, run
only when the policy says ``downgrade: true``). Standard library only: this runs on the agent.
"""

from __future__ import annotations

import re

VERSION_RE = re.compile(r"^\d+(\.\d+){1,3}$")


def parse_version(text) -> tuple[int, ...]:
    """``"0.10.2"`` -> ``(0, 10, 2)``; ValueError naming the text when it is not 2 to 4 dotted numbers.
    Trailing zeros do not count: ``0.2`` and ``0.2.0`` are the same version."""
    if not isinstance(text, str) or not VERSION_RE.match(text):
        raise ValueError(f"{text!r} is not a version (2 to 4 dotted numbers, e.g. 0.2.1)")
    parts = [int(p) for p in text.split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()
    return tuple(parts)
