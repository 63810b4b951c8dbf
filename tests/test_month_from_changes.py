"""A month stored as what changed scores exactly as the month stored sample by sample (issue 21).

One generated month of five-minute reports (outages, a flapping isolation check, a printer that fails for a
day, a kiosk installed mid-month, a USB check that stops being reported, latency moving within and beyond its
deadband, a stretch of reports under a policy the collector never issued) goes through the collector's
pipeline twice: into a store that writes every result (``heartbeat_s=0``, the behaviour before issue 21) and
into one that writes only what changed, with a half-hour heartbeat (at the default five minutes every
five-minute sample would be a heartbeat). The oracle is the first store's rows read the way
scoring read them before keysets existed: every results row a sample, the policy verdict joined from the
report's own agent.policy row. The month's sheet, the evidence sheet, its last messages, the hourly roll-ups and
the exported bundle of the second store must equal what the oracle gives, and its bundle verifies.
"""

from __future__ import annotations

import dataclasses
import random
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import and_, func, select
from sqlalchemy.orm import aliased

from agent.vocabulary import AGENT_POLICY
from agent.wire import Fingerprint, Host, Report, Result
from collector.evidence.bundle import export
from collector.evidence.keys import load_or_create
from collector.evidence.period import Period
from collector.evidence.sheet import build_sheet, lookback
from collector.evidence.verify import verify_bundle
from collector.ingest.pipeline import ReportPipeline
from collector.scoring import score_period
from collector.scoring.engine import Observation
from collector.scoring.profiles import level_of
from collector.scoring.scores import counted, point_sheet, profile_for
from collector.store import Store, enrolment, points
from collector.store import models as m
from collector.store import queries as q
from collector.store.retention import RetentionPolicy, hourly, prune, rollup
from collector.store.samples import epoch_of
from collector.store.trust import collectors_own, trusted
from tests.helpers import REGION, issue_policy

POINT = "620102001077"
PROFILE = "lanzhou-basic-2023"
START = datetime(2026, 3, 1, tzinfo=timezone.utc)
DAYS = 30
INTERVAL = 300  # five-minute reports: a month is 8,640 of them
HEARTBEAT_S = 1800.0
FP = Fingerprint("m-77", "SN77", ["00:11:22:33:44:77"])


def _month(digest: str, agent: str) -> list[tuple[datetime, Report]]:
    """(received_at, report) of the generated month, in the order the agent sends them."""
    rnd = random.Random(21)
    out: list[tuple[datetime, Report]] = []
    outages = [(4 * 288 + 100, 4 * 288 + 172),      # six hours on day 5
               (14 * 288 + 10, 14 * 288 + 34),      # two hours on day 15
               (22 * 288, 22 * 288 + 1)]            # one report lost
    latency = 0.020
    seq = 0
    for i in range(DAYS * 288):
        if any(a <= i < b for a, b in outages):
            continue
        at = START + timedelta(seconds=i * INTERVAL + 7)
        seq += 1
        latency = max(0.001, latency * (1 + rnd.uniform(-0.1, 0.1)))
        if rnd.random() < 0.03:
            latency *= 4  # a spike well beyond the deadband
        flapping = 9 * 288 <= i < 9 * 288 + 60
        results = [
            _result("net.core.icmp", "核心网关", "warn" if latency > 0.15 else "ok",
                    f"延迟 {latency * 1000:.1f} 毫秒", latency, "seconds",
                    {"loss_ratio": round(rnd.choice([0.0, 0.0, 0.0, 0.005, 0.25]), 3)}, at),
            _result("net.core.tcp", "核心网关", "ok", "端口可达", None, None, {}, at),
            _result("isolation.internet", "互联网", "fail" if flapping and i % 2 else "ok",
                    "可访问互联网" if flapping and i % 2 else "无法访问互联网（符合要求）", None, None, {}, at),
            _result("isolation.interfaces", "本机", "ok", "仅接入医保专网", None, None, {}, at),
            _result("usage.processes", "本机", "ok", f"进程 {rnd.randint(80, 90)} 个，无违规软件",
                    float(rnd.randint(80, 90)), "count", {}, at),
            _result("host.resources", "本机", "ok", "资源正常", None, None, {}, at),
        ]
        if i % 3 == 0:
            printer = "fail" if 12 * 288 <= i < 13 * 288 else "ok"
            results.append(_result("device.printer", "打印机", printer,
                                   "打印机缺纸" if printer == "fail" else "打印机就绪", None, None, {}, at))
            if i >= 10 * 288:
                results.append(_result("device.kiosk", "自助机", "ok", "自助机在线", None, None, {}, at))
        if i % 12 == 0:
            results.append(_result("identity.fingerprint", "本机", "ok", "指纹一致", None, None, {}, at))
        if i < 20 * 288 and i % 3 == 1:
            results.append(_result("usage.removable_media", "本机", "fail" if i % 97 == 1 else "ok",
                                   "插入了U盘" if i % 97 == 1 else "未插入移动存储", None, None, {}, at))
        host = Host(hostname="cun-pc-77", os="Windows 10", boot_time=START - timedelta(days=1), fingerprint=FP)
        report = Report(report_id=f"00000000-0000-4000-8000-{i:012d}", seq=seq, agent_id=agent,
                        point_code=POINT, agent_version="0.1.0", collected_at=at - timedelta(seconds=5),
                        sent_at=at - timedelta(seconds=5), host=host, results=results)
        # Days 17-18: the agent runs a policy the collector never issued; nothing it reports then counts.
        report.policy_digest = "0" * 64 if 16 * 288 <= i < 18 * 288 else digest
        out.append((at, report))
    return out


