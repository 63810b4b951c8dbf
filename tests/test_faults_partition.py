"""A network partition between a real agent and a real collector, in network namespaces.

    agent namespace (A) ── va0 10.77.0.1/24 ═══ veth ═══ vc0 10.77.0.2/24 ── collector namespace (C)

`pointwatch-agent run` (intervals sped up 10×: 0.5 s) in A reports to `pointwatch-collector serve` in C.
The link is cut (`ip link set va0 down`) for 12 s — two dozen report intervals — and restored. Then:
the outbox held every report; the backlog drains in order, in bounded batches paced apart, while the
first request after the restore already carries fresh reports; every report is stored exactly once; and
the chart series (the function behind /ui/points/{code}/series) has values in every bucket of the
partition, because it buckets by when the agent measured, not when the report arrived.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from agent.sender import BATCH_LIMIT, DRAIN_PAUSE
from collector.store import series as series_repo
from tests.conftest import REPO, require_root, require_tool
from tests.faultkit import Collector, wait_for
from tests.test_agent_service import last_seq, outbox_seqs

SPEEDUP = 10
AGENT_IP, COLLECTOR_IP = "10.77.0.1", "10.77.0.2"
POINT = "620102009001"
CUT_S = 12.0


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def namespaces():
    require_root("network namespaces")
    require_tool("ip", "iproute2")
    a, c = f"pw11p{os.getpid()}a", f"pw11p{os.getpid()}c"
    try:
        for ns in (a, c):
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", a, "link", "add", "va0", "type", "veth", "peer", "name", "vc0", "netns", c)
        ip("-n", a, "addr", "add", f"{AGENT_IP}/24", "dev", "va0")
        ip("-n", c, "addr", "add", f"{COLLECTOR_IP}/24", "dev", "vc0")
        ip("-n", a, "link", "set", "va0", "up")
        ip("-n", c, "link", "set", "vc0", "up")
        yield a, c
    finally:
        for ns in (a, c):
            ip("netns", "del", ns, check=False)


def ns_get(ns: str, url: str, token: str) -> dict:
    """GET a JSON document from inside a namespace (the collector is reachable only there)."""
    code = ("import json,sys,urllib.request;"
            "r=urllib.request.Request(sys.argv[1],headers={'Authorization':'Bearer '+sys.argv[2]});"
            "sys.stdout.write(urllib.request.urlopen(r,timeout=10).read().decode())")
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, url, token],
                          capture_output=True, text=True, timeout=30)
    if done.returncode:
        raise OSError(done.stderr[-500:])
    return json.loads(done.stdout)


def test_partition_outbox_holds_backlog_drains_in_order_paced_and_chart_gap_fills(tmp_path, namespaces):
    from collector.store import Store, database_url

    agent_ns, collector_ns = namespaces
    collector = Collector(tmp_path, host=COLLECTOR_IP, netns=collector_ns)
    collector.cli("points", "add", "--code", POINT, "--name", "分区测试点", "--region", "甘肃省/兰州市/城关区/某镇/某村")
    admin = collector.cli("tokens", "create", "--role", "admin", "--person", "信息科")
    enrol_code = collector.cli("enroll-code", "create", "--point", POINT)
    collector.start()
    base = collector.base

    def reports() -> list[dict]:
        return ns_get(collector_ns, f"{base}/api/v1/points/{POINT}/reports?from=2000-01-01T00:00:00Z", admin)["reports"]

    state = tmp_path / "state"
    cfg = tmp_path / "agent.yaml"
    cfg.write_text(f"""
point: {{code: "{POINT}", name: 分区测试点}}
collector: {{url: "{base}", timeout: 2s}}
state_dir: {state}
intervals: {{network: 5s, devices: 5s, compliance: 5s, identity: 5s}}
core_network:
  timeout: 300ms
  count: 1
  icmp: [{{target: 127.0.0.1, name: 本机}}]
  tcp: [{{target: "{COLLECTOR_IP}:{collector.port}", name: 采集端}}]
