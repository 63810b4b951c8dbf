"""A real `pointwatch-agent enroll` + `run` whose local file is bootstrap + fallback, against a real collector
(`pointwatch-collector serve`, tests/livecollector.py) whose county policy applies to the agent's point:

1. it runs exactly the checks of its effective policy, every report carries the issued digest and the
   collector's ``agent.policy`` for those reports is ok; the point earns automatic items;
2. a changed county policy is followed within one refresh, agent.policy staying ok, and a key rotation too;
3. a policy edited on the agent's own disk is refused (``agent.policy_fetch`` fail) and the collector's comes
   back;
4. the same checks passing from the local file alone, at a point no county policy covers, earn nothing.

Everything is read back through the collector's API. A report forged with a digest the collector never issued
(agent.policy fail, the alert) is tests/test_policy_live.py::test_reports_are_judged_by_the_policy_they_name_
and_a_forged_digest_alerts; that only an issued policy's results score, tests/test_policy_scoring.py.

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

import httpx
import pytest

from agent import config as config_mod
from agent.platform import current as current_platform
from agent.policy import canonical_digest
from agent.report import probes_for
from agent.vocabulary import (
    AGENT_OUTBOX,
    AGENT_POLICY,
    AGENT_POLICY_FETCH,
    AGENT_UPGRADE,
    COLLECTOR_CHECK_IDS,
    NET_CORE_TCP,
)
from tests.conftest import REPO, free_port
from tests.livecollector import start_collector

POINT = "620102001001"
COUNTY = "甘肃省/兰州市/城关区"
SPEEDUP = "10"
OWN = {AGENT_OUTBOX, AGENT_POLICY_FETCH, AGENT_UPGRADE} | COLLECTOR_CHECK_IDS  # the agent's word on itself, the collector's


def policy(port: int, name: str) -> dict:
    return {"intervals": {"network": "5s", "devices": "5s", "compliance": "5s", "identity": "5s"},
            "core_network": {"timeout": "300ms", "tcp": [{"target": f"127.0.0.1:{port}", "name": name}],
                             "icmp": [{"target": "127.0.0.1", "name": "核心网关"}]},
            "isolation": {"allowed_interfaces": ["lo"], "timeout": "200ms"},
            "usage": {"forbidden_software": "none", "allowed_ports": []}}


def write_config(tmp: Path, url: str, closed_port: int) -> Path:
    cfg = tmp / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "{POINT}", name: 测试服务点}}
collector: {{url: "{url}", timeout: 2s, policy_refresh: 30s}}
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
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def expected_checks(cfg_path: Path, doc: dict) -> set[tuple[str, str]]:
    """What the policy makes the agent check: the probes the agent's own code builds from bootstrap + policy."""
    under = config_mod.with_policy(config_mod.load(cfg_path), doc, canonical_digest(doc))
    return {(p.check, p.target) for p in probes_for(under, current_platform())}


class Api:
    """The collector's API as a county viewer reads it."""

    def __init__(self, base: str, admin: str, viewer: str):
        self.base, self.admin, self.viewer = base, admin, viewer

    def get(self, path: str, **params) -> dict:
        r = httpx.get(self.base + path, params=params, headers={"Authorization": f"Bearer {self.viewer}"},
                      timeout=30)
        assert r.status_code == 200, r.text
        return r.json()

    def set_county(self, doc: dict) -> None:
        r = httpx.put(f"{self.base}/api/v1/policies/regions/{COUNTY}", json=doc,
                      headers={"Authorization": f"Bearer {self.admin}"}, timeout=30)
        assert r.status_code == 200, r.text

    def effective(self) -> dict:
        return self.get(f"/api/v1/policies/points/{POINT}")

    def results(self, check: str | None = None) -> list[dict]:
        return self.get(f"/api/v1/points/{POINT}/results", **({"check": check} if check else {}),
                        limit=50000)["results"]

    def verdicts(self) -> list[dict]:
        """agent.policy of every stored report, in arrival order."""
        return sorted(self.results(AGENT_POLICY), key=lambda r: (r["received_at"], r["observed_at"]))


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


