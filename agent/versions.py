"""Agent release versions: dotted numbers (``0.2.1``, PEP 440's release segment only), compared numerically.

One helper for both halves of the self-upgrade: the collector checks a release's version with it, the agent
compares the policy's version with its own (a downgrade needs the policy's say-so). Standard library only.
"""

from __future__ import annotations

import re

# ASCII digits only (``\d`` admits other scripts' digits) and no leading zeros, so that two versions are the same
# text exactly when they are the same numbers: the agent compares texts where it asks "is this the target?".
VERSION_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*)){1,3}$")


def parse_version(text) -> tuple[int, ...]:
    """``"0.2.1"`` -> ``(0, 2, 1)``; ValueError naming the text when it is not 2 to 4 dotted numbers."""
    if not isinstance(text, str) or not VERSION_RE.fullmatch(text):
        raise ValueError(f"{text!r} is not a version (2 to 4 dotted numbers without leading zeros, such as 0.2.1)")
    return tuple(int(part) for part in text.split("."))
