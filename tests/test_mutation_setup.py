"""The mutation-testing set-up (tests/mutation.py, ``make mutation``, the step in .ci/run) holds together:
every critical module and each of its tests exists, the per-module mutmut table it writes is valid TOML
naming that module alone, the recorded scores are the ones tests/README.md shows, and a change to a
module's file or tests is what makes CI mutate it again."""

from __future__ import annotations

import re

import tomllib

from tests import mutation
from tests.conftest import REPO


def test_every_critical_module_and_each_of_its_tests_exists():
    for module, tests in mutation.MODULES.items():
        assert (REPO / module).is_file(), module
        assert mutation.test_files(module), module
        for test in mutation.test_files(module):
            assert (REPO / test).is_file(), (module, test)
        assert "tests/mutation.py" not in tests


def test_the_work_directory_config_mutates_one_module_against_its_tests():
    shared = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["tool"]["mutmut"]
    assert "only_mutate" not in shared and "pytest_add_cli_args_test_selection" not in shared
    for module, tests in mutation.MODULES.items():
        table = tomllib.loads(mutation.module_config(module))["tool"]["mutmut"]
        assert table["only_mutate"] == [module]
        assert table["pytest_add_cli_args_test_selection"] == list(tests)
        assert table["source_paths"] == shared["source_paths"]


def test_a_fingerprint_covers_the_module_and_its_tests_only():
    module = "collector/registry/regions.py"
    before = mutation.fingerprint(module)
    assert before == mutation.fingerprint(module) and len(before) == 64
    assert before != mutation.fingerprint("collector/accounts/duties.py")
    saved = mutation.MODULES[module]
    try:
        mutation.MODULES[module] = (*saved, "tests/test_admission.py")  # one more test file: measured anew
        assert mutation.fingerprint(module) != before
    finally:
        mutation.MODULES[module] = saved


def test_the_recorded_scores_are_the_ones_tests_readme_shows():
    recorded = mutation.load_scores()
    assert set(recorded["modules"]) <= set(mutation.MODULES)
    readme = (REPO / "tests" / "README.md").read_text("utf-8")
    for module, score in recorded["modules"].items():
        assert 0 <= score["killed"] <= score["total"]
        row = re.search(rf"^\| `{re.escape(module)}` \| (\d+)/(\d+) \| ([\d.]+) % \|", readme, re.M)
        assert row, f"tests/README.md has no score row for {module}"
        assert (int(row[1]), int(row[2]), float(row[3])) == (score["killed"], score["total"], score["score"]), module