def test_the_agent_runs_the_collectors_policy_follows_a_change_and_refuses_one_edited_on_disk(tmp_path, listeners):
    c = start_collector(tmp_path)
    proc = None
    try:
        c.cli("points", "add", "--code", POINT, "--name", "城关区甲村", "--region", COUNTY + "/某镇/甲村")
        api = Api(c.base, c.cli("tokens", "create", "--role", "admin", "--region", COUNTY, "--person", "县管理"),
                  c.cli("tokens", "create", "--role", "viewer", "--region", COUNTY, "--person", "县查看"))
        first, second = policy(listeners[0], "策略目标一"), policy(listeners[1], "策略目标二")
        api.set_county(first)
        issued_first = api.effective()
        assert issued_first["digest"] == canonical_digest(issued_first["policy"])

        cfg = write_config(tmp_path, c.base, free_port())
        code = c.cli("enroll-code", "create", "--point", POINT)
        enrolled = subprocess.run(agent_cmd("enroll", "--config", str(cfg), "--collector", c.base, "--code", code),
                                  cwd=REPO, capture_output=True, text=True, timeout=60)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        keys_file = tmp_path / "state" / "policy_keys.json"
        assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
        log = tmp_path / "agent.log"

        # 1. Exactly the effective policy's checks, from the first report on (the first fetch comes first).
        proc = start_agent(cfg, log)
        want = expected_checks(cfg, issued_first["policy"])
        assert (NET_CORE_TCP, "策略目标一") in want and ("identity.fingerprint", "本机") in want

        def ran() -> set:
            return {(r["check"], r["target"]) for r in api.results() if r["check"] not in OWN}

        wait_for(lambda: ran() >= want, 90, "results covering every check of the policy")
        assert ran() == want, "a check the policy does not hold ran"
        verdicts = api.verdicts()
        assert verdicts and all(v["details"]["reported"] == issued_first["digest"] for v in verdicts), \
            "a report without the issued digest"
        assert {v["status"] for v in verdicts} == {"ok"}, verdicts
        fetch = api.results(AGENT_POLICY_FETCH)[-1]
        assert fetch["status"] == "ok" and issued_first["digest"] in fetch["message"]
        agent_log = log.read_text(encoding="utf-8")
        assert agent_log.count("local_check_settings_ignored") == 1 and "fallback.checks" in agent_log
        assert api.effective()["last_fetched_at"] is not None

        # The point earns its automatic 核心网络 item now, from results checked against the issued policy (the
        # 专网专机 item needs internet canaries and the process checks, which a loopback test cannot pass).
        sheet = api.get(f"/api/v1/scores/{POINT}")
        core = next(i for i in sheet["items"] if i["id"] == "network.core")
        assert core["mode"] == "auto" and core["state"] == "met" and core["earned"] == core["points"], core
        assert sheet["earned"] >= core["points"] > 0

        # 2. A changed county policy: followed within one refresh, without a restart, agent.policy still ok.
        seen = len(verdicts)
        api.set_county(second)
        issued_second = api.effective()
        assert issued_second["digest"] != issued_first["digest"]
        changed_at = time.monotonic()
        wait_for(lambda: any(v["details"]["reported"] == issued_second["digest"] for v in api.verdicts()[seen:]),
                 60, "a report under the changed policy")
        assert time.monotonic() - changed_at < 30 / float(SPEEDUP) + 10, "not within one refresh"
        assert proc.poll() is None
        wait_for(lambda: any(r["target"] == "策略目标二" for r in api.results(NET_CORE_TCP)), 60,
                 "a network result under the changed policy")
        after = api.verdicts()[seen:]
        first_new = next(i for i, v in enumerate(after) if v["details"]["reported"] == issued_second["digest"])
        assert {v["status"] for v in after} == {"ok"}, after  # the old digest too: within the grace
        # Ingest stores a verdict row when the verdict changes (issue 21): none after the first under the
        # changed policy names the old one, and the point's verdict now, carried by later reports, is new.
        assert all(v["details"]["reported"] == issued_second["digest"] for v in after[first_new:]), after
        now = wait_for(lambda: next((r for r in api.get(f"/api/v1/points/{POINT}")["results"]
                                     if r["check"] == AGENT_POLICY
                                     and r["received_at"] > after[first_new]["received_at"]), None),
                       60, "a later report under the changed policy")
        assert now["details"]["reported"] == issued_second["digest"] and now["status"] == "ok", now

        # 2b. A key rotation: the next key is announced under the current one (answered in full, not 304), the
        #     running agent pins it, the switch waits for no one, and a policy signed by the new key alone runs.
        c.cli("policy", "keys", "next")
        wait_for(lambda: len(json.loads(keys_file.read_bytes())) == 2, 30, "the agent pinning the announced key")
        c.cli("policy", "keys", "switch")
        third = {**second, "intervals": {**second["intervals"], "network": "6s"}}
        api.set_county(third)
        issued_third = api.effective()
        n = len(api.verdicts())
        wait_for(lambda: any(v["details"]["reported"] == issued_third["digest"] for v in api.verdicts()[n:]), 60,
                 "a report under the policy signed by the new key")
        assert {v["status"] for v in api.verdicts()[n:]} == {"ok"}
        assert "policy_refused" not in log.read_text(encoding="utf-8")
        cached = json.loads((tmp_path / "state" / "policy.json").read_bytes())
        assert [s["key_id"] for s in cached["signatures"]] == [json.loads(keys_file.read_bytes())[1]["key_id"]]
        stop_agent(proc)
        proc = None

        # 3. Someone at the PC edits the cached policy (the digest made to match) while the collector is
        #    down: the agent refuses it, runs its local fallback and says so; then takes the collector's again.
        port = int(c.base.rsplit(":", 1)[1])
        c.stop()
        cache = tmp_path / "state" / "policy.json"
        doc = json.loads(cache.read_bytes())
        payload = json.loads(base64.b64decode(doc["payload"]))
        payload["policy"]["core_network"]["tcp"][0]["name"] = "被改的目标"
        payload["digest"] = canonical_digest(payload["policy"])
        doc["payload"] = base64.b64encode(json.dumps(payload, ensure_ascii=False).encode()).decode()
        cache.write_text(json.dumps(doc), encoding="utf-8")
        offset = log.stat().st_size
        proc = start_agent(cfg, log)
        wait_for(lambda: "policy_cache_refused" in log.read_text(encoding="utf-8")[offset:]
                 and "send_failed" in log.read_text(encoding="utf-8")[offset:], 60,
                 "the refusal and a report queued while the collector is down")
        c = start_collector(tmp_path, port=port)
        api.base = c.base

        def refusal():
            return next((r for r in api.results(AGENT_POLICY_FETCH) if r["status"] == "fail"), None)

        told = wait_for(refusal, 60, "the refusal at the collector")
        assert "本地缓存的策略" in told["message"] and "签名" in told["message"], told
        assert told["details"]["reason"] == "bad_signature"
        local = wait_for(lambda: [r for r in api.results(NET_CORE_TCP) if r["target"] == "本地目标"], 60,
                         "the local fallback's network result")
        assert local, "the local fallback ran while the cached policy was refused"
        unstamped = [v for v in api.verdicts() if v["details"].get("reported") is None]
        assert unstamped and {v["status"] for v in unstamped} == {"error"}, \
            "the fallback's reports carry no digest, and the collector says so"
        # The verdict history is of changes (issue 21): the first verdict after the fallback's last that names
        # the collector's policy again, however soon it came (in the same batch as the backlog, say).
        def back_again():
            seen = api.verdicts()
            last = max(i for i, v in enumerate(seen) if v["details"].get("reported") is None)
            return next((v for v in seen[last + 1:] if v["details"]["reported"] == issued_third["digest"]), None)

        back = wait_for(back_again, 60, "the collector's policy again")
        assert back["status"] == "ok"
        wait_for(lambda: api.results(AGENT_POLICY_FETCH)[-1]["status"] == "ok", 30, "agent.policy_fetch ok again")
        assert not any(r["target"] == "被改的目标" for r in api.results(NET_CORE_TCP))
        assert json.loads(cache.read_bytes())["payload"] != doc["payload"], "the cache is the collector's again"
        stop_agent(proc)
        proc = None

        # 4. By hand at the PC, `check` and `status` say the same: the cached policy, verified, not the file.
        done = subprocess.run(agent_cmd("check", "--config", str(cfg), "--json"), cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        targets = {(r["check"], r["target"]) for r in json.loads(done.stdout)["results"]}
        assert (NET_CORE_TCP, "策略目标二") in targets and (NET_CORE_TCP, "本地目标") not in targets, done.stderr
        assert issued_third["digest"] in done.stderr
        status = subprocess.run(agent_cmd("status", "--config", str(cfg), "--json"), cwd=REPO, capture_output=True,
                                text=True, timeout=60)
        assert json.loads(status.stdout)["policy"] == issued_third["digest"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        c.stop()


def test_the_same_checks_run_from_the_local_file_alone_earn_no_automatic_item(tmp_path, listeners):
    """A point no county policy covers: its agent runs its local file, the checks pass, and the point earns
    nothing automatic, because no exam the county set was checked against (scores count only reports whose
    agent.policy is an issued digest)."""
    c = start_collector(tmp_path)
    proc = None
    try:
        c.cli("points", "add", "--code", POINT, "--name", "城关区甲村", "--region", COUNTY + "/某镇/甲村")
        api = Api(c.base, "", c.cli("tokens", "create", "--role", "viewer", "--region", COUNTY, "--person", "县查看"))
        cfg = tmp_path / "agent.yaml"
        cfg.write_text(f"""
point: {{code: "{POINT}", name: 测试服务点}}
collector: {{url: "{c.base}", timeout: 2s, policy_refresh: 30s}}
state_dir: {tmp_path / 'state'}
fallback:
  intervals: {{network: 5s, devices: 5s, compliance: 5s, identity: 5s}}
  core_network:
    timeout: 300ms
    tcp: [{{target: "127.0.0.1:{listeners[0]}", name: 本地目标}}]
    icmp: [{{target: 127.0.0.1, name: 核心网关}}]
""", encoding="utf-8")
        code = c.cli("enroll-code", "create", "--point", POINT)
        enrolled = subprocess.run(agent_cmd("enroll", "--config", str(cfg), "--collector", c.base, "--code", code),
                                  cwd=REPO, capture_output=True, text=True, timeout=60)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        proc = start_agent(cfg, tmp_path / "agent.log")
        wait_for(lambda: {r["check"] for r in api.results() if r["status"] in ("ok", "warn")}
                 >= {NET_CORE_TCP, "net.core.icmp"}, 90, "passing core network results")
        fetch = api.results(AGENT_POLICY_FETCH)[-1]
        assert fetch["status"] == "warn" and fetch["details"]["source"] == "local", fetch
        assert api.results(AGENT_POLICY) == [], "no policy ever applied: the collector judges no digest"
        sheet = api.get(f"/api/v1/scores/{POINT}")
        core = next(i for i in sheet["items"] if i["id"] == "network.core")
        assert core["state"] != "met" and core["earned"] in (0, 0.0, None), core
        assert sheet["earned"] == 0, sheet
        stop_agent(proc)
        proc = None
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        c.stop()
