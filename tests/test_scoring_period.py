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
    assert items(sheet)["network.query"].state == "not_met" and sheet.earned == 24 - 4 - 3
    # Expecting what reports changes nothing.
    assert score_period(LANZHOU, stream(), START, END, IV, expected={"net.core.tcp": {"10.10.1.20:443"}}).earned == 24


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
    assert score_now(LANZHOU, obs, now=now, interval=IV).earned == 24
    sheet = score_now(LANZHOU, obs, now=now, interval=IV, expected={"net.core.tcp": {SECOND}})
    assert items(sheet)["network.core"].state == "not_met" and sheet.earned == 24 - 4 - 3


def test_three_valued_evaluation_agrees_with_the_rules_when_everything_is_seen():
    # Without a missing target and with every check reporting in every slot, the engine's evaluation is
    # the rule language's own (rules.py).
    from collector.scoring.engine import _holds
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
