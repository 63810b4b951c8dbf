"""Alert timelines driven by synthetic report streams through the store's real ingest path, on an
injected clock: fire, resolve, de-duplication, flap damping, silence of a point, for-durations,
inhibition, silences, overnight maintenance windows, and a notifier outage across a restart."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from agent.wire import Fingerprint, Host, Report, Result
from collector.alerts import AlertEngine, parse
from collector.alerts.dispatch import dispatch_all
from collector.ingest.pipeline import PointsChanged, ReportPipeline
from collector.store import Store, points
from collector.store.alerts import alerts_firing_counts, create_silence, expire_silence
from collector.store.models import Alert, Notification
from tests.alerts_receivers import RobotServer

POINT, OTHER = "620123001001", "620123002001"
REGION, OTHER_REGION = "甘肃省/兰州市/榆中县/城关镇/东关村", "甘肃省/兰州市/城关区/某镇/某村"
MONDAY_10_BJ = datetime(2026, 3, 2, 2, 0, tzinfo=timezone.utc)  # 10:00 in Beijing

HEALTHY = {
    ("net.core.icmp", "核心网关"): ("ok", 0.012, {"loss_ratio": 0.0, "rtt_avg_s": 0.012}),
    ("net.core.tcp", "省医保信息平台"): ("ok", 0.013, {}),
    ("isolation.internet", "互联网隔离"): ("ok", 0, {}),
    ("usage.processes", "禁用软件"): ("ok", 0, {}),
    ("device.kiosk", "自助服务一体机"): ("ok", 1, {"present": True}),
}


class Clock:
    def __init__(self, t: datetime):
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw) -> None:
        self.t += timedelta(**kw)


class Rig:
    """A store, an engine on a fake clock, the report pipeline, and a real HTTP receiver as the notifier."""

    def __init__(self, db_url: str, robot: RobotServer, alerts: dict | None = None):
        self.store = Store(db_url)
        self.store.create_schema()
        points.upsert_point(self.store, POINT, "东关村医保服务点", REGION, report_interval_s=60)
        points.upsert_point(self.store, OTHER, "某村医保服务点", OTHER_REGION, report_interval_s=60)
        self.clock = Clock(MONDAY_10_BJ)
        self.robot = robot
        cfg = {"notifiers": [{"name": "hook", "type": "webhook", "url": robot.url + "/hook", "backoff": "1s"}],
               **(alerts or {})}
        self.engine = AlertEngine(self.store, parse(cfg), public_url="http://10.10.1.5:8443", clock=self.clock)
        self.pending: set[str] = set()
        self.pipeline = ReportPipeline(self.store, PointsChanged(self))  # announces to points_changed below
        self.seq = 0

    def report(self, code: str = POINT, **faults) -> None:
        """One report of every healthy result, with ``faults`` {check: (status, value, details)} overriding."""
        self.receive([self.build(code, **faults)])

    def receive(self, reports: list[Report], drain: bool = True) -> None:
        """One batch, received now (as one POST /api/v1/reports); evaluated as the worker would unless not."""
        self.pipeline.receive(reports, received_at=self.clock())
        if drain:
            self.drain()

    def build(self, code: str = POINT, at: datetime | None = None, **faults) -> Report:
        """A report collected ``at`` (now unless given) — one of an agent's backlog, say."""
        self.seq += 1
        now = at or self.clock()
        rows = dict(HEALTHY)
        for check, fault in faults.items():
            check = check.replace("__", ".")
            key = next((k for k in rows if k[0] == check), (check, "本机"))
            rows[key] = fault
        results = [Result(check=c, target=t, status=st, message=f"{c} {st}", value=v, details=d, observed_at=now)
                   for (c, t), (st, v, d) in rows.items()]
        host = Host(hostname="YB-PC", os="Windows 10", fingerprint=Fingerprint("m", "SN", []))
        return Report(report_id=str(uuid.uuid4()), seq=self.seq, agent_id="a-" + code, point_code=code,
                      agent_version="0.1.0", collected_at=now, sent_at=now, host=host, results=results)

    def points_changed(self, codes) -> None:
        self.pending.update(codes)

    def drain(self) -> None:
        codes, self.pending = sorted(self.pending), set()
        for code in self.engine.worth_evaluating(codes):  # as the worker: screened in bulk first
            self.engine.evaluate_point(code)
        dispatch_all(self.engine)

    def tick(self) -> None:
        self.engine.tick()
        dispatch_all(self.engine)

    def messages(self) -> list[tuple[str, str, str]]:
        return [(m["body"]["event"], m["body"]["rule"], m["body"]["point_code"]) for m in self.robot.of("hook")]

    def alerts(self, **where) -> list[Alert]:
        from sqlalchemy import select

        with self.store.session() as s:
            stmt = select(Alert)
            for k, v in where.items():
                stmt = stmt.where(getattr(Alert, k) == v)
            return list(s.scalars(stmt.order_by(Alert.id)))


