"""Issue 16, the engine's part: a verdict only from what was seen, over the time that was knowable.

Scenario tests, one per loophole: a target that stops reporting (or is expected and never reports), a point
registered mid-period, a period that has not ended, and a period with no knowable slot at all.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from collector.scoring import parse_profile, score_now, score_period
from collector.scoring.rules import CODE, Slots, parse_rule
from tests.test_scoring_engine import DAY, END, HOUR, IV, LANZHOU, START, T0, down, items, stream

FULL = LANZHOU.automatic_points  # every automatic item of the Lanzhou table met

SECOND = "10.10.1.21:8443"
KIOSK2 = "二号一体机"


def removed(check, target, at):
    """Drop ``check``/``target`` from ``at`` seconds on, as deleting it from the point's config does."""
    def keep(o):
        return not (o.check == check and o.target == target and o.at - T0 >= at)
    return keep


# -- 1. a target that stops reporting ------------------------------------------------------------------------

def test_a_failing_target_removed_from_the_config_keeps_failing_until_the_period_ends():
    # A second core server fails for an hour on day 1, then is deleted from the point's config. Today's
    # engine ignored it once its 15-minute carry-over ran out: 99.8 % and 核心网络 met.
    obs = [o for o in stream(extra=[("net.core.tcp", SECOND)],
                             faults=[down("net.core.tcp", DAY, DAY + HOUR, target=SECOND)])
           if removed("net.core.tcp", SECOND, DAY + HOUR)(o)]
    sheet = score_period(LANZHOU, obs, START, END, IV)
    core = items(sheet)["network.core"]
    assert core.state == "not_met" and core.earned == 0
    assert core.first_failure == START + timedelta(days=1)
    assert core.last_failure == END and core.incidents == 1
    assert core.availability == pytest.approx(1 / 30)
    # An item that does not read the removed target is not touched by it.
    assert items(sheet)["security.dedicated_network"].state == "met"


def test_a_target_that_goes_quiet_for_a_while_is_not_seen_for_that_while():
    # The second target misses two hours mid-period and then reports again: the gap beyond its carry-over
    # is not seen, and the rest of the period is scored as usual.
    obs = [o for o in stream(extra=[("net.core.tcp", SECOND)])
           if not (o.target == SECOND and 5 * DAY <= o.at - T0 < 5 * DAY + 2 * HOUR)]
    core = items(score_period(LANZHOU, obs, START, END, IV))["network.core"]
    carry = 900 // IV
    assert core.incidents == 1
    assert core.first_failure == START + timedelta(days=5, seconds=carry * IV)
    assert core.last_failure == START + timedelta(days=5, hours=2)
    assert core.state == "met"


def test_a_new_target_is_not_missing_before_its_first_result():
    obs = [o for o in stream(extra=[("net.core.tcp", SECOND)]) if not (o.target == SECOND and o.at - T0 < 3 * DAY)]
    core = items(score_period(LANZHOU, obs, START, END, IV))["network.core"]
    assert core.availability == 1 and core.state == "met"


def test_an_expected_target_that_never_reports_is_not_seen():
    expected = {"net.core.tcp": {"10.10.1.20:443", SECOND}}
    sheet = score_period(LANZHOU, stream(), START, END, IV, expected=expected)
    core = items(sheet)["network.core"]
    assert core.state == "not_met" and core.availability == 0
    # 核心网络 4 and 群众查询 3 read net.core.tcp.
    assert items(sheet)["network.query"].evidence == "not_met"  # assisted: evidence, not points
    assert items(sheet)["network.core"].state == "not_met" and sheet.earned == FULL - 4
    # Expecting what reports changes nothing.
    assert score_period(LANZHOU, stream(), START, END, IV, expected={"net.core.tcp": {"10.10.1.20:443"}}).earned == FULL


DEVICES = parse_profile({
    "name": "devices", "title": "设备", "source": {"file": "x", "item": "y"}, "scoring": "checklist", "total": 5,
    "items": [
        {"id": "one", "title": "一台", "category": "设备", "source": {"file": "x", "item": "1"},
         "rule": {"all": ["device.kiosk.present >= 1"], "hold": "100%"}},
        {"id": "two", "title": "两台", "category": "设备", "source": {"file": "x", "item": "2"},
         "rule": {"all": ["device.kiosk.present >= 2"], "hold": "100%"}},
        {"id": "none_bad", "title": "无故障", "category": "设备", "source": {"file": "x", "item": "3"},
         "rule": {"none": ["device.kiosk == fail"], "hold": "100%"}},
        {"id": "at_most_one", "title": "至多一台", "category": "设备", "source": {"file": "x", "item": "4"},
         "rule": {"all": ["device.kiosk.reported <= 1"], "hold": "100%"}},
        {"id": "all_ok", "title": "全部正常", "category": "设备", "source": {"file": "x", "item": "5"},
         "rule": {"all": ["device.kiosk == ok"], "hold": "100%"}},
    ]}, "devices")