def _result(check, target, status, message, value, unit, details, at) -> Result:
    return Result(check=check, target=target, status=status, message=message, value=value, unit=unit,
                  details=details, observed_at=at - timedelta(seconds=5), duration_ms=3.0)


def _fill(store: Store, heartbeat_s: float | None) -> None:
    points.upsert_point(store, POINT, "月度样本服务点", REGION, profile=PROFILE, report_interval_s=INTERVAL,
                        created_at=START - timedelta(days=1))
    agent, _ = enrolment.enroll(store, enrolment.create_enroll_code(store, POINT), POINT, "cun-pc-77",
                                {"machine_id": FP.machine_id, "serial": FP.serial, "macs": list(FP.macs)})
    pipeline = ReportPipeline(store) if heartbeat_s is None else ReportPipeline(store, heartbeat_s=heartbeat_s)
    digest = issue_policy(store, POINT, f"intervals: {{network: {INTERVAL}s}}\n")
    for at, report in _month(digest, agent):
        assert pipeline.receive([report], at, sender=agent) == (1, 0)


def _oracle_observations(store: Store, since: datetime, until: datetime):
    """The samples as read before keysets: every results row one, the verdict joined from its report's row."""
    verdict = aliased(m.Result)
    # seconds computed by the database as the store's readers do (SQLite's julianday is exact to ~50 µs only)
    stmt = (select(epoch_of(store, m.Result.received_at), m.Result.check, m.Result.target, m.Result.status, verdict.status)
            .outerjoin(verdict, and_(verdict.report_pk == m.Result.report_pk, verdict.check == AGENT_POLICY,
                                     collectors_own(verdict)))
            .where(m.Result.point_code == POINT, m.Result.received_at >= since, m.Result.received_at < until,
                   trusted(m.Result))
            .order_by(m.Result.check, m.Result.received_at, m.Result.id))
    with store.session() as s:
        for row in s.execute(stmt):
            yield tuple(row)


@pytest.fixture(scope="module")
def month(tmp_path_factory):
    base = tmp_path_factory.mktemp("month")
    stores = {}
    for name, heartbeat in (("every", 0.0), ("changes", HEARTBEAT_S)):
        store = Store(f"sqlite:///{base / (name + '.db')}")
        store.upgrade()
        _fill(store, heartbeat)
        stores[name] = store
    yield stores, base
    for store in stores.values():
        store.close()


def _rows(store: Store) -> int:
    with store.session() as s:
        return s.scalar(select(func.count()).select_from(m.Result))


def test_the_changes_store_keeps_a_fraction_of_the_rows(month):
    stores, _ = month
    every, changes = _rows(stores["every"]), _rows(stores["changes"])
    with stores["every"].session() as s:
        reports = s.scalar(select(func.count()).select_from(m.Report))
    assert reports == DAYS * 288 - 72 - 24 - 1
    assert changes < every / 3, (changes, every)


def test_the_month_sheet_equals_the_sheet_of_every_sample(month):
    stores, _ = month
    start, end = START, START + timedelta(days=DAYS)
    sheet = point_sheet(stores["changes"], POINT, start, end)
    oracle = score_period(profile_for(PROFILE),
                          (Observation(*r[:4]) for r in _oracle_observations(stores["every"],
                                                                                   start - timedelta(hours=3), end)
                           if counted(r[1], r[4])),
                          start, end, interval=INTERVAL, silent_after=3 * INTERVAL,
                          known_from=START - timedelta(days=1), now=datetime.now(timezone.utc),
                          level=level_of(REGION))
    assert dataclasses.asdict(sheet) == dataclasses.asdict(oracle)
    # The month is not trivially perfect: the outages, the flapping and the foreign policy cost points.
    assert any(i.state == "not_met" for i in sheet.items), [(i.id, i.state) for i in sheet.items]
    assert sheet.reported_share < 1