@pytest.fixture
def rig(db_url, robot):  # on SQLite and PostgreSQL (conftest's db_url), like every store-touching test
    r = Rig(db_url, robot)
    yield r
    r.store.close()


FAIL = ("fail", 1, {})


def test_fires_once_and_resolves_with_a_chinese_message(rig):
    rig.report()
    assert rig.messages() == [] and rig.alerts() == []
    rig.clock.advance(minutes=1)
    rig.report(usage__processes=("fail", 1, {"forbidden": [{"name": "向日葵"}]}))
    assert rig.messages() == [("firing", "forbidden_software", POINT)]
    body = rig.robot.of("hook")[0]["body"]
    assert body["link"] == f"http://10.10.1.5:8443/points/{POINT}"
    assert "东关村医保服务点" in body["text"] and REGION in body["text"] and "专用违规" in body["subject"]
    assert "2026-03-02 10:01:00" in body["text"]  # since when, in Beijing time
    for _ in range(3):  # the same fault again: one alert, no second page
        rig.clock.advance(minutes=1)
        rig.report(usage__processes=FAIL)
    assert len(rig.messages()) == 1 and len(rig.alerts(state="firing")) == 1
    assert alerts_firing_counts(rig.store, "甘肃省/兰州市/榆中县") == {REGION: {"critical": 1}}
    assert alerts_firing_counts(rig.store, "甘肃省/兰州市/城关区") == {}
    rig.clock.advance(minutes=1)
    rig.report()
    assert rig.messages()[-1] == ("resolved", "forbidden_software", POINT)
    assert "已恢复" in rig.robot.of("hook")[-1]["body"]["subject"]
    assert [a.state for a in rig.alerts()] == ["resolved"] and alerts_firing_counts(rig.store) == {}


def test_screening_passes_over_healthy_points_only(rig):
    """What ``worth_evaluating`` screens out costs no transaction: only points with nothing to act on."""
    rig.report()
    rig.report(OTHER)
    assert rig.engine.worth_evaluating([POINT, OTHER, "no-such-point"]) == []
    rig.clock.advance(minutes=1)  # an "ok" result can still be a fault: a slow link is degraded
    rig.report(net__core__icmp=("ok", 0.9, {"loss_ratio": 0.0}))
    rig.report(OTHER)  # the other point keeps reporting, healthy
    assert rig.engine.worth_evaluating([POINT, OTHER]) == [POINT]
    for _ in range(2):  # a link down twice: firing
        rig.clock.advance(minutes=1)
        rig.report(net__core__tcp=FAIL)
        rig.report(OTHER)  # the other point keeps reporting, healthy
    rig.clock.advance(minutes=1)  # healthy again, but its alert is open: evaluated until it resolves
    rig.report()
    rig.report(OTHER)  # the other point keeps reporting, healthy
    assert rig.alerts(state="firing") and rig.engine.worth_evaluating([POINT, OTHER]) == [POINT]
    rig.clock.advance(minutes=1)
    rig.report()
    rig.report(OTHER)  # the other point keeps reporting, healthy
    assert not rig.alerts(state="firing") and rig.engine.worth_evaluating([POINT, OTHER]) == []
    rig.clock.advance(minutes=10)  # gone silent: the timer's business, and a screen sees it too
    assert sorted(rig.engine.worth_evaluating([POINT, OTHER])) == [POINT, OTHER]


