"""A violation that reached the collector together with its recovery still raises, and resolves, its alert.

The PC being judged could otherwise hide one from the county: pull the private-network cable, browse over a
4G dongle, plug the cable back, and the agent's backlog arrives with the violation and its recovery in one
batch. The engine replays every result received since it last judged the point, in the order they were
stored, on SQLite and PostgreSQL, through the real ingest pipeline and a real HTTP receiver."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from collector.alerts import AlertEngine
from collector.alerts.dispatch import dispatch_all
from collector.store.models import Notification, PointState, Report
from tests.test_alerts_timeline import FAIL, OTHER, POINT, Rig

INTERNET = ("fail", 1, {"reachable": ["www.baidu.com"]})


@pytest.fixture
def rig(db_url, robot):
    r = Rig(db_url, robot)
    yield r
    r.store.close()


def queued_events(rig) -> list[tuple[str, str]]:
    with rig.store.session() as s:
        return [(n.event, n.payload["rule"]) for n in s.scalars(select(Notification).order_by(Notification.id))]


def backlog(rig, *statuses: tuple, minutes: int = 1, code: str = POINT) -> list:
    """Reports an agent collected ``minutes`` apart while it could not send, ending now."""
    start = rig.clock() - timedelta(minutes=minutes * (len(statuses) - 1))
    return [rig.build(code, at=start + timedelta(minutes=minutes * i), **faults) for i, faults in enumerate(statuses)]


def assert_fired_and_resolved(rig, rule: str = "internet_reachable") -> None:
    alerts = rig.alerts(rule=rule)
    assert [(a.state, a.fired_at is not None, a.resolved_at is not None) for a in alerts] == [
        ("resolved", True, True)]
    assert queued_events(rig) == [("firing", rule), ("resolved", rule)]
    assert rig.messages() == [("firing", rule, POINT), ("resolved", rule, POINT)]


def test_violation_and_recovery_in_one_batch_page_and_resolve(rig):
    rig.report()
    rig.clock.advance(minutes=5)
    rig.receive(backlog(rig, {"isolation__internet": INTERNET}, {}))
    assert_fired_and_resolved(rig)
    sent = rig.robot.of("hook")
    assert "专网违规" in sent[0]["body"]["subject"] and "已恢复" in sent[1]["body"]["subject"]
    # Judged once: the timer, the next report and a second collector's engine add nothing.
    rig.tick()
    rig.clock.advance(minutes=1)
    rig.report()
    second = AlertEngine(rig.store, rig.engine.config, clock=rig.clock)
    assert second.evaluate_point(POINT) == 0 and second.tick() == 0
    dispatch_all(second)
    assert len(rig.alerts(rule="internet_reachable")) == 1 and len(queued_events(rig)) == 2


def test_a_point_never_seen_before_hides_nothing_in_its_first_batch(rig):
    rig.receive(backlog(rig, {"isolation__internet": INTERNET}, {}))
    assert_fired_and_resolved(rig)


def test_fail_and_ok_received_before_any_evaluation(rig):
    rig.report()
    rig.clock.advance(minutes=1)
    rig.receive([rig.build(isolation__internet=INTERNET)], drain=False)
    rig.receive([rig.build(OTHER)], drain=False)
    rig.clock.advance(minutes=1)
    rig.receive([rig.build()], drain=False)
    assert rig.alerts() == []  # nothing judged yet: the latest state of both points is clean
    rig.drain()
    assert_fired_and_resolved(rig)
    assert rig.alerts(point_code=OTHER) == []


def test_the_agents_clock_cannot_reorder_a_violation_out_of_sight(rig):
    """A PC whose clock was set back a day while it broke the rules: its reports are judged in the order they
    were recorded, so the violation is raised however old it claims to be."""
    rig.report()
    rig.clock.advance(minutes=5)
    now = rig.clock()
    reports = [rig.build(at=now - timedelta(days=1), isolation__internet=INTERNET),
               rig.build(at=now - timedelta(days=1, seconds=-60)), rig.build(at=now)]
    rig.receive(reports)
    assert_fired_and_resolved(rig)


def test_a_replayed_fault_shorter_than_its_for_duration_does_not_page(rig):
    # core_degraded must last 5 minutes: 3 minutes of a lossy link in a backlog are a blip, 7 are not.
    lossy = {"net__core__icmp": ("warn", 0.4, {"loss_ratio": 0.33})}
    rig.report()
    rig.clock.advance(minutes=10)
    rig.receive(backlog(rig, lossy, lossy, lossy, lossy, {}))
    assert rig.alerts() == [] and queued_events(rig) == []
    rig.clock.advance(minutes=10)
    rig.receive(backlog(rig, *([lossy] * 8), {}, {}))  # and 2 clean reports resolve it
    assert [a.state for a in rig.alerts(rule="core_degraded")] == ["resolved"]
    assert queued_events(rig) == [("firing", "core_degraded"), ("resolved", "core_degraded")]


def test_a_fault_still_there_after_the_replay_keeps_its_for_duration_by_the_clock(rig):
    lossy = {"net__core__icmp": ("warn", 0.4, {"loss_ratio": 0.33})}
    rig.report()
    rig.clock.advance(minutes=3)
    rig.receive(backlog(rig, lossy, lossy, lossy))  # 2 minutes of it so far: not yet
    assert [a.state for a in rig.alerts()] == ["pending"] and queued_events(rig) == []
    rig.clock.advance(minutes=3)
    rig.tick()  # 5 minutes since the agent first saw it, by the collector's clock now
    assert [a.state for a in rig.alerts()] == ["firing"]
    assert rig.messages() == [("firing", "core_degraded", POINT)]


def test_a_link_down_twice_within_a_backlog_fires_and_once_does_not(rig):
    # core_unreachable: 2 failing reports in a row to fire, 2 clean ones to resolve.
    down = {"net__core__tcp": FAIL}
    rig.report()
    rig.clock.advance(minutes=10)
    rig.receive(backlog(rig, down, {}, down, {}, {}))
    assert rig.alerts() == [] and queued_events(rig) == []
    rig.clock.advance(minutes=10)
    rig.receive(backlog(rig, down, down, {}, {}))
    assert_fired_and_resolved(rig, "core_unreachable")


def test_a_large_backlog_is_judged_over_several_passes_in_order(rig):
    rig.engine.replay_rows = 20  # a report here carries 6 results: 3 reports a pass
    rig.engine.on_backlog = lambda code: rig.pending.add(code)  # as the worker: the point is evaluated again on the next pass
    rig.report()
    rig.clock.advance(minutes=30)
    statuses = [{}] * 7 + [{"isolation__internet": INTERNET}, {}]
    rig.receive(backlog(rig, *statuses))
    passes = 1
    while rig.pending:
        rig.drain()
        passes += 1
    assert passes == 3
    assert_fired_and_resolved(rig)


def test_screening_passes_over_clean_backlogs_without_a_transaction(rig):
    rig.report()
    rig.report(OTHER)
    rig.clock.advance(minutes=3)
    rig.receive(backlog(rig, {}, {}, {}), drain=False)
    rig.receive(backlog(rig, {}, {"isolation__internet": INTERNET}, {}, code=OTHER), drain=False)
    assert rig.engine.worth_evaluating([POINT, OTHER]) == [OTHER]
    with rig.store.session() as s:  # the clean point's results are marked judged; the other's wait for it
        marks = {code: (s.get(PointState, code).alerts_evaluated_report,
                        s.scalar(select(func.max(Report.id)).where(Report.point_code == code)))
                 for code in (POINT, OTHER)}
    assert marks[POINT][0] == marks[POINT][1] and marks[OTHER][0] < marks[OTHER][1]
    assert rig.engine.worth_evaluating([POINT]) == []
