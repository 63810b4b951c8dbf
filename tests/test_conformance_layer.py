"""The conformance layer's own rules (tests/conformance.py): missing ../shared data skips with the reason
outside CI, fails in CI, and never leaves a parametrised test with an empty (silently passing) set."""

from __future__ import annotations

import pytest

from tests import conformance, conftest


@pytest.fixture
def no_shared(monkeypatch, tmp_path):
    monkeypatch.setattr(conformance, "SHARED", tmp_path / "shared")


def test_missing_data_skips_naming_it_outside_ci(no_shared, monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", False)
    with pytest.raises(pytest.skip.Exception, match=r"\.\./shared/testdata/snmp not found: conformance test "
                                                    "runs beside the steering repo and in CI"):
        conformance.shared_path("testdata", "snmp")


def test_missing_data_fails_in_ci(no_shared, monkeypatch):
    monkeypatch.setattr(conftest, "IN_CI", True)
    with pytest.raises(pytest.fail.Exception, match=r"required in CI: \.\./shared/seeds not found"):
        conformance.shared_path("seeds")


def test_cases_are_never_an_empty_set(no_shared, tmp_path):
    cases = conformance.shared_cases(lambda path: ["never read"], "testdata", "snmp")
    assert len(cases) == 1 and cases[0].id == "shared-missing"
    (missing,) = cases[0].values
    assert isinstance(missing, conformance.MissingShared) and "../shared/testdata/snmp not found" in missing.reason
    (tmp_path / "shared" / "testdata" / "snmp").mkdir(parents=True)
    (empty,) = conformance.shared_cases(lambda path: [], "testdata", "snmp")[0].values
    assert "holds no cases" in empty.reason
    assert [c.values for c in conformance.shared_cases(lambda path: ["a", "b"], "testdata", "snmp",
                                                       ids=str.upper)] == [("a",), ("b",)]