def test_flapping_core_link_is_damped(rig):
    # core_unreachable: 2 failing reports to fire, 2 clean ones to resolve.
    for status in ("fail", "ok", "fail", "ok", "fail", "ok"):
        rig.clock.advance(minutes=1)
        rig.report(net__core__tcp=(status, None, {}))
    assert rig.messages() == [] and rig.alerts() == []
    for _ in range(2):
        rig.clock.advance(minutes=1)
        rig.report(net__core__tcp=FAIL)
    assert rig.messages() == [("firing", "core_unreachable", POINT)]
    for status in ("ok", "fail", "ok", "fail"):
        rig.clock.advance(minutes=1)
        rig.report(net__core__tcp=(status, None, {}))
    assert len(rig.messages()) == 1 and rig.alerts()[0].state == "firing"
    for _ in range(2):
        rig.clock.advance(minutes=1)
        rig.report()
    assert rig.messages()[-1] == ("resolved", "core_unreachable", POINT)


def test_silent_point_fires_on_the_timer_and_resolves_on_the_next_report(rig):
    rig.report()
    rig.clock.advance(minutes=3)
    rig.tick()
    assert rig.messages() == []  # exactly 3 intervals: not yet
    rig.clock.advance(seconds=5)
    rig.tick()
    rig.tick()
    assert rig.messages() == [("firing", "point_silent", POINT)]
    assert "没有收到该服务点的上报" in rig.robot.of("hook")[0]["body"]["summary"]
    rig.clock.advance(minutes=10)
    rig.report()
    assert rig.messages()[-1] == ("resolved", "point_silent", POINT)


def test_degraded_link_waits_for_its_for_duration(rig):
    for minute in range(5):
        rig.report(net__core__icmp=("warn", 0.4, {"loss_ratio": 0.33}))
        rig.tick()
        assert rig.messages() == [], f"paged after {minute} min"
        rig.clock.advance(minutes=1)
    rig.report(net__core__icmp=("warn", 0.4, {"loss_ratio": 0.33}))  # 5 min since the first: for: 5m
    assert rig.messages() == [("firing", "core_degraded", POINT)]


def test_the_timer_judges_a_pending_alert_only_once_time_alone_can_fire_it(db_url, robot):
    """A pending alert inside its for-duration, or short of its failure threshold, waits for time or for a
    report: the timer leaves its point alone until then, and fires the alert when its for-duration is over
    with no report in between."""
    rig = Rig(db_url, robot, {"rules": {"core_degraded": {"for": "2m"}}})
    rig.report(net__core__icmp=("warn", 0.4, {"loss_ratio": 0.33}), device__kiosk=FAIL)
    assert {a.rule: (a.state, a.fail_streak) for a in rig.alerts()} == {
        "core_degraded": ("pending", 1), "device_missing": ("pending", 1)}  # missing: 2 reports to fire
    rig.clock.advance(minutes=1)
    assert rig.engine.due_points(rig.clock()) == []
    rig.clock.advance(minutes=1, seconds=10)  # 2 min 10 s: degraded's for-duration is over, still not silent
    assert rig.engine.due_points(rig.clock()) == [POINT]
    rig.tick()
    assert rig.messages() == [("firing", "core_degraded", POINT)]
    assert {a.rule: a.state for a in rig.alerts()} == {"core_degraded": "firing", "device_missing": "pending"}
    assert rig.engine.due_points(rig.clock()) == []  # what is left waits for the next report
    rig.store.close()


def test_a_silence_with_a_failure_threshold_counts_its_ticks(db_url, robot):
    """Nothing comes from a silent point: a pending silence's streak grows with each evaluation by the timer,
    so the timer must take it though the streak is short of the threshold."""
    rig = Rig(db_url, robot, {"rules": {"point_silent": {"failure_threshold": 3}}})
    rig.report()
    rig.clock.advance(minutes=4)  # past three one-minute intervals
    for _ in range(2):
        rig.tick()
        rig.clock.advance(seconds=10)
    assert [(a.rule, a.state, a.fail_streak) for a in rig.alerts()] == [("point_silent", "pending", 2)]
    assert rig.messages() == []
    rig.tick()
    assert rig.messages() == [("firing", "point_silent", POINT)]
    rig.store.close()