def test_missing_device_semantics_for_all_none_and_counts():
    # The second kiosk fails on day 0, then is removed from the config. "none fail" must not read its
    # absence as "no failure"; "all ok" is not met; a count meets ">= 1" on the kiosk that is seen but
    # cannot meet "<= 1" or ">= 2" with one device not seen.
    obs = [o for o in stream(extra=[("device.kiosk", KIOSK2)],
                             faults=[down("device.kiosk", 0, HOUR, target=KIOSK2)])
           if removed("device.kiosk", KIOSK2, HOUR)(o)]
    states = {i.id: i.state for i in score_period(DEVICES, obs, START, END, IV).items}
    assert states == {"one": "met", "two": "not_met", "none_bad": "not_met", "at_most_one": "not_met",
                      "all_ok": "not_met"}
    # Both kiosks reporting well all along: everything but "at most one" is met.
    states = {i.id: i.state for i in score_period(DEVICES, stream(extra=[("device.kiosk", KIOSK2)]),
                                                 START, END, IV).items}
    assert states == {"one": "met", "two": "met", "none_bad": "met", "at_most_one": "not_met", "all_ok": "met"}


def test_none_over_a_check_that_never_reported_is_not_a_pass():
    sheet = score_period(DEVICES, [o for o in stream() if o.check != "device.kiosk"], START, END, IV)
    assert items(sheet)["none_bad"].state == "not_met"


def test_score_now_reads_an_expected_target_without_a_current_result_as_not_seen():
    obs = list(stream(days=1))
    now = START + timedelta(days=1)
    assert score_now(LANZHOU, obs, now=now, interval=IV).earned == FULL
    sheet = score_now(LANZHOU, obs, now=now, interval=IV, expected={"net.core.tcp": {SECOND}})
    assert items(sheet)["network.core"].state == "not_met" and sheet.earned == FULL - 4


def test_three_valued_evaluation_agrees_with_the_rules_when_everything_is_seen():
    # Without a missing target and with every check reporting in every slot, the engine's evaluation is
    # the rule language's own (rules.py).
    from collector.scoring.slots import holds as _holds
    rng = random.Random(16)
    texts = ["net.core.tcp == ok", "net.core.icmp in [ok, warn]", "device.kiosk.present >= 2",
             "device.kiosk.ok == 1", "device.kiosk.reported < 2", "net.core.tcp[a] != fail"]
    for _ in range(200):
        n = 16
        series = {"net.core.tcp": [(t, bytearray(rng.choice(list(CODE.values())) for _ in range(n)))
                                   for t in ("a", "b")],
                  "net.core.icmp": [("x", bytearray(rng.choice(list(CODE.values())) for _ in range(n)))],
                  "device.kiosk": [(t, bytearray(rng.choice(list(CODE.values())) for _ in range(n)))
                                   for t in ("k1", "k2")]}
        slots = Slots(n, series)

        def node(depth=0):
            if depth > 2 or rng.random() < 0.5:
                return rng.choice(texts)
            return {rng.choice(["all", "any", "none"]): [node(depth + 1) for _ in range(rng.randint(1, 3))]}
        rule = parse_rule({"all": [node()], "hold": "50%"})
        assert _holds(rule.root, slots, frozenset()) == rule.mask(slots), rule.text


# -- 2. a point registered mid-period ------------------------------------------------------------------------

