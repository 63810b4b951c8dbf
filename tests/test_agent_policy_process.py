"""A real `pointwatch-agent enroll` + `run` whose local file is bootstrap + fallback, against a collector that
serves it a signed policy: it runs exactly the policy's checks, follows a changed policy within one refresh,
and refuses a policy edited on its own disk.

The collector here is tests/policy_collector.py, a minimal stand-in faithful to the policy wire contract
(envelopes signed with `cryptography` under the collector's key id, reports validated by the collector's own
parser): the real `GET /api/v1/agent/policy` is being built in parallel on the collector side, and the lead
switches this test to the real collector (tests/livecollector.py) at merge.

Intervals and the refresh are shortened with the test-only POINTWATCH_AGENT_TEST_SPEEDUP (5 s checks run
every 0.5 s, the 30 s refresh every 3 s).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import config as config_mod
from agent.platform import current as current_platform
from agent.policy import canonical_digest
from agent.report import probes_for
from agent.vocabulary import AGENT_OUTBOX, AGENT_POLICY_FETCH, NET_CORE_TCP
from tests.conftest import REPO, free_port
from tests.policy_collector import PolicyCollector

POINT = "620102001001"
SPEEDUP = "10"
OWN = {AGENT_OUTBOX, AGENT_POLICY_FETCH}  # the agent's word on itself, in every report


def policy(port: int, name: str) -> dict:
    return {"intervals": {"network": "5s", "devices": "5s", "compliance": "5s", "identity": "5s"},
            "core_network": {"timeout": "300ms", "tcp": [{"target": f"127.0.0.1:{port}", "name": name}]},
            "isolation": {"allowed_interfaces": ["lo"], "timeout": "200ms"},
            "usage": {"forbidden_software": "none", "allowed_ports": []}}


def write_config(tmp: Path, collector: PolicyCollector, closed_port: int) -> Path:
    cfg = tmp / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "{POINT}", name: 测试服务点}}
collector: {{url: "{collector.url}", timeout: 2s, policy_refresh: 30s}}
state_dir: {tmp / 'state'}
fallback:                # runs only until a verified policy exists
  intervals: {{network: 5s, devices: 5s, compliance: 5s, identity: 5s}}
  checks: {{disabled: [usage.processes, usage.listening_ports, usage.accounts, identity.fingerprint]}}
  core_network:
    timeout: 300ms
    tcp: [{{target: "127.0.0.1:{closed_port}", name: 本地目标}}]
""", encoding="utf-8")
    return cfg


def agent_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "agent.cli", *args]


