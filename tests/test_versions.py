"""Release versions (agent/versions.py): the text a policy and a manifest name, compared as numbers."""

from __future__ import annotations

import pytest

from agent.versions import parse_version


@pytest.mark.parametrize("text, numbers", [("0.2", (0, 2)), ("0.2.1", (0, 2, 1)), ("10.0.0.3", (10, 0, 0, 3))])
def test_dotted_numbers_are_versions(text, numbers):
    assert parse_version(text) == numbers


@pytest.mark.parametrize("text", [
    "1", "1.2.3.4.5", "v0.2.1", "0.2.1-rc1", "0.2.", ".2.1", "0.2.1\n",
    "0.02.0",       # a leading zero: the same numbers as 0.2.0 under another text
    "0.٢.0",        # an Arabic-Indic digit (\\d would take it)
    "０.2.0",        # a fullwidth digit
    2, None,
])
def test_anything_else_is_refused_naming_it(text):
    with pytest.raises(ValueError, match="is not a version"):
        parse_version(text)
