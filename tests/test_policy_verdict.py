"""agent.policy at ingest: a report is judged by the policy digest it names against the digests the collector
issued to its point — ok, ok within the grace after a change, warn past it, fail never issued, error none."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from agent.vocabulary import AGENT_POLICY
from collector.policy import service
from collector.store import models as m
from collector.store import points as points_repo
from collector.store import utcnow
from collector.store.audit import Actor
from collector.store.canonical import report_dict
from tests.helpers import POINT, REGION, ingest, make_report

COUNTY = "甘肃省/兰州市/城关区"
ACTOR = Actor("test")


def _verdict(store, digest, seq, at=None):
    report = make_report(seq=seq, collected_at=at)
    report.policy_digest = digest
    ingest(store, [report], received_at=at, policy=False)
    with store.session() as s:
        row = s.scalar(select(m.Result).where(m.Result.check == AGENT_POLICY).order_by(m.Result.id.desc()).limit(1))
        body = s.scalar(select(m.Report.body).where(m.Report.report_id == report.report_id))
    return (row.status, row.details) if row is not None else (None, None), body


def test_no_policy_no_verdict_but_a_digest_from_nowhere_fails(store):
    points_repo.upsert_point(store, POINT, "某村", REGION)
    assert _verdict(store, None, 1)[0] == (None, None)
    assert _verdict(store, "sha256:" + "a" * 64, 2)[0][0] == "fail"


def test_current_previous_within_grace_older_past_it_forged_and_missing(store):
    points_repo.upsert_point(store, POINT, "某村", REGION)
    service.set_region(store, COUNTY, "core_network: {timeout: 1s}\n", "c.yaml", ACTOR)
    first = service.show_point(store, POINT).digest
    (status, details), body = _verdict(store, first, 1)
    assert status == "ok" and details["current"] == first
    assert f'"policy_digest":"{first}"' in body  # chained with the report it judged
    service.set_region(store, COUNTY, "core_network: {timeout: 2s}\n", "c.yaml", ACTOR)
    changed_at = utcnow()
    second = service.show_point(store, POINT).digest
    assert second != first
    assert _verdict(store, second, 2)[0][0] == "ok"
    assert _verdict(store, first, 3, changed_at + timedelta(minutes=5))[0][0] == "ok"  # within 15 min grace
    status, details = _verdict(store, first, 4, changed_at + timedelta(minutes=20))[0]
    assert status == "warn" and details["current"] == second
    assert _verdict(store, "sha256:" + "0" * 64, 5)[0][0] == "fail"
    assert _verdict(store, None, 6)[0][0] == "error"


def test_the_grace_is_judged_by_the_receive_time_not_the_agents_collected_time(store):
    # The agent sets collected_at: one backdated to before the change would keep the replaced policy "within
    # the grace" for ever. The contract: the replaced digest is ok only when received within the grace.
    points_repo.upsert_point(store, POINT, "某村", REGION)
    service.set_region(store, COUNTY, "core_network: {timeout: 1s}\n", "c.yaml", ACTOR)
    first = service.show_point(store, POINT).digest
    service.set_region(store, COUNTY, "core_network: {timeout: 2s}\n", "c.yaml", ACTOR)
    changed_at = utcnow()
    late = changed_at + timedelta(days=30)
    report = make_report(seq=1, collected_at=changed_at - timedelta(minutes=1))
    report.sent_at, report.policy_digest = late, first
    ingest(store, [report], received_at=late, policy=False)
    with store.session() as s:
        row = s.scalar(select(m.Result).where(m.Result.check == AGENT_POLICY))
    assert row.status == "warn", row.message


def test_a_report_checked_before_the_points_first_policy_and_naming_none_is_not_judged(store):
    points_repo.upsert_point(store, POINT, "某村", REGION)
    before = utcnow() - timedelta(minutes=10)  # e.g. the outbox of an agent offline when the county set it
    service.set_region(store, COUNTY, "core_network: {timeout: 1s}\n", "c.yaml", ACTOR)
    assert _verdict(store, None, 1, before)[0] == (None, None)
    assert _verdict(store, "sha256:" + "0" * 64, 2, before)[0][0] == "fail"  # a digest is judged all the same
    assert _verdict(store, None, 3)[0][0] == "error"  # collected after it: the policy existed


def test_a_report_without_a_digest_keeps_the_body_it_always_had():
    report = make_report()
    assert "policy_digest" not in report_dict(report)
    report.policy_digest = "sha256:" + "b" * 64
    assert report_dict(report)["policy_digest"] == "sha256:" + "b" * 64