def start_agent(cfg: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "POINTWATCH_AGENT_TEST_SPEEDUP": SPEEDUP}
    with open(log, "ab") as out:
        return subprocess.Popen(agent_cmd("run", "--config", str(cfg)), cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def stop_agent(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def checks_of(report: dict) -> set[tuple[str, str]]:
    return {(r["check"], r["target"]) for r in report["results"] if r["check"] not in OWN}


def own(report: dict, check: str) -> dict:
    return next(r for r in report["results"] if r["check"] == check)


def expected_checks(cfg_path: Path, doc: dict) -> set[tuple[str, str]]:
    """What the policy makes the agent check: the probes the agent's own code builds from bootstrap + policy."""
    under = config_mod.with_policy(config_mod.load(cfg_path), doc, canonical_digest(doc))
    return {(p.check, p.target) for p in probes_for(under, current_platform())}


@pytest.fixture
def listeners():
    socks = []
    for _ in range(2):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        socks.append(s)
    yield [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()


def test_the_agent_runs_its_fetched_policy_follows_a_change_and_refuses_one_edited_on_disk(tmp_path, listeners):
    collector = PolicyCollector(free_port(), POINT).start()
    proc = None
    try:
        first, second = policy(listeners[0], "策略目标一"), policy(listeners[1], "策略目标二")
        collector.policy = first
        cfg = write_config(tmp_path, collector, free_port())
        enrolled = subprocess.run(agent_cmd("enroll", "--config", str(cfg), "--collector", collector.url,
                                            "--code", "ONE-TIME-123"), cwd=REPO, capture_output=True, text=True,
                                  timeout=60)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        keys_file = tmp_path / "state" / "policy_keys.json"
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
        log = tmp_path / "agent.log"

        # 1. Exactly the policy's checks, from the first report on (the first fetch comes before the first run).
        proc = start_agent(cfg, log)
        want = expected_checks(cfg, first)
        assert ("net.core.tcp", "策略目标一") in want and ("identity.fingerprint", "本机") in want
        wait_for(lambda: set().union(*map(checks_of, collector.reports)) >= want if collector.reports else False,
                 90, "reports covering every check of the policy")
        seen = list(collector.reports)
        assert all(r.get("policy_digest") == canonical_digest(first) for r in seen), "a report without the digest"
        assert set().union(*map(checks_of, seen)) == want, "a check the policy does not hold ran"
        fetch = own(seen[-1], AGENT_POLICY_FETCH)
        assert fetch["status"] == "ok" and canonical_digest(first) in fetch["message"]
        agent_log = log.read_text(encoding="utf-8")
        assert agent_log.count("local_check_settings_ignored") == 1 and "fallback.checks" in agent_log

        # 2. A changed policy: the first request after the change gets it, and reports follow without a restart.
        fetches_before = len(collector.fetches)
        collector.policy = second
        new = wait_for(lambda: next((r for r in list(collector.reports)
                                     if r.get("policy_digest") == canonical_digest(second)), None),
                       60, "a report under the changed policy")
        assert proc.poll() is None
        after = collector.fetches[fetches_before:]
        assert after and after[0]["status"] == 200 and after[0]["digest"] == canonical_digest(second), after
        assert checks_of(new) <= expected_checks(cfg, second)
        wait_for(lambda: sum(1 for r in collector.reports if r["seq"] > new["seq"]
                             and (NET_CORE_TCP, "策略目标二") in checks_of(r)) >= 2, 60, "two more network reports")
        network = [r for r in collector.reports if r["seq"] > new["seq"] and any(
            x["check"] == NET_CORE_TCP for x in r["results"])]
        assert all(r["policy_digest"] == canonical_digest(second) for r in network)
        assert all(checks_of(r) & {(NET_CORE_TCP, "策略目标一")} == set() for r in network)

        # 3. Someone at the PC edits the cached policy (the digest made to match): the agent refuses it.
        stop_agent(proc)
        cache = tmp_path / "state" / "policy.json"
        doc = json.loads(cache.read_bytes())
        payload = json.loads(base64.b64decode(doc["payload"]))
        payload["policy"]["core_network"]["tcp"][0]["name"] = "被改的目标"
        payload["digest"] = canonical_digest(payload["policy"])
        doc["payload"] = base64.b64encode(json.dumps(payload, ensure_ascii=False).encode()).decode()
        cache.write_text(json.dumps(doc), encoding="utf-8")
        collector.policy_down = True  # and the collector cannot answer for now
        before = max(r["seq"] for r in collector.reports)
        proc = start_agent(cfg, log)
        told = wait_for(lambda: next((r for r in list(collector.reports) if r["seq"] > before
                                      and (NET_CORE_TCP, "本地目标") in checks_of(r)), None),
                        60, "a report after the restart")
        refusal = own(told, AGENT_POLICY_FETCH)
        assert refusal["status"] == "fail" and "本地缓存的策略" in refusal["message"] and "签名" in refusal["message"]
        assert "policy_digest" not in told, "the local fallback runs: no policy digest"
        collector.policy_down = False
        back = wait_for(lambda: next((r for r in list(collector.reports) if r["seq"] > told["seq"]
                                      and r.get("policy_digest") == canonical_digest(second)), None),
                        60, "the collector's policy again")
        assert own(back, AGENT_POLICY_FETCH)["status"] == "ok"
        assert not any((NET_CORE_TCP, "被改的目标") in checks_of(r) for r in collector.reports)
        assert "policy_cache_refused" in log.read_text(encoding="utf-8")
        stop_agent(proc)
        proc = None

        # 4. By hand at the PC, `check` and `status` say the same: the cached policy, verified, not the file.
        done = subprocess.run(agent_cmd("check", "--config", str(cfg), "--json"), cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        targets = {(r["check"], r["target"]) for r in json.loads(done.stdout)["results"]}
        assert (NET_CORE_TCP, "策略目标二") in targets and (NET_CORE_TCP, "本地目标") not in targets, done.stderr
        assert canonical_digest(second) in done.stderr
        status = subprocess.run(agent_cmd("status", "--config", str(cfg), "--json"), cwd=REPO, capture_output=True,
                                text=True, timeout=60)
        assert json.loads(status.stdout)["policy"] == canonical_digest(second)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        collector.stop()
