"""Mutation testing of the critical modules with mutmut: ``make mutation`` (all of them) and ``.ci/run``
(those a change touched).

Each module is mutated on its own, in a work directory of its own (``mutants/<module>/``, git-ignored),
against only the fast in-process tests that cover it (MODULES below): mutmut copies the sources there,
learns which of those tests reach each mutated function, and runs just those for each mutant. A test that
drives a collector or agent in another process cannot kill a mutant (mutmut switches mutants inside its own
process), so MODULES lists in-process tests.

The scores measured last are kept in ``tests/mutation-scores.json`` with the commit they were measured at
and a fingerprint of each module (the module's file and its tests' files). ``--changed`` mutates only the
modules whose fingerprint differs from the recorded one, which in a clean clone of a commit whose scores
were recorded is none (a module with no recorded score yet is named and left to ``make mutation``); a
module scoring below 90 % (or below its recorded score where that was lower) fails the run. ``--record`` writes what was measured back to the file.

``--collect`` mutates nothing and takes the results earlier runs left under ``mutants/`` instead, where they
measured the files as they are now (so modules can be measured one at a time and recorded together).

Usage: python -m tests.mutation [--changed] [--collect] [--record] [--budget-s N] [--max-children N] [MODULE ...]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "mutants"
SCORES = REPO / "tests" / "mutation-scores.json"
THRESHOLD = 90.0

# The critical modules and the fast tests that cover each (pytest arguments: test files or node ids, and
# options). The one place a module is added.
# SQLITE: a module with no SQL of its own is mutated against its store tests on SQLite only (the same
# Python runs on both stores; the suite runs them on both): it halves the time a mutant takes.
SQLITE = ("-k", "not postgresql")
# The agent's policy tests that start a collector process (their `live` fixture, 10 s and more a mutant) add
# nothing in process that tests/test_policy_envelope.py and the keeper tests do not hold already.
NO_LIVE_COLLECTOR = ("-k", "not tampered_cache_is_refused and not no_policy_at_the_collector "
                           "and not enrolment_pins_the_answers and not refusal_ends_when")
# The verifier is held by bundles made in the test (tests/test_verify_offline.py, no store) and by the exporter's
# own bundles tampered with; the other bundle tests (PDF, XLSX, tests/test_security_verify.py's bundle per
# case) take seconds a mutant and add nothing of the verifier's.
BUNDLE_TAMPERING = tuple(f"tests/test_evidence_bundle.py::{name}" for name in (
    "test_changing_one_byte_of_any_file_fails_naming_it", "test_a_flipped_byte_in_the_zip_itself_fails",
    "test_dropped_or_reordered_report_lines_break_the_chain",
    "test_a_forger_who_re_signs_is_caught_by_the_key_and_by_the_chain", "test_swapping_the_key_fails"))
MODULES: dict[str, tuple[str, ...]] = {
    "collector/registry/regions.py": ("tests/test_regions.py",),
    "collector/accounts/duties.py": ("tests/test_security_duties.py",),
    "collector/store/regionscope.py": ("tests/test_regions.py", "tests/test_security_region_case.py"),
    # login: the step called directly; test_security_auth.py's HTTP brute-force tests (a minute of argon2 a
    # mutant) hold the same limits through the form, which test_login_step.py holds on the step itself.
    "collector/accounts/login.py": ("tests/test_login_step.py", "tests/test_login_unknown_user.py",
                                    "tests/test_security_auth.py::test_the_login_step_audits_who_from_where_and_why"
                                    "_and_refuses_what_no_one_is", *SQLITE),
    "collector/accounts/throttle.py": ("tests/test_login_throttle.py",),
    "agent/outbox.py": ("tests/test_agent_outbox.py", "tests/test_agent_outbox_storage.py",
                        "tests/test_agent_against_collector.py", "tests/test_agent_sender.py", *SQLITE),
    "agent/sender.py": ("tests/test_agent_outbox.py", "tests/test_agent_against_collector.py",
                        "tests/test_agent_sender.py", *SQLITE),
    "collector/evidence/chain.py": ("tests/test_evidence_chain.py", "tests/test_store_basics.py"),
    "collector/evidence/verify.py": ("tests/test_verify_offline.py", *BUNDLE_TAMPERING, *SQLITE),
    "collector/scoring/rules.py": ("tests/test_scoring_rules.py",),
    "collector/scoring/engine.py": ("tests/test_scoring_now_and_edges.py", "tests/test_scoring_engine.py",
                                    "tests/test_scoring_period.py"),
    "collector/ingest/admission.py": ("tests/test_admission.py",),
    "agent/ed25519.py": ("tests/test_ed25519.py",),
    "agent/policy.py": ("tests/test_policy_envelope.py", "tests/test_agent_policy.py",
                        "tests/test_agent_policy_rollback.py", *NO_LIVE_COLLECTOR),
}


def test_files(module: str) -> list[str]:
    """The test files among a module's pytest arguments."""
    args = MODULES[module]
    return sorted({a.split("::", 1)[0] for i, a in enumerate(args)
                   if a.startswith("tests/") and not (i and args[i - 1] == "-k")})

