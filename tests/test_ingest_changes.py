"""Ingest stores what changed (issue 21): a results row only where a sample is news, every report naming the
keys it carried (its keyset) and its policy verdict, and "now" (latest_results) following every report.

Real SQLite and PostgreSQL (the ``store`` fixture), through the collector's ingest path after acceptance.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import func, select

from agent.vocabulary import AGENT_POLICY
from agent.wire import Result
from collector.ingest.changes import HEARTBEAT_S_DEFAULT
from collector.ingest.pipeline import ReportPipeline
from collector.store import models as m
from collector.store import points
from collector.store.historymodels import Keyset, KeysetMember, ResultTail
from tests.helpers import POINT, REGION, make_report, stamp_policy

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=timezone.utc)
ICMP = ("net.core.icmp", "核心网关")


def _report(i: int, seq: int | None = None, **changes):
    """The i-th report of a steady point, one a minute from T0; ``changes``: {check: fields of its result}."""
    r = make_report(seq=seq or i + 1, collected_at=T0 + timedelta(minutes=i))
    results = [dataclasses.replace(x, **changes.get(x.check, {})) for x in r.results]
    return dataclasses.replace(r, results=results)


def _pipeline(store, heartbeat_s: float = HEARTBEAT_S_DEFAULT, **kw) -> ReportPipeline:
    points.upsert_point(store, POINT, "某村服务点", REGION)
    return ReportPipeline(store, heartbeat_s=heartbeat_s, **kw)


def _send(pipeline, store, *reports, received_at=None):
    stamp_policy(store, list(reports))
    # Received a second after collection: the clock skew (a derived result's value) stays the same.
    return pipeline.receive(list(reports), received_at or reports[-1].collected_at + timedelta(seconds=1))


def _rows(store, report_id: str) -> list[tuple]:
    with store.session() as s:
        return [tuple(r) for r in s.execute(
            select(m.Result.check, m.Result.target, m.Result.status, m.Result.value, m.Result.message)
            .join(m.Report, m.Report.id == m.Result.report_pk).where(m.Report.report_id == report_id)
            .order_by(m.Result.id))]


def _carried(store, report_id: str) -> set[tuple]:
    with store.session() as s:
        return {tuple(r) for r in s.execute(
            select(KeysetMember.check, KeysetMember.target)
            .join(m.Report, m.Report.keyset_id == KeysetMember.keyset_id).where(m.Report.report_id == report_id))}


def _latest(store) -> dict[tuple, m.LatestResult]:
    with store.session() as s:
        return {(r.check, r.target): r for r in s.scalars(select(m.LatestResult))}


def test_a_steady_point_writes_its_rows_once_then_only_heartbeats(store):
    pipe = _pipeline(store, heartbeat_s=300)
    reports = [_report(i) for i in range(7)]  # minutes 0 … 6
    for r in reports:
        assert _send(pipe, store, r) == (1, 0)
    first = _rows(store, reports[0].report_id)
    keys = {(c, t) for c, t, *_ in first}
    assert len(first) == len(keys) == 5  # tcp, icmp, host + the collector's clock skew and policy verdict
    for r in reports:
        assert _carried(store, r.report_id) == keys  # every sample is known, written or not
    assert [len(_rows(store, r.report_id)) for r in reports[1:5]] == [0, 0, 0, 0]
    # Minute 5 is 300 s after the first rows: every key's heartbeat, once; then quiet again.
    assert {(c, t) for c, t, *_ in _rows(store, reports[5].report_id)} == keys
    assert _rows(store, reports[6].report_id) == []
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Keyset)) == 1
        tails = {(t.check, t.target): t for t in s.scalars(select(ResultTail))}
        pk5 = s.scalar(select(m.Report.id).where(m.Report.report_id == reports[5].report_id))
    assert set(tails) == keys and {t.report_pk for t in tails.values()} == {pk5}


def test_a_status_flip_writes_exactly_that_key(store):
    pipe = _pipeline(store)
    _send(pipe, store, _report(0))
    flip = _report(1, **{"net.core.icmp": {"status": "fail", "message": "核心网关 无响应", "value": None}})
    _send(pipe, store, flip)
    assert _rows(store, flip.report_id) == [(*ICMP, "fail", None, "核心网关 无响应")]
    back = _report(2)
    _send(pipe, store, back)
    assert [r[:3] for r in _rows(store, back.report_id)] == [(*ICMP, "ok")]
    assert _latest(store)[ICMP].status == "ok"


def test_message_class_counts_numbers_do_not(store):
    pipe = _pipeline(store)
    msgs = ["打印机缺纸 35", "打印机缺纸 36", "打印机缺纸 1,024.5", "打印机卡纸 36"]
    reports = [_report(i, **{"host.resources": {"message": text}}) for i, text in enumerate(msgs)]
    for r in reports:
        _send(pipe, store, r)
    written = [[x[4] for x in _rows(store, r.report_id) if x[0] == "host.resources"] for r in reports]
    assert written == [["打印机缺纸 35"], [], [], ["打印机卡纸 36"]]


def test_a_value_is_news_beyond_its_deadband_or_across_a_rule_threshold(store):
    # seconds: news beyond max(2 ms, 20 % of the last row's value); 0.2 s is core_degraded's threshold here.
    pipe = _pipeline(store, thresholds={"net.core.icmp": (0.2,)})
    values = [0.012, 0.013, 0.0139, 0.015, 0.19, 0.21, 0.22]
    reports = [_report(i, **{"net.core.icmp": {"value": v}}) for i, v in enumerate(values)]
    for r in reports:
        _send(pipe, store, r)
    icmp = [[x[3] for x in _rows(store, r.report_id) if x[:2] == ICMP] for r in reports]
    # 0.013 and 0.0139 are within 2 ms of 0.012; 0.015 is not; 0.21 is within 20 % of 0.19 but crosses 0.2.
    assert icmp == [[0.012], [], [], [0.015], [0.19], [0.21], []]
    # latest_results holds the last row's value; its receive time is the last report's.
    latest = _latest(store)[ICMP]
    assert latest.value == 0.21 and latest.report_id == reports[-1].report_id


def test_a_details_change_is_news(store):
    pipe = _pipeline(store)
    reports = [_report(0), _report(1, **{"net.core.icmp": {"details": {"loss_ratio": 0.001}}}),
               _report(2, **{"net.core.icmp": {"details": {"loss_ratio": 0.333}}}),
               _report(3, **{"net.core.icmp": {"details": {"loss_ratio": 0.333, "method": "tcp"}}})]
    for r in reports:
        _send(pipe, store, r)
    assert [len([x for x in _rows(store, r.report_id) if x[:2] == ICMP]) for r in reports] == [1, 0, 1, 1]


def test_keysets_are_reused_and_a_new_device_makes_a_new_one(store):
    pipe = _pipeline(store)
    same = [_report(i) for i in range(3)]
    for r in same:
        _send(pipe, store, r)
    printer = Result(check="device.printer", target="打印机", status="ok", message="打印机在线", value=None,
                     unit=None, details={}, observed_at=T0 + timedelta(minutes=3), duration_ms=1.0)
    grown = _report(3)
    grown = dataclasses.replace(grown, results=[*grown.results, printer])
    _send(pipe, store, grown)
    with store.session() as s:
        ids = dict(s.execute(select(m.Report.report_id, m.Report.keyset_id)).all())
        assert s.scalar(select(func.count()).select_from(Keyset)) == 2
    assert len({ids[r.report_id] for r in same}) == 1 and ids[grown.report_id] != ids[same[0].report_id]
    assert _carried(store, grown.report_id) == _carried(store, same[0].report_id) | {("device.printer", "打印机")}
    assert [r[:3] for r in _rows(store, grown.report_id)] == [("device.printer", "打印机", "ok")]
    # A fresh writer (a restarted collector: nothing cached) finds the keyset in the database.
    again = _report(4)
    _send(_pipeline(store), store, again)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Keyset)) == 2
        assert s.scalar(select(m.Report.keyset_id).where(m.Report.report_id == again.report_id)) == \
            ids[same[0].report_id]


def test_the_report_keeps_its_policy_verdict(store):
    pipe = _pipeline(store)
    stamped, steady = _report(0), _report(1)
    _send(pipe, store, stamped)
    _send(pipe, store, steady)
    unstamped = _report(2)
    pipe.receive([unstamped], unstamped.collected_at + timedelta(seconds=1))  # names no policy: no verdict
    with store.session() as s:
        verdicts = dict(s.execute(select(m.Report.report_id, m.Report.verdict)).all())
    policy_rows = {r.report_id: [x[2] for x in _rows(store, r.report_id) if x[0] == AGENT_POLICY]
                   for r in (stamped, steady, unstamped)}
    assert policy_rows[stamped.report_id] == [verdicts[stamped.report_id]]
    assert policy_rows[steady.report_id] == []  # unchanged: no row, but the report says what it was
    assert verdicts[steady.report_id] == verdicts[stamped.report_id]
    assert verdicts[stamped.report_id] == "ok" and verdicts[unstamped.report_id] is None
    assert policy_rows[unstamped.report_id] == []


def test_latest_moves_with_every_report_but_never_back_to_a_backlog_one(store):
    pipe = _pipeline(store)
    r1, r2 = _report(10), _report(11)
    _send(pipe, store, r1)
    _send(pipe, store, r2)
    latest = _latest(store)
    assert _rows(store, r2.report_id) == [] and len(latest) == 5
    assert {x.report_id for x in latest.values()} == {r2.report_id}
    assert {x.received_at.astimezone(timezone.utc) for x in latest.values()} == {r2.collected_at + timedelta(seconds=1)}
    with store.session() as s:
        state = s.get(m.PointState, POINT)
        assert (state.n_ok, state.n_fail) == (5, 0)
        assert state.silent_after.astimezone(timezone.utc) > r2.collected_at
    # A backlog report (collected before what "now" holds), with a fault: history gets it, "now" does not.
    old = _report(2, seq=3, **{"net.core.icmp": {"status": "fail", "message": "核心网关 无响应"}})
    _send(pipe, store, old, received_at=r2.collected_at + timedelta(seconds=30))
    # (its clock skew is news too: sent long before it was received)
    assert [r[:3] for r in _rows(store, old.report_id) if r[:2] == ICMP] == [(*ICMP, "fail")]
    latest = _latest(store)
    # The agent's results stay r2's (the collector's own rows are observed when received, as before).
    assert {x.report_id for k, x in latest.items() if not k[0].startswith("agent.")} == {r2.report_id}
    assert latest[ICMP].status == "ok"
    # The next report says ok again: written (its tail was the backlog's fail), and "now" follows it.
    r3 = _report(12)
    _send(pipe, store, r3)
    assert [r[:3] for r in _rows(store, r3.report_id) if r[0] != "agent.clock_skew"] == [(*ICMP, "ok")]
    assert {x.report_id for x in _latest(store).values()} == {r3.report_id}


def test_a_carried_key_after_a_backlog_row_brings_now_to_the_newest_report(store):
    pipe = _pipeline(store)
    _send(pipe, store, _report(10))
    # The backlog report's fail becomes the key's last row; the next, newer report says fail too.
    old = _report(2, seq=3, **{"net.core.icmp": {"status": "fail", "message": "核心网关 无响应"}})
    _send(pipe, store, old, received_at=T0 + timedelta(minutes=10, seconds=30))  # arrives late, not "in the past"
    new = _report(11, seq=12, **{"net.core.icmp": {"status": "fail", "message": "核心网关 无响应"}})
    _send(pipe, store, new)
    # (the backlog's clock skew was news, and a backlog row is due at once: written again)
    assert [r[:3] for r in _rows(store, new.report_id) if r[0] != "agent.clock_skew"] == [(*ICMP, "fail")]
    assert _latest(store)[ICMP].status == "fail" and _latest(store)[ICMP].report_id == new.report_id
    with store.session() as s:
        assert s.get(m.PointState, POINT).n_fail == 1


def test_heartbeat_zero_stores_every_result(store):
    pipe = _pipeline(store, heartbeat_s=0)
    reports = [_report(i) for i in range(3)]
    _send(pipe, store, *reports)  # one request, one transaction
    for r in reports:
        rows = _rows(store, r.report_id)
        assert [x[:2] for x in rows[:3]] == [(x.check, x.target) for x in r.results]
        assert len(rows) == 5 and {x[:2] for x in rows} == _carried(store, r.report_id)


def test_a_key_twice_in_one_report_is_written_twice(store):
    pipe = _pipeline(store)
    _send(pipe, store, _report(0))
    twice = _report(1)
    twice = dataclasses.replace(twice, results=[*twice.results, dataclasses.replace(twice.results[0])])
    _send(pipe, store, twice)
    key = (twice.results[0].check, twice.results[0].target)
    assert [r[:2] for r in _rows(store, twice.report_id)] == [key, key]  # as before: both samples are rows


def _samples(store, since=T0 - timedelta(hours=1), until=T0 + timedelta(hours=1)) -> list[tuple]:
    from collector.store.samples import by_report

    return [(pk, check, status) for _at, pk, _v, _, keys in by_report(store, POINT, since, until)
            for check, _t, (status,) in keys if check == ICMP[0]]


def test_a_key_twice_in_one_report_is_two_samples_whichever_comes_last(store):
    pipe = _pipeline(store)
    _send(pipe, store, _report(0))
    fail = {"status": "fail", "message": "核心网关 无响应", "value": None}
    twice = _report(1)
    icmp = next(x for x in twice.results if x.check == ICMP[0])
    twice = dataclasses.replace(twice, results=[*twice.results, dataclasses.replace(icmp, **fail)])
    _send(pipe, store, twice)
    assert [status for _pk, _c, status in _samples(store)] == ["ok", "ok", "fail"]  # the fail was seen


def test_a_report_stored_later_is_never_stamped_earlier_so_its_carried_state_is_its_own(store):
    """Another collector's clock (or a step back of this one) gives a later report an earlier receive time;
    the readers walk receive order, the news test compares in storage order: one order for both."""
    pipe = _pipeline(store)
    fail = {"net.core.icmp": {"status": "fail", "message": "核心网关 无响应", "value": None}}
    _send(pipe, store, _report(0))
    first, second = _report(1, **fail), _report(2, **fail)
    _send(pipe, store, first, received_at=T0 + timedelta(minutes=1, seconds=6))
    _send(pipe, store, second, received_at=T0 + timedelta(minutes=1, seconds=3))  # carried: no row of its own
    assert not [r for r in _rows(store, second.report_id) if r[0] == ICMP[0]]
    with store.session() as s:
        at = dict(s.execute(select(m.Report.report_id, m.Report.received_at)
                            .where(m.Report.report_id.in_([first.report_id, second.report_id]))).all())
    assert at[second.report_id] >= at[first.report_id]
    assert [status for _pk, _c, status in _samples(store)] == ["ok", "fail", "fail"]


def test_a_rolled_back_transaction_leaves_no_keyset_id_cached(store, monkeypatch):
    from collector.store import ingest as ingest_module

    pipe = _pipeline(store)
    first = _report(0)

    def fail(*args):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(ingest_module, "write_tails", fail)  # after the keyset was inserted
    with pytest.raises(RuntimeError):
        _send(pipe, store, first)
    assert pipe.writer.keysets.known == {} and pipe.writer.keysets.pending == {}
    monkeypatch.undo()
    _send(pipe, store, first)
    with store.session() as s:
        ks = s.scalar(select(m.Report.keyset_id).where(m.Report.report_id == first.report_id))
        assert s.get(Keyset, ks) is not None
        assert s.scalar(select(func.count()).select_from(KeysetMember).where(KeysetMember.keyset_id == ks)) == 5
    assert list(pipe.writer.keysets.known.values()) == [ks]


def test_a_carried_collector_result_is_replayed_at_its_receipt_not_by_the_agents_clock(store):
    from collector.store.replay import samples_since_watermarks

    pipe = _pipeline(store)
    late = timedelta(hours=1)  # the agent's clock an hour behind: its collection times are an hour early
    for i in range(3):
        _send(pipe, store, _report(i), received_at=T0 + late + timedelta(minutes=i, seconds=1))
    with store.engine.connect() as conn:
        rows = samples_since_watermarks(conn, [POINT])[POINT]
    skew = [r for r in rows if r[1] == "agent.clock_skew"]
    assert len(skew) == 3 and all(r[7] == r[8] for r in skew), skew  # observed when received, written or not
    icmp = [r for r in rows if r[1] == ICMP[0]]
    assert len(icmp) == 3 and all(r[7] < r[8] - late + timedelta(seconds=5) for r in icmp), icmp


def test_now_is_the_newest_reports_sample_even_when_it_was_observed_earlier(store):
    """An agent whose later report holds a result observed before the previous one's (its clock stepped back,
    a check's cached result): history says the later report's status, so "now" must too, and a report that
    then carries the key without a row keeps it."""
    pipe = _pipeline(store)
    fail = {"status": "fail", "message": "核心网关 无响应", "value": None}
    _send(pipe, store, _report(0, **{ICMP[0]: fail}))
    earlier = T0 - timedelta(minutes=5)
    _send(pipe, store, _report(1, **{ICMP[0]: {"observed_at": earlier}}))
    assert _latest(store)[ICMP].status == "ok"
    carrying = _report(2)
    _send(pipe, store, carrying)
    assert not [r for r in _rows(store, carrying.report_id) if r[0] == ICMP[0]]
    now = _latest(store)[ICMP]
    assert (now.status, now.report_id) == ("ok", carrying.report_id)
    assert [status for _pk, _c, status in _samples(store)] == ["fail", "ok", "ok"]
    with store.session() as s:
        assert (s.get(m.PointState, POINT).n_fail, s.get(m.PointState, POINT).n_ok) == (0, 5)


def test_a_key_sent_twice_in_one_report_is_now_what_its_last_sample_says(store):
    """History reads a key twice in one report in the report's order, the last one in force; "now" must agree
    even where the first was observed later, and so must the next report that carries the key."""
    pipe = _pipeline(store)
    _send(pipe, store, _report(0))
    twice = _report(1)
    icmp = next(x for x in twice.results if (x.check, x.target) == ICMP)
    failed = dataclasses.replace(icmp, status="fail", message="核心网关 无响应", value=None,
                                 observed_at=icmp.observed_at + timedelta(seconds=20))
    twice = dataclasses.replace(twice, results=[failed if x is icmp else x for x in twice.results] + [icmp])
    _send(pipe, store, twice)
    assert _latest(store)[ICMP].status == "ok"
    carrying = _report(2)
    _send(pipe, store, carrying)
    assert not [r for r in _rows(store, carrying.report_id) if r[0] == ICMP[0]]
    now = _latest(store)[ICMP]
    assert (now.status, now.report_id) == ("ok", carrying.report_id)
    with store.session() as s:
        assert s.get(m.PointState, POINT).n_fail == 0


def test_the_heartbeat_goes_on_after_the_collectors_clock_steps_back(store):
    pipe = _pipeline(store, heartbeat_s=300)
    back = timedelta(hours=1)
    reports = [_report(i) for i in range(10)]
    for i, r in enumerate(reports):
        _send(pipe, store, r, received_at=r.collected_at + timedelta(seconds=1) - (back if i >= 3 else timedelta()))
    icmp = [i for i, r in enumerate(reports) if any(x[:2] == ICMP for x in _rows(store, r.report_id))]
    # Written first, then when the clock went an hour back, then five minutes on by the new clock (not an
    # hour later, when it has caught up).
    assert icmp == [0, 3, 8]


def test_the_clock_skew_is_news_when_the_clock_moves_not_with_the_networks_jitter(store):
    pipe = _pipeline(store)
    late = [1.0, 1.05, 1.3, 1.02, 4.5, 4.6]  # seconds after sending: milliseconds of jitter, then a 3.5 s step
    reports = [_report(i) for i in range(len(late))]
    for r, s in zip(reports, late, strict=True):
        _send(pipe, store, r, received_at=r.sent_at + timedelta(seconds=s))
    skew = [i for i, r in enumerate(reports) if any(x[0] == "agent.clock_skew" for x in _rows(store, r.report_id))]
    assert skew == [0, 4]