def test_the_timer_judges_a_pending_alert_whose_reports_were_never_evaluated(rig):
    """A report stored but never evaluated (the collector stopped between the commit and the evaluation):
    a minute later the timer takes its point, and the alert it brings to its threshold fires."""
    rig.report(net__core__tcp=FAIL)
    assert [(a.rule, a.state) for a in rig.alerts()] == [("core_unreachable", "pending")]  # two reports to fire
    rig.clock.advance(minutes=1)
    rig.receive([rig.build(net__core__tcp=FAIL)], drain=False)
    rig.pending.clear()  # the evaluation ingest asked for is lost
    rig.clock.advance(seconds=30)
    assert rig.engine.due_points(rig.clock()) == []  # still the worker's to do
    rig.clock.advance(seconds=31)
    rig.tick()
    assert rig.messages() == [("firing", "core_unreachable", POINT)]


def test_inhibition_unreachable_mutes_degraded_and_silence_mutes_devices(db_url, robot):
    rig = Rig(db_url, robot, {"rules": {"core_degraded": {"for": "0s"}, "device_missing": {"for": "5m"}}})
    for _ in range(2):
        rig.report(net__core__tcp=FAIL, net__core__icmp=("warn", 0.5, {"loss_ratio": 0.67}))
        rig.clock.advance(minutes=1)
    assert {a.rule: a.state for a in rig.alerts()} == {"core_unreachable": "firing", "core_degraded": "firing"}
    assert rig.messages() == [("firing", "core_unreachable", POINT)]
    # The point reports a missing kiosk twice and then falls silent; the kiosk's for-duration ends while the
    # point is silent, so only the silence pages.
    for _ in range(2):
        rig.report(net__core__tcp=FAIL, device__kiosk=FAIL)
        rig.clock.advance(minutes=1)
    for _ in range(5):
        rig.clock.advance(minutes=1)
        rig.tick()
    assert {a.rule: a.state for a in rig.alerts(state="firing")}.get("device_missing") == "firing"
    assert [m for m in rig.messages() if m[1] != "core_unreachable"] == [("firing", "point_silent", POINT)]
    rig.store.close()


def test_silence_mutes_until_it_is_expired_and_is_audited(rig):
    from sqlalchemy import select

    from collector.store import models as m

    now = rig.clock()
    sil = create_silence(rig.store, actor="token:1", source="127.0.0.1", region_path=REGION, point_code=POINT,
                         rule="internet_reachable", target=None, reason="信息科现场排查，临时接入外网",
                         starts_at=now, ends_at=now + timedelta(hours=2), now=now)
    rig.report(isolation__internet=FAIL, code=POINT)
    rig.report(isolation__internet=FAIL, code=OTHER)  # not silenced: another point
    assert rig.messages() == [("firing", "internet_reachable", OTHER)]
    rig.clock.advance(minutes=2)
    rig.tick()
    assert len(rig.messages()) == 1
    expire_silence(rig.store, sil.id, actor="token:1", source=None, scope="/", now=rig.clock())
    rig.tick()
    assert rig.messages()[-1] == ("firing", "internet_reachable", POINT)
    with rig.store.session() as s:
        actions = [a.action for a in s.scalars(select(m.AuditEntry).order_by(m.AuditEntry.id))]
    assert [a for a in actions if a.startswith("silence.")] == ["silence.create", "silence.expire"]