# Linked into each work directory: what mutmut copies (source_paths, also_copy in pyproject.toml) and the
# tests read. pyproject.toml itself is written there with the module's settings added.
LINKED = ("agent", "collector", "tests", "configs", "docs", "README.md")


def slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def fingerprint(module: str) -> str:
    """sha256 over the module's file and the files of its tests: what a recorded score was measured on."""
    digest = hashlib.sha256()
    for rel in (module, *test_files(module)):
        digest.update(rel.encode() + b"\0" + (REPO / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def load_scores() -> dict:
    return json.loads(SCORES.read_text("utf-8")) if SCORES.exists() else {"commit": None, "modules": {}}


def module_config(module: str) -> str:
    """The repository's pyproject.toml with the module's keys added to its [tool.mutmut] table."""
    text = (REPO / "pyproject.toml").read_text("utf-8")
    header = re.search(r"^\[tool\.mutmut\]\n", text, re.M)
    if not header:
        raise SystemExit("pyproject.toml has no [tool.mutmut] table")
    keys = (f"only_mutate = {json.dumps([module])}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps(list(MODULES[module]))}\n")
    return text[: header.end()] + keys + text[header.end():]


def prepare(module: str) -> Path:
    work = WORK / slug(module)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for name in LINKED:
        (work / name).symlink_to(REPO / name)
    # tests/conftest.py finds ../shared beside the repository; the copy mutmut runs sits two levels deeper.
    if (REPO.parent / "shared").exists():
        (work / "shared").symlink_to(REPO.parent / "shared")
    (work / "pyproject.toml").write_text(module_config(module), "utf-8")
    (work / "fingerprint").write_text(fingerprint(module), "utf-8")  # what this run measures
    return work


def mutmut(work: Path, *args: str, timeout: float | None = None, log=None) -> subprocess.CompletedProcess:
    """Run mutmut in ``work``; past ``timeout`` its whole process group (the forked workers too) is killed."""
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    with subprocess.Popen(command, cwd=work, text=True, stdin=subprocess.DEVNULL, start_new_session=True,
                          stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT if log else subprocess.PIPE) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(command, proc.returncode, out, err)


def run_module(module: str, max_children: int, timeout: float) -> dict:
    work = prepare(module)
    started = time.monotonic()
    basetemp = work / "tmp"
    with (work / "run.log").open("w") as log:
        # the tests' --basetemp: tests/conftest.py gives each mutant's session a directory of its own below it
        os.environ["PYTEST_ADDOPTS"] = f"--basetemp={basetemp}"
        try:
            run = mutmut(work, "run", "--max-children", str(max_children), timeout=timeout, log=log)
        finally:
            del os.environ["PYTEST_ADDOPTS"]
    seconds = round(time.monotonic() - started)
    if run.returncode != 0:
        tail = (work / "run.log").read_text("utf-8", "replace")[-3000:]
        raise RuntimeError(f"mutmut run failed for {module} (exit {run.returncode}):\n{tail}")
    mutmut(work, "export-cicd-stats")
    stats = json.loads((work / "mutants" / "mutmut-cicd-stats.json").read_text("utf-8"))
    survivors = [line.strip().rsplit(": ", 1) for line in mutmut(work, "results").stdout.splitlines()
                 if ": " in line]
    with (work / "survivors.txt").open("w") as out:
        for name, status in survivors:
            out.write(f"## {name}: {status}\n{mutmut(work, 'show', name).stdout}\n")
    total = stats["total"]
    # A mutant that makes its tests hang until mutmut's timeout is caught as surely as one that fails them.
    killed = stats["killed"] + stats["timeout"]
    result = {"killed": killed, "total": total, "score": round(100.0 * killed / total, 1) if total else 100.0,
              "survived": stats["survived"], "no_tests": stats["no_tests"], "timeout": stats["timeout"],
              "suspicious": stats["suspicious"], "seconds": seconds,
              "survivors": [name for name, status in survivors],
              "fingerprint": (work / "fingerprint").read_text("utf-8")}
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    return result


def collected(module: str) -> dict | None:
    """The result a finished run left in the module's work directory, if it measured the files as they are."""
    path = WORK / slug(module) / "result.json"
    if not path.exists():
        return None
    result = json.loads(path.read_text("utf-8"))
    return result if result["fingerprint"] == fingerprint(module) else None


def head_commit() -> str | None:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def uncommitted(modules) -> list[str]:
    """Files of the given modules (and their tests) that differ from HEAD: a score is recorded for a commit."""
    files = sorted({f for m in modules for f in (m, *test_files(m))})
    out = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=REPO, capture_output=True, text=True)
    return [line[3:] for line in out.stdout.splitlines()] if out.returncode == 0 else files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="critical modules to mutate (default: all of MODULES)")
    parser.add_argument("--changed", action="store_true",
                        help="only the modules whose file or tests differ from the recorded fingerprint")
    parser.add_argument("--record", action="store_true", help=f"write the scores to {SCORES.relative_to(REPO)}")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="stop (and fail) when the modules to mutate have not finished in this many seconds")
    parser.add_argument("--collect", action="store_true",
                        help="mutate nothing: take the results earlier runs left under mutants/ (only those that "
                             "measured the module and its tests as they are now)")
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)

    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        parser.error(f"not a critical module (see MODULES in tests/mutation.py): {', '.join(unknown)}")
    recorded = load_scores()
    modules = args.modules or list(MODULES)
    if args.changed:
        # A module with no recorded score yet is not mutated here: a first measurement of a large module takes
        # longer than CI's budget. It is named, so the gap is seen; `make mutation` and --record close it.
        unrecorded = [m for m in modules if m not in recorded["modules"]]
        if unrecorded:
            print(f"mutation: no recorded score yet (not mutated here; run `make mutation` and record): "
                  f"{', '.join(unrecorded)}", flush=True)
        modules = [m for m in modules if m not in unrecorded
                   and recorded["modules"][m].get("fingerprint") != fingerprint(m)]
        print(f"mutation: {len(modules)} critical module(s) differ from the scores recorded at "
              f"{recorded.get('commit')}: {', '.join(modules) or 'none'}", flush=True)

    deadline = time.monotonic() + args.budget_s if args.budget_s else None
    failures, measured = [], {}
    for module in modules:
        timeout = None if deadline is None else deadline - time.monotonic()
        if timeout is not None and timeout <= 0:
            failures.append(f"{module}: not mutated, the {args.budget_s:.0f} s budget is spent "
                            "(run `make mutation` and record the scores)")
            continue
        if args.collect:
            result = collected(module)
            if result is None:
                failures.append(f"{module}: no finished run under mutants/ measured it as it is now")
                continue
        else:
            print(f"mutation: {module} against {' '.join(MODULES[module])}", flush=True)
        try:
            result = result if args.collect else run_module(module, args.max_children, timeout)
        except subprocess.TimeoutExpired:
            failures.append(f"{module}: not finished within the {args.budget_s:.0f} s budget "
                            "(run `make mutation` and record the scores)")
            continue
        measured[module] = result
        was = recorded["modules"].get(module, {}).get("score")
        floor = THRESHOLD if was is None else min(THRESHOLD, was)
        print(f"mutation: {module}: {result['killed']}/{result['total']} killed ({result['score']} %), "
              f"{result['survived']} survived, {result['no_tests']} without a test, {result['seconds']} s; "
              f"survivors in mutants/{slug(module)}/survivors.txt", flush=True)
        if result["score"] < floor:
            failures.append(f"{module}: {result['score']} % killed, below {floor} %")

    if measured:
        killed = sum(r["killed"] for r in measured.values())
        total = sum(r["total"] for r in measured.values())
        print(f"mutation: {killed}/{total} killed ({100.0 * killed / total:.1f} %) over {len(measured)} module(s)")
    if args.record and measured:
        dirty = uncommitted(measured)
        if dirty:
            print(f"mutation: not recorded: {', '.join(dirty)} differ from the commit (commit them, then record)")
            return 1
        recorded["commit"] = head_commit()
        recorded["modules"].update(measured)
        recorded["modules"] = {m: recorded["modules"][m] for m in MODULES if m in recorded["modules"]}
        SCORES.write_text(json.dumps(recorded, ensure_ascii=False, indent=2) + "\n", "utf-8")
    for failure in failures:
        print(f"mutation: FAILED {failure}", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