def test_a_point_registered_mid_period_is_scored_from_its_registration():
    # Registered on day 10 and reporting well from then on. Today's engine failed every automatic item for
    # the ten days before it existed (availability 2/3).
    obs = list(stream(silent=[(0, 10 * DAY)]))
    registered = START + timedelta(days=10)
    whole = items(score_period(LANZHOU, obs, START, END, IV))["network.core"]
    assert whole.state == "not_met" and whole.availability == pytest.approx(2 / 3)  # unchanged without it
    sheet = score_period(LANZHOU, obs, START, END, IV, known_from=registered)
    assert sheet.earned == FULL and sheet.reported_share == 1
    assert (sheet.knowable_slots, sheet.slots) == (20 * DAY // IV, 30 * DAY // IV)
    assert (sheet.scored_from, sheet.scored_until) == (registered, END)
    core = items(sheet)["network.core"]
    assert (core.availability, core.first_failure, core.last_failure, core.incidents) == (1, None, None, 0)


def test_registration_inside_a_slot_scores_from_the_next_whole_slot():
    # Registered at 10 d + 2 min: the slot [10 d, 10 d + 5 min) was partly before the point existed.
    obs = list(stream(silent=[(0, 10 * DAY + IV)]))
    sheet = score_period(LANZHOU, obs, START, END, IV, known_from=START + timedelta(days=10, minutes=2))
    assert sheet.scored_from == START + timedelta(days=10, seconds=IV)
    assert sheet.knowable_slots == 20 * DAY // IV - 1 and sheet.earned == FULL


def test_failures_before_registration_are_not_held_against_the_point():
    # Results from an installation test on day 5, before the point was registered on day 10.
    obs = [o for o in stream(faults=[down("net.core.tcp", 5 * DAY, 6 * DAY)])
           if not (6 * DAY <= o.at - T0 < 10 * DAY)]
    core = items(score_period(LANZHOU, obs, START, END, IV, known_from=START + timedelta(days=10)))[
        "network.core"]
    assert (core.state, core.availability, core.incidents, core.first_failure) == ("met", 1, 0, None)


# -- 3. a period that has not ended --------------------------------------------------------------------------

TODAY_END = START + timedelta(days=1)
AT_0159 = START + timedelta(hours=1, minutes=59)


def test_an_export_of_today_counts_only_the_slots_that_have_ended():
    # Today's engine: 达标 0.09 %-like availability (23 of 288 slots) and a last failure at midnight, in the
    # future.
    obs = [o for o in stream(days=1) if o.at < AT_0159.timestamp()]
    sheet = score_period(LANZHOU, obs, START, TODAY_END, IV, now=AT_0159)
    assert sheet.knowable_slots == 23 and sheet.slots == 288  # 00:00-01:55; 01:55-02:00 is still going on
    assert sheet.scored_until == START + timedelta(hours=1, minutes=55)
    assert sheet.earned == FULL and sheet.reported_share == 1
    core = items(sheet)["network.core"]
    assert (core.availability, core.last_failure, core.incidents) == (1, None, 0)


def test_failure_times_never_lie_in_the_future():
    obs = [o for o in stream(days=1, faults=[down("net.core.tcp", HOUR, DAY)]) if o.at < AT_0159.timestamp()]
    sheet = score_period(LANZHOU, obs, START, TODAY_END, IV, now=AT_0159)
    core = items(sheet)["network.core"]
    assert core.first_failure == START + timedelta(hours=1)
    assert core.last_failure == START + timedelta(hours=1, minutes=55) <= AT_0159
    assert core.availability == pytest.approx(12 / 23) and core.incidents == 1
    # A now after the period's end changes nothing.
    later = score_period(LANZHOU, stream(days=1), START, TODAY_END, IV, now=TODAY_END + timedelta(days=3))
    assert later.knowable_slots == 288 and later.earned == FULL


# -- 4. one denominator; a period with nothing knowable ------------------------------------------------------

def test_availability_incidents_and_report_share_share_one_denominator():
    registered, now = START + timedelta(days=10), START + timedelta(days=20)
    obs = [o for o in stream(silent=[(0, 10 * DAY), (15 * DAY, 16 * DAY)]) if o.at < now.timestamp()]
    sheet = score_period(LANZHOU, obs, START, END, IV, known_from=registered, now=now)
    k = sheet.knowable_slots
    assert k == 10 * DAY // IV
    assert sheet.reported_share == pytest.approx((k - DAY // IV) / k)
    core = items(sheet)["network.core"]
    assert core.availability == pytest.approx((k - (DAY // IV - 1)) / k)  # silent once two intervals old
    assert core.first_failure == START + timedelta(days=15, seconds=IV)
    assert core.last_failure == START + timedelta(days=16) and core.incidents == 1
    assert core.state == "not_met"  # 90 % of the knowable ten days, against 95 %


@pytest.mark.parametrize("known_from, now", [
    (None, START + timedelta(minutes=3)),  # the first slot has not ended
    (END, None),  # registered when the period ended
    (START + timedelta(days=3), START + timedelta(days=2)),  # asked before the registration
])
def test_a_period_with_no_knowable_slot_is_not_evaluable_never_met(known_from, now):
    sheet = score_period(LANZHOU, stream(days=3), START, END, IV, known_from=known_from, now=now)
    assert sheet.knowable_slots == 0 and not sheet.evaluable
    assert sheet.earned == 0 and sheet.reported_share is None
    auto = [i for i in sheet.items if i.state != "manual"]
    assert len(auto) == 8 and {i.state for i in auto} == {"no_data"}
    assert all((i.earned, i.availability, i.first_failure, i.last_failure, i.incidents) == (0.0, None, None, None, 0)
               for i in auto)
    assert sheet.as_dict()["evaluable"] is False
    # A period with knowable slots says so too.
    assert score_period(LANZHOU, stream(days=1), START, TODAY_END, IV).as_dict()["evaluable"] is True