def test_the_evidence_sheet_and_its_messages_equal_those_of_every_sample(month):
    stores, _ = month
    period = Period(START + timedelta(days=8), START + timedelta(days=13), "day 9", "day 13")
    now = datetime.now(timezone.utc)

    def sheet_of(rows):
        return build_sheet(PROFILE, (r[:4] for r in rows if counted(r[1], r[4])), period, INTERVAL,
                           silent_after=3 * INTERVAL, known_from=START - timedelta(days=1), now=now,
                           level=level_of(REGION))

    since = period.start - lookback(INTERVAL)
    ours = sheet_of(q.stream_observations(stores["changes"], POINT, since, period.end))
    oracle = sheet_of(_oracle_observations(stores["every"], since, period.end))
    assert dataclasses.asdict(ours) == dataclasses.asdict(oracle)
    for s in ours.dedicated() + ours.devices():
        assert q.last_messages(stores["changes"], POINT, period.start, period.end, s.check, s.target) == \
            q.last_messages(stores["every"], POINT, period.start, period.end, s.check, s.target), s.check


def test_hourly_rollups_count_every_sample(month):
    stores, _ = month
    end = START + timedelta(days=DAYS)
    tables = {}
    for name, store in stores.items():
        rollup(store, end + timedelta(hours=2))
        tables[name] = [(h.check, h.target, h.hour, h.n_ok, h.n_warn, h.n_fail, h.n_error)
                        for h in hourly(store, POINT, START, end)]
    assert tables["changes"] == tables["every"]
    assert sum(r[3] + r[4] + r[5] + r[6] for r in tables["changes"]) > DAYS * 288 * 6


def test_the_bundle_of_the_month_verifies_and_scores_as_every_sample(month):
    stores, base = month
    key = load_or_create(base / "key")
    period = Period(START + timedelta(days=14), START + timedelta(days=21), "day 15", "day 21")
    manifests = {}
    for name, store in stores.items():
        path = base / f"{name}.zip"
        with open(path, "wb") as fh:
            manifests[name] = export(store, key, fh, period, codes=[POINT])
        verdict = verify_bundle(path, key.public_key())
        assert verdict.ok, verdict.problems
    ours, oracle = manifests["changes"]["points"][0], manifests["every"]["points"][0]
    # the digests differ (each store enrolled its own agent id, which the report bodies carry); the rest not
    assert {k: v for k, v in ours["chain"].items() if k not in ("head", "tail")} == \
        {k: v for k, v in oracle["chain"].items() if k not in ("head", "tail")}
    assert ours["chain"]["reports"] > 1500 and ours["score"] == oracle["score"]


def test_after_pruning_the_kept_reports_keep_every_sample(month):
    """Pruning the first ten days keeps, for each key, the row the kept reports carry it under (a key whose
    last change is older than the cut still has its state in the first kept reports)."""
    stores, base = month
    cut = START + timedelta(days=10, hours=1)
    end = START + timedelta(days=DAYS)
    oracle = [r[:4] for r in q.stream_observations(stores["changes"], POINT, cut, end)]
    assert oracle == [r[:4] for r in _oracle_observations(stores["every"], cut, end)]
    copy = base / "pruned.db"
    with sqlite3.connect(base / "changes.db") as src, sqlite3.connect(copy) as dst:  # WAL included
        src.backup(dst)
    pruned = Store(f"sqlite:///{copy}")
    try:
        rollup(pruned, end + timedelta(hours=2))
        got = prune(pruned, RetentionPolicy(raw_days=DAYS - 10, batch=500), now=cut + timedelta(days=DAYS - 10))
        assert got["reports"] > 9 * 288, got
        with pruned.session() as s:
            assert s.scalar(select(func.min(m.Report.received_at))) >= cut
        assert [r[:4] for r in q.stream_observations(pruned, POINT, cut, end)] == oracle
        assert point_sheet(pruned, POINT, cut + timedelta(hours=3), end) == \
            point_sheet(stores["changes"], POINT, cut + timedelta(hours=3), end)
    finally:
        pruned.close()
