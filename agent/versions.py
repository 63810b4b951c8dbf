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


def canonical(text) -> str:
    """The one text of a version's numbers: ``"0.2"``, ``"0.2.0"`` and ``"0.2.0.0"`` are all ``"0.2.0"``.

    Trailing zeros past the third number are dropped and a shorter version is padded to three, the form of
    the agent's own ``__version__``. A policy's ``agent.version`` (agent and collector), ``agent-release
    add|sign|pause|resume`` and a manifest's version are all compared in this form, so "is this the target?"
    never depends on how an admin wrote the number. ValueError as :func:`parse_version`."""
    numbers = list(parse_version(text))
    while len(numbers) > 3 and numbers[-1] == 0:
        numbers.pop()
    numbers += [0] * (3 - len(numbers))
    return ".".join(str(n) for n in numbers)


def canonical_or_none(text) -> str | None:
    """:func:`canonical`, or None for what is no version (an old report's or a hand-made policy's text)."""
    try:
        return canonical(text)
    except ValueError:
        return None
