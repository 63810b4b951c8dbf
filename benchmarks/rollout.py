"""The rollout of agent releases at province scale: the rollout view and the automatic-pause judgement.

Seeds a store directly (Core inserts) with N points in a province's region tree (省/市/县/镇/村, about five
points a village, two registered devices each), the policy documents of a rollout in progress (the province
names release A, every prefecture sets its own core-network target, one county and a few villages elsewhere
name release B, a few points have documents of their own), both releases held, every point's latest report
(the agent version it runs) and its latest ``agent.upgrade`` result (most ``ok``; some ``fail`` with a
reason, build faults and download refusals, for A or for B). Then times, as the median of several runs:

- ``rollout.stats(store, "/")`` (``GET /api/v1/agent-releases`` for a province admin, the admin page,
  ``agent-release list``) and ``rollout.stats`` of the county on B (a county admin's view);
- ``rollout.evaluate`` for one new build-fault failure (what ingest runs on the request path when a report
  carries it), of a point in the county's stage (B) and of a point in the province's stage (A); neither
  failure reaches the pause share, so every run does the whole judgement.

**Baseline**: a plain SELECT of every point of the scope with its latest agent.upgrade result (what the view
must at least read), for the root and for the county; each figure is printed with its ratio against the
baseline of its scope (the evaluations: of their stage's scope).

    .venv/bin/python benchmarks/rollout.py [--points 25000] [--runs 5] [--store sqlite|postgresql]

PostgreSQL: a throw-away database pw_rollout_<pid> is created through --pg-url's server and dropped after.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import and_, insert, select, text  # noqa: E402

from agent.upgrade.state import BAD_SIGNATURE, DIGEST_MISMATCH, DOES_NOT_START, ROLLED_BACK  # noqa: E402
from agent.vocabulary import AGENT_UPGRADE  # noqa: E402
from collector.policy.documents import parse_document  # noqa: E402
from collector.releases import rollout  # noqa: E402
from collector.store import Store  # noqa: E402
from collector.store import models as m  # noqa: E402
from collector.store.regionscope import scoped  # noqa: E402
from collector.store.releasemodels import AgentRelease  # noqa: E402

PROVINCE = "甘肃省"
A, B, OLD = "0.3.0", "0.4.0", "0.2.0"
SHA = {A: "a" * 64, B: "b" * 64}
PLATFORMS = ("windows-x86_64", "linux-x86_64")
TARGET = "代理程序"  # the agent's agent.upgrade target (agent/upgrade/manager.py)
SHARE, LEAST = 0.2, 3  # collector/releases/config.py's defaults
POINTS_PER_VILLAGE, VILLAGES_PER_TOWN, TOWNS_PER_COUNTY, COUNTIES_PER_PREFECTURE = 5, 10, 10, 8


def region_of(i: int) -> str:
    village = i // POINTS_PER_VILLAGE
    town = village // VILLAGES_PER_TOWN
    county = town // TOWNS_PER_COUNTY
    prefecture = county // COUNTIES_PER_PREFECTURE
    return f"{PROVINCE}/市{prefecture:02d}/县{county:03d}/镇{town:04d}/村{village:05d}"


def county_of(region: str) -> str:
    return "/".join(region.split("/")[:3])


def documents(n: int) -> list[tuple[str, str, str, int, str]]:
    """(scope, key, region, version, YAML) of the rollout's documents: A province-wide, B in one county (the
    fourth, or the last there is) and in four villages of the first county; prefectures' own targets."""
    last = n - 1
    counties = sorted({county_of(region_of(i)) for i in range(0, n, POINTS_PER_VILLAGE)})
    b_county = counties[min(3, len(counties) - 1)]
    window = "window: '00:00-24:00', max_kbps: 512"
    docs = [("region", PROVINCE, PROVINCE, 1, f"agent: {{version: '{OLD}', {window}}}\n"
             "core_network: {timeout: 2s, tcp: [{target: '10.62.0.1:443'}]}\n"),
            ("region", PROVINCE, PROVINCE, 2, f"agent: {{version: '{A}', {window}}}\n"
             "core_network: {timeout: 2s, tcp: [{target: '10.62.0.1:443'}]}\n"
             "isolation: {internet_canaries: ['114.114.114.114:53']}\n")]
    for prefecture in sorted({"/".join(region_of(i).split("/")[:2]) for i in range(0, n, POINTS_PER_VILLAGE)}):
        docs.append(("region", prefecture, prefecture, 1, "core_network: {tcp: [{target: '10.62.1.1:443'}, "
                                                          "{target: '10.62.1.2:8080'}]}\n"))
    docs.append(("region", b_county, b_county, 1, f"agent: {{version: '{B}', window: '01:00-05:00'}}\n"))
    first_county = counties[0]
    villages = sorted({region_of(i) for i in range(0, n, POINTS_PER_VILLAGE) if region_of(i).startswith(first_county)})
    for village in villages[1:5]:
        docs.append(("region", village, village, 1, f"agent: {{version: '{B}'}}\n"))
    for i in (7, last // 2, last):  # points with documents of their own
        docs.append(("point", code_of(i), region_of(i), 1, "usage: {processes: {forbidden: ['qq.exe']}}\n"))
    return docs


def code_of(i: int) -> str:
    return f"62{i:010d}"


def version_for(region: str, docs) -> str:
    named = [(len(key), body) for scope, key, _, _, body in docs if scope == "region" and "agent:" in body
             and (region == key or region.startswith(key + "/"))]
    body = max(named)[1]
    return B if f"'{B}'" in body else A


def seed(store: Store, n: int) -> dict:
    rng = random.Random(23)
    now = datetime.now(timezone.utc)
    docs = documents(n)
    latest_docs = {}
    for scope, key, _, version, _ in docs:
        latest_docs[(scope, key)] = max(version, latest_docs.get((scope, key), 0))
    points, states, results = [], [], []
    chosen: dict[str, str] = {}
    for i in range(n):
        code, region = code_of(i), region_of(i)
        target = version_for(region, [d for d in docs if latest_docs[(d[0], d[1])] == d[3]])
        devices = [{"kind": "kiosk", "name": "自助服务一体机", "icmp": f"10.{i % 250}.{i // 250 % 250}.21"},
                   {"kind": "printer", "name": "前台打印机", "snmp": {"host": f"10.{i % 250}.{i // 250 % 250}.30"}}]
        points.append(dict(code=code, name=f"{region.rsplit('/', 1)[-1]}第{i % POINTS_PER_VILLAGE + 1}服务点",
                           region_path=region, profile="lanzhou-basic-2023", devices=devices,
                           report_interval_s=60, simulated=True, created_at=now))
        roll = rng.random()
        if (target == B and roll < 0.04) or (target == A and roll < 0.005):
            reason = rng.choice((DOES_NOT_START, ROLLED_BACK))
        elif (target == B and roll < 0.08) or (target == A and roll < 0.02):
            reason = rng.choice((DIGEST_MISMATCH, BAD_SIGNATURE))
        else:
            reason = None
        running = (A if target == B else OLD) if reason else target
        details = {"running": running, "target": target}
        if reason:
            status, message = "fail", f"升级到版本 {target} 失败：{reason}；继续运行 {running}。"
            details.update(state="failed", reason=reason, detail=None, sha256=SHA[target])
        else:
            status, message = "ok", f"按策略运行版本 {running}"
            details.update(state="current", window="00:00-24:00", max_kbps=512)
            if target == B and county_of(region) != county_of(region_of(0)) and B not in chosen:
                chosen[B] = code  # a point of the county's stage that has not failed yet
            elif target == A and i > n // 2 and A not in chosen:
                chosen[A] = code
        states.append(dict(point_code=code, last_received_at=now, last_digest="", seq_gaps=0, reports_total=1,
                           agent_version=running, n_ok=1, n_warn=0, n_fail=int(bool(reason)), n_error=0,
                           silent_after=now + timedelta(minutes=3)))
        results.append(dict(point_code=code, check=AGENT_UPGRADE, target=TARGET, status=status, value=None,
                            unit=None, message=message, details=details, observed_at=now, received_at=now,
                            since=now, report_id="00000000-0000-4000-8000-000000000000"))
        for check in ("net.core.tcp", "isolation.internet", "host.resources"):  # the table holds more than it
            results.append(dict(point_code=code, check=check, target="本机", status="ok", value=None, unit=None,
                                message="正常", details={}, observed_at=now, received_at=now, since=now,
                                report_id="00000000-0000-4000-8000-000000000000"))
    rows = []
    for scope, key, region, version, body in docs:
        rows.append(dict(scope=scope, key=key, version=version, region_path=region, source=body,
                         body=parse_document(body, f"{key}.yaml").body, diff=[], created_at=now, created_by="bench"))
    releases = [dict(version=v, platform=p, file_name=f"pointwatch-agent-{v}-{p}", size=30_000_000,
                     sha256=SHA[v], manifest=b"{}", added_at=now) for v in (A, B) for p in PLATFORMS]
    with store.engine.begin() as conn:
        for k in range(0, len(points), 5000):
            conn.execute(insert(m.Point), points[k:k + 5000])
        conn.execute(insert(m.PointState), states)
        for k in range(0, len(results), 20000):
            conn.execute(insert(m.LatestResult), results[k:k + 20000])
        conn.execute(insert(m.PolicyDocument), rows)
        conn.execute(insert(AgentRelease), releases)
        conn.execute(text("ANALYZE"))
    b_county = next(key for scope, key, _, _, body in docs if key.count("/") == 2 and f"'{B}'" in body)
    return {"county": b_county, "fresh": chosen}


def fail_now(store: Store, code: str, version: str) -> None:
    """``code``'s latest agent.upgrade result becomes a new build fault of ``version``."""
    with store.engine.begin() as conn:
        conn.execute(m.LatestResult.__table__.update().where(
            m.LatestResult.point_code == code, m.LatestResult.check == AGENT_UPGRADE).values(
            status="fail", details={"running": A if version == B else OLD, "target": version, "state": "failed",
                                    "reason": DOES_NOT_START, "detail": None, "sha256": SHA[version]}))


def baseline(store: Store, scope: str) -> None:
    with store.engine.connect() as conn:
        stmt = (select(m.Point.code, m.Point.region_path, m.LatestResult.status, m.LatestResult.details)
                .join(m.LatestResult, and_(m.LatestResult.point_code == m.Point.code,
                                           m.LatestResult.check == AGENT_UPGRADE), isouter=True))
        conn.execute(scoped(stmt, m.Point.region_path, scope)).all()


def timed(fn, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def run(store: Store, args) -> None:
    t0 = time.perf_counter()
    world = seed(store, args.points)
    county, fresh = world["county"], world["fresh"]
    print(f"seeded {args.points} points in {time.perf_counter() - t0:.1f} s; county on {B}: {county}")
    view = rollout.stats(store, "/")
    for r in view["releases"]:
        stages = ", ".join(f"{s['stage']} {s['points']}/{s['failed']}/{s['build_faults']}" for s in r["stages"])
        print(f"  {r['version']}: running {r['running']}, failed {r['failed']} {r['reasons']}; stages "
              f"(points/failed/build faults): {stages}")
    base_root = timed(lambda: baseline(store, "/"), args.runs)
    base_county = timed(lambda: baseline(store, county), args.runs)
    print(f"baseline SELECT of every point with its latest {AGENT_UPGRADE}: root {base_root * 1000:.1f} ms, "
          f"county {base_county * 1000:.1f} ms")
    figures = [("stats, root", timed(lambda: rollout.stats(store, "/"), args.runs), base_root),
               ("stats, county", timed(lambda: rollout.stats(store, county), args.runs), base_county)]
    for version, base in ((B, base_county), (A, base_root)):
        code = fresh[version]
        fail_now(store, code, version)
        paused = rollout.evaluate(store, [code], SHARE, LEAST)
        assert paused == [], f"the benchmark's failure paused a stage: {paused}"
        figures.append((f"evaluate, one new failure of {version} ({'county' if version == B else 'province'} "
                        "stage)", timed(lambda c=code: rollout.evaluate(store, [c], SHARE, LEAST), args.runs), base))
    for name, t, base in figures:
        print(f"{name:<52} median {t * 1000:9.1f} ms   ratio {t / base:7.1f}x baseline")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--points", type=int, default=25000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    ap.add_argument("--pg-url", default=os.environ.get("POINTWATCH_TEST_PG",
                                                       "postgresql://postgres@127.0.0.1:5432/test"))
    args = ap.parse_args()
    print(f"rollout benchmark: {args.points} points, {args.store}, median of {args.runs} runs, "
          f"load average {os.getloadavg()[0]:.1f}")
    if args.store == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.open(tmp)
            try:
                run(store, args)
            finally:
                store.close()
        return
    import psycopg

    dbname = f"pw_rollout_{os.getpid()}_{secrets.token_hex(2)}"
    with psycopg.connect(args.pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{dbname}"')
    try:
        store = Store("postgresql+psycopg://" + args.pg_url.split("://", 1)[1].rsplit("/", 1)[0] + "/" + dbname)
        store.upgrade()
        try:
            run(store, args)
        finally:
            store.close()
    finally:
        with psycopg.connect(args.pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


if __name__ == "__main__":
    main()