""", encoding="utf-8")
    agent_cmd = ["ip", "netns", "exec", agent_ns, sys.executable, "-m", "agent.cli"]
    try:
        wait_for(lambda: _ready(collector_ns, base), 60, "collector /readyz in its namespace", step=0.5)
        enrolled = subprocess.run([*agent_cmd, "enroll", "--config", str(cfg), "--code", enrol_code], cwd=REPO,
                                  capture_output=True, text=True, timeout=60)
        assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
        env = {**os.environ, "POINTWATCH_AGENT_TEST_SPEEDUP": str(SPEEDUP)}
        with open(tmp_path / "agent.log", "wb") as out:
            agent = subprocess.Popen([*agent_cmd, "run", "--config", str(cfg)], cwd=REPO, env=env, stdout=out,
                                     stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: len(reports()) >= 8, 60, "reports before the cut", step=0.5)
            t_cut = datetime.now(timezone.utc)
            ip("-n", agent_ns, "link", "set", "va0", "down")
            time.sleep(CUT_S)
            held = outbox_seqs(state)
            t_restore = datetime.now(timezone.utc)
            ip("-n", agent_ns, "link", "set", "va0", "up")
            assert len(held) > BATCH_LIMIT, f"the outbox held only {len(held)} reports through the partition"
            wait_for(lambda: len(outbox_seqs(state)) <= 10, 90, "the backlog to drain", step=0.5)
            time.sleep(0.5)
        finally:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(30) == 0
        rows = reports()
    finally:
        collector.stop()

    # Every report once: stored or still waiting in the outbox (what was written in the last instant).
    stored = [r["seq"] for r in rows]
    assert len(stored) == len(set(stored)), "a report was stored twice"
    assert sorted(stored + outbox_seqs(state)) == list(range(1, last_seq(state) + 1))
    assert set(held) <= set(stored), "a report held through the partition was not delivered"

    # One agent, so one request = one receive time. After the restore:
    requests: dict[str, list[dict]] = {}
    for r in rows:
        requests.setdefault(r["received_at"], []).append(r)
    after = [v for k, v in sorted(requests.items()) if _ts(k) >= t_restore]
    backlog = set(held)
    drain = [[r for r in req if r["seq"] in backlog] for req in after]
    drain = [(req, old) for req, old in zip(after, drain, strict=True) if old]
    assert len(drain) >= 2, "the backlog went in one request: the drain is not paced"
    assert all(len(req) <= BATCH_LIMIT for req in after)
    # ... fresh reports (written after the restore) ride along with the first backlog batch,
    first_req = drain[0][0]
    assert any(r["seq"] not in backlog and r["seq"] > max(held) for r in first_req), "fresh reports starved"
    # ... the backlog itself goes oldest first, batch after batch,
    olds = [r["seq"] for _req, old in drain for r in sorted(old, key=lambda r: r["seq"])]
    assert olds == sorted(olds), "the backlog drained out of order"
    # ... paced: backlog batches are apart by the drain pause (a lower bound, so a slow machine only helps).
    times = [_ts(req[0]["received_at"]) for req, _old in drain]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert min(gaps) >= 0.5 * DRAIN_PAUSE / SPEEDUP, gaps

    # The chart: every 1-second bucket inside the partition has a value, delivered late but placed right.
    data = tmp_path / "data"
    env_url = os.environ.pop("POINTWATCH_DATABASE_URL", None)
    try:
        store = Store(database_url(data))
    finally:
        if env_url is not None:
            os.environ["POINTWATCH_DATABASE_URL"] = env_url
    try:
        since, until = t_cut - timedelta(seconds=2), t_restore + timedelta(seconds=2)
        series = series_repo.check_series(store, POINT, "net.core.icmp", since, until, buckets=1000, min_width=1.0)
    finally:
        store.close()
    values = series["targets"]["本机"]["value"]
    inside = [v for t, v in zip(series["t"], values, strict=True)
              if t_cut.timestamp() + 1 <= t < t_restore.timestamp() - 1]
    assert len(inside) >= CUT_S - 3
    assert all(v is not None for v in inside), f"the chart shows a gap where the backlog belongs: {inside}"


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _ready(ns: str, base: str) -> bool:
    done = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c",
                           f"import urllib.request;urllib.request.urlopen('{base}/readyz',timeout=2)"],
                          capture_output=True, timeout=30)
    return done.returncode == 0


