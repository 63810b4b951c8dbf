"""Release versions (agent/versions.py): the text a policy and a manifest name, compared as numbers."""

from __future__ import annotations

import pytest

from agent import __version__
from agent.versions import canonical, parse_version


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


@pytest.mark.parametrize("text, one", [
    ("0.2", "0.2.0"), ("0.2.0", "0.2.0"), ("0.2.0.0", "0.2.0"), ("0.2.1", "0.2.1"), ("1.2.3.0", "1.2.3"),
    ("1.2.3.4", "1.2.3.4"), ("1.0", "1.0.0"), ("0.0.0.1", "0.0.0.1"),
])
def test_every_text_of_a_version_has_one_canonical_form(text, one):
    assert canonical(text) == one
    assert parse_version(canonical(text))[:3] == (parse_version(text) + (0, 0))[:3]


def test_the_agents_own_version_is_canonical():
    # the agent compares the policy's (canonical) version with its own: its own must be in that form too
    assert canonical(__version__) == __version__


def test_a_policy_naming_a_version_in_another_text_names_the_canonical_one():
    from agent import config

    local = config.parse('point: {code: "620102001001"}\n', "agent.yaml")
    for text in ("0.2", "0.2.0", "0.2.0.0"):
        cfg = config.with_policy(local, {"agent": {"version": text, "window": "00:00-24:00"}}, "d1")
        assert cfg.upgrade.version == "0.2.0"