def test_village_clinic_closed_overnight_does_not_page(db_url, robot):
    window = {"name": "村卫生室下班", "regions": ["甘肃省/兰州市/榆中县"], "daily": "18:00-08:00",
              "timezone": "Asia/Shanghai"}
    rig = Rig(db_url, robot, {"maintenance": [window]})
    rig.clock.t = datetime(2026, 3, 2, 9, 50, tzinfo=timezone.utc)  # 17:50 Beijing
    while rig.clock().astimezone(timezone(timedelta(hours=8))).hour < 18:
        rig.report(code=POINT)
        rig.report(code=OTHER)
        rig.clock.advance(minutes=1)
    # Both PCs are switched off at 18:00; one at 20:00 shows remote-control software (someone stayed late).
    for _ in range(27):  # ticks every 30 minutes through the night, until 07:30
        rig.clock.advance(minutes=30)
        rig.tick()
        if rig.clock().hour == 12:  # 20:00 Beijing
            rig.report(code=POINT, usage__processes=FAIL)
    assert ("firing", "point_silent", OTHER) in rig.messages()  # no window for the other county
    assert [m for m in rig.messages() if m[2] == POINT] == []
    assert {a.rule for a in rig.alerts(point_code=POINT, state="firing")} == {"point_silent", "forbidden_software"}
    # 08:00: the window ends. The software alert is still firing: it pages now. The silence count restarts
    # at 08:00, and the PC reports at 08:02, so the silence never pages.
    rig.clock.t = datetime(2026, 3, 3, 0, 0, 30, tzinfo=timezone.utc)
    rig.tick()
    assert [m for m in rig.messages() if m[2] == POINT] == [("firing", "forbidden_software", POINT)]
    rig.clock.advance(minutes=2)
    rig.report(code=POINT)
    rig.clock.advance(minutes=2)
    rig.tick()
    assert [m for m in rig.messages() if m[2] == POINT] == [("firing", "forbidden_software", POINT),
                                                            ("resolved", "forbidden_software", POINT)]
    assert not rig.alerts(point_code=POINT, rule="point_silent", state="firing")
    rig.store.close()


def test_notifier_outage_retries_and_survives_a_restart(db_url, robot):
    from collector.metrics import selfmetrics

    def count(outcome):
        if outcome == "sent":
            return selfmetrics.REGISTRY.get_sample_value("pointwatch_collector_notifications_sent_total",
                                                         {"notifier": "webhook"}) or 0
        return selfmetrics.REGISTRY.get_sample_value("pointwatch_collector_notifier_failures_total",
                                                     {"notifier": "webhook", "reason": "http_status"}) or 0

    before, sent_before = count("retry"), count("sent")
    rig = Rig(db_url, robot)
    robot.fail_next["hook"] = 2
    rig.report(isolation__internet=FAIL)
    assert rig.messages() == [] and count("retry") == before + 1
    # The collector restarts: a new engine on the same store finds the queued message and sends it.
    engine2 = AlertEngine(rig.store, rig.engine.config, clock=rig.clock)
    rig.clock.advance(seconds=3)
    dispatch_all(engine2)  # second refusal
    rig.clock.advance(seconds=10)
    dispatch_all(engine2)
    assert rig.messages() == [("firing", "internet_reachable", POINT)]
    assert count("retry") == before + 2 and count("sent") == sent_before + 1
    with rig.store.session() as s:
        row = s.query(Notification).one()
        assert (row.status, row.attempts) == ("sent", 3)
    rig.store.close()


def test_a_resolved_message_never_overtakes_its_firing(rig):
    """The robot refuses the firing once; the fault clears before the retry is due. The resolved message
    waits for the firing: sent first, it would be followed by the firing and leave the alert open there."""
    rig.robot.fail_next["hook"] = 1
    rig.report(usage__processes=FAIL)
    assert rig.messages() == []  # refused, queued again with a backoff of about a second
    rig.report()  # resolved at once, while the firing still waits for its retry
    assert [a.state for a in rig.alerts()] == ["resolved"]
    assert rig.messages() == []  # the resolved message waits behind it
    with rig.store.session() as s:
        assert sorted((n.event, n.status) for n in s.query(Notification)) == [("firing", "queued"),
                                                                             ("resolved", "queued")]
    rig.clock.advance(seconds=5)
    dispatch_all(rig.engine)
    assert rig.messages() == [("firing", "forbidden_software", POINT), ("resolved", "forbidden_software", POINT)]
