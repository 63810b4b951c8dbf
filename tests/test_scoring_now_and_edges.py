"""collector/scoring/engine.py where the scenario tests (test_scoring_engine.py, test_scoring_period.py) do
not look: the "now" sheet line by line, and the period's edges (a report just before the start, the grace
that ``silent_after`` gives, ``max_age`` overrides, the interval's bounds).

Expected values follow the engine's docstrings: each (check, target)'s most recent result counts while it is
younger than its max age (slots.py's DEFAULT_MAX_AGE: net 180 s, devices 15 min, identity 3 h; at least three
report intervals; ``max_age`` overrides by check prefix); once the newest result is older than
``silent_after`` nothing counts; an expected target without a current result is not seen; a report in slot
i covers slots i … i + grace, where grace is ``silent_after`` in whole intervals less one (default two
intervals: one lost report is not silence).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from collector.scoring import Observation, parse_profile, score_now, score_period

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc)
T = NOW.timestamp()
CORE, KIOSK, SCREEN = "10.10.1.20:443", "自助服务一体机", "电子显示屏"


def item(id_, points, **rest) -> dict:
    return {"id": id_, "title": id_, "category": "测试", "points": points, "source": {"file": "f", "item": id_},
            **rest}


PROFILE = parse_profile({
    "name": "now", "title": "现状", "source": {"file": "f", "item": "all"}, "total": 20,
    "items": [
        item("net", 2, rule={"all": ["net.core.tcp == ok"], "hold": "100%"}),
        item("kiosk", 3, rule={"all": ["device.kiosk == ok"], "hold": "100%"}),
        item("no_kiosk_fails", 1, rule={"none": ["device.kiosk == fail"], "hold": "100%"}),
        item("screen", 1, mode="assisted", review="屏幕内容与要求一致",
             rule={"all": ["device.display == ok"], "hold": "100%"}),
        item("site", 4, manual=True),
        item("dns_town", 5, applies_to=["town"], rule={"all": ["net.core.dns == ok"], "hold": "100%"}),
        item("identity", 4, rule={"all": ["identity.fingerprint == ok"], "hold": "50%"}),
    ]}, "now")


def well(at=T - 30, **statuses) -> list[Observation]:
    """One report at ``at``: every check of the profile, ok unless ``statuses`` says otherwise."""
    checks = {"net": ("net.core.tcp", CORE), "kiosk": ("device.kiosk", KIOSK), "screen": ("device.display", SCREEN),
              "dns": ("net.core.dns", "ybj.example.gov.cn"), "identity": ("identity.fingerprint", "")}
    return [Observation(at, check, target, statuses.get(name, "ok")) for name, (check, target) in checks.items()]


def lines(sheet) -> dict:
    return {i.id: i for i in sheet.items}


def states(sheet) -> dict:
    return {i.id: (i.state, i.earned) for i in sheet.items}


# -- the "now" sheet -------------------------------------------------------------------------------------------

def test_the_now_sheet_states_each_line_and_its_frame():
    sheet = score_now(PROFILE, well(), now=NOW, interval=300, level="town")
    assert states(sheet) == {"net": ("met", 2), "kiosk": ("met", 3), "no_kiosk_fails": ("met", 1),
                             "screen": ("manual", None), "site": ("manual", None), "dns_town": ("met", 5),
                             "identity": ("met", 4)}
    assert lines(sheet)["screen"].evidence == "met" and lines(sheet)["net"].evidence is None
    assert (sheet.at, sheet.slots, sheet.interval, sheet.knowable_slots, sheet.level) == (NOW, 1, 300, 1, "town")
    assert (sheet.total, sheet.automatic_points, sheet.manual_points, sheet.earned) == (20, 15, 5, 15)
    assert sheet.evaluable and sheet.share == 1
    village = score_now(PROFILE, well(), now=NOW, interval=300, level="village")
    assert lines(village)["dns_town"].state == "not_applicable" and village.level == "village"
    assert (village.total, village.automatic_points, village.not_applicable_points, village.earned) == (15, 10, 5, 10)
    assert score_now(PROFILE, well()).at is None  # no "now": the sheet is of no particular moment


def test_a_failing_check_in_the_now_sheet_earns_zero_and_its_evidence_says_not_met():
    sheet = score_now(PROFILE, well(kiosk="fail", screen="fail"), now=NOW, interval=300, level="town")
    assert states(sheet)["kiosk"] == ("not_met", 0.0) and states(sheet)["no_kiosk_fails"] == ("not_met", 0.0)
    assert isinstance(lines(sheet)["kiosk"].earned, float)
    screen = lines(sheet)["screen"]
    assert (screen.state, screen.earned, screen.evidence) == ("manual", None, "not_met")
    assert sheet.earned == 15 - 3 - 1


def test_a_device_result_with_its_kind_apart_is_that_kinds_check():
    obs = [o for o in well() if o.check != "device.kiosk"]
    obs.append(Observation(T - 30, "device", KIOSK, "ok", kind="kiosk"))
    assert states(score_now(PROFILE, obs, now=NOW, interval=300))["kiosk"] == ("met", 3)
    obs[-1] = Observation(T - 30, "device", KIOSK, "fail", kind="kiosk")
    assert states(score_now(PROFILE, obs, now=NOW, interval=300))["kiosk"] == ("not_met", 0.0)


def test_the_most_recent_result_of_a_key_counts_whatever_order_they_come_in():
    newer_fail = Observation(T - 10, "device.kiosk", KIOSK, "fail")
    older_ok = Observation(T - 200, "device.kiosk", KIOSK, "ok")
    base = [o for o in well() if o.check != "device.kiosk"]
    assert states(score_now(PROFILE, [*base, newer_fail, older_ok], now=NOW))["kiosk"][0] == "not_met"
    assert states(score_now(PROFILE, [*base, older_ok, newer_fail], now=NOW))["kiosk"][0] == "not_met"
    # the same receive time twice: the later one of the stream (the store's order) is the latest
    same = [Observation(T - 10, "device.kiosk", KIOSK, "fail"), Observation(T - 10, "device.kiosk", KIOSK, "ok")]
    assert states(score_now(PROFILE, [*base, *same], now=NOW))["kiosk"][0] == "met"


def test_a_status_the_engine_does_not_know_counts_as_an_error_not_a_pass():
    sheet = score_now(PROFILE, well(kiosk="exploded"), now=NOW, interval=300)
    assert states(sheet)["kiosk"] == ("not_met", 0.0)
    assert states(sheet)["no_kiosk_fails"] == ("met", 1)  # an error is not a fail


def test_results_lapse_past_their_max_age_and_the_rest_still_count():
    # net results stay current for 180 s (and at least three intervals of 60 s): 180 s old counts, 181 s not
    at_limit = [Observation(T - 180, "net.core.tcp", CORE, "ok")]
    assert states(score_now(PROFILE, at_limit, now=NOW))["net"] == ("met", 2)  # the default interval: 60 s
    past = [Observation(T - 181, "net.core.tcp", CORE, "ok"), *[o for o in well() if o.check != "net.core.tcp"]]
    sheet = score_now(PROFILE, past, now=NOW)
    assert states(sheet)["net"] == ("not_met", 0.0)
    assert states(sheet)["kiosk"] == ("met", 3)  # the lapsed result first in the stream: the others still count
    # an override by check prefix: net results current for 20 minutes
    long = [Observation(T - 1200, "net.core.tcp", CORE, "ok")]
    assert states(score_now(PROFILE, long, now=NOW, max_age={"net.": 1200}))["net"] == ("met", 2)
    assert states(score_now(PROFILE, long, now=NOW, max_age={"net.": 1199}))["net"] == ("not_met", 0.0)
    # identity results are current for three hours
    assert states(score_now(PROFILE, well(at=T - 3 * 3600), now=NOW))["identity"] == ("met", 4)
    assert states(score_now(PROFILE, well(at=T - 3 * 3600 - 1), now=NOW))["identity"] == ("not_met", 0.0)


def test_a_point_silent_longer_than_silent_after_earns_nothing_now():
    obs = well(at=T - 600)
    current = {"net.": 3600, "device.": 3600}
    assert score_now(PROFILE, obs, now=NOW, max_age=current, silent_after=600).earned == 15
    silent = score_now(PROFILE, obs, now=NOW, max_age=current, silent_after=599)
    assert silent.earned == 0 and states(silent)["no_kiosk_fails"] == ("not_met", 0.0)
    assert score_now(PROFILE, obs, now=NOW, max_age=current, silent_after=timedelta(seconds=599)).earned == 0
    assert score_now(PROFILE, obs, max_age=current, silent_after=1).earned == 15  # no "now": no silence


def test_an_expected_target_without_a_current_result_is_not_seen_now():
    sheet = score_now(PROFILE, well(), now=NOW, expected={"device.kiosk": [KIOSK, "二号一体机"]})
    assert states(sheet)["kiosk"] == ("not_met", 0.0)
    assert states(sheet)["no_kiosk_fails"] == ("not_met", 0.0)  # the kiosk not seen is not "no failure"
    assert states(score_now(PROFILE, well(), now=NOW, expected={"device.kiosk": [KIOSK]}))["kiosk"] == ("met", 3)
    # expected for a check that reported nothing at all
    no_kiosk = [o for o in well() if o.check != "device.kiosk"]
    sheet = score_now(PROFILE, no_kiosk, now=NOW, expected={"device.kiosk": [KIOSK]})
    assert states(sheet)["kiosk"] == ("not_met", 0.0) and states(sheet)["net"] == ("met", 2)


# -- the period's edges ----------------------------------------------------------------------------------------

START = datetime(2024, 5, 1, tzinfo=timezone.utc)
T0 = START.timestamp()
IV = 300
IDENTITY_ONLY = parse_profile({
    "name": "edge", "title": "边界", "source": {"file": "f", "item": "all"}, "total": 1,
    "items": [item("identity", 1, rule={"all": ["identity.fingerprint == ok"], "hold": "1%"}),
              ]}, "edge")


def availability(obs, slots=4, **kw) -> float:
    sheet = score_period(IDENTITY_ONLY, obs, START, START + timedelta(seconds=slots * IV), IV, **kw)
    return lines(sheet)["identity"].availability


def test_a_report_just_before_the_start_covers_the_opening_slots_its_grace_allows():
    # the report falls in the slot before the start: with the default grace of one slot it covers slot 0 only
    assert availability([Observation(T0 - 10, "identity.fingerprint", "", "ok")]) == 0.25
    assert availability([Observation(T0 - IV, "identity.fingerprint", "", "ok")]) == 0.25  # the slot's start
    assert availability([Observation(T0 - IV - 1, "identity.fingerprint", "", "ok")]) == 0  # two slots before
    # silent_after of three intervals: grace of two slots
    assert availability([Observation(T0 - 10, "identity.fingerprint", "", "ok")], silent_after=3 * IV) == 0.5
    assert availability([Observation(T0 - 10, "identity.fingerprint", "", "ok")], silent_after=IV) == 0
    # a report inside the period covers its own slot and the grace after it
    assert availability([Observation(T0 + 10, "identity.fingerprint", "", "ok")]) == 0.5
    assert availability([Observation(T0 + 10, "identity.fingerprint", "", "ok")], silent_after=IV) == 0.25
    assert availability([Observation(T0 + 10, "identity.fingerprint", "", "ok")],
                        silent_after=timedelta(seconds=3 * IV)) == 0.75


def test_max_age_overrides_reach_the_period_sheet():
    # net results every 10 minutes of a point reporting every minute: current only with a longer max age
    net = parse_profile({"name": "net", "title": "网络", "source": {"file": "f", "item": "all"}, "total": 1,
                         "items": [item("net", 1, rule={"all": ["net.core.tcp == ok"], "hold": "100%"})]}, "net")
    obs = []
    for minute in range(60):
        obs.append(Observation(T0 + minute * 60 + 5, "usage.processes", "", "ok"))
        if minute % 10 == 0:
            obs.append(Observation(T0 + minute * 60 + 5, "net.core.tcp", CORE, "ok"))
    end = START + timedelta(hours=1)
    assert lines(score_period(net, obs, START, end, 60))["net"].state == "not_met"
    assert lines(score_period(net, obs, START, end, 60, max_age={"net.core": 600}))["net"].state == "met"


def test_the_interval_and_the_period_must_be_positive_naming_what_is_wrong():
    end = START + timedelta(hours=1)
    for bad in (0, -300, timedelta(0)):
        with pytest.raises(ValueError, match="^interval must be positive$"):
            score_period(IDENTITY_ONLY, [], START, end, bad)
    assert score_period(IDENTITY_ONLY, [], START, START + timedelta(seconds=3), 1).slots == 3  # 1 s is positive
    for bad_end in (START, START - timedelta(seconds=1)):
        with pytest.raises(ValueError, match="^the period is empty: end must be after start$"):
            score_period(IDENTITY_ONLY, [], START, bad_end, IV)


def test_the_period_sheet_states_its_frame_and_a_period_that_has_ended_is_knowable_to_its_end():
    end = START + timedelta(seconds=1000)  # 3⅓ slots of 300 s: four slots, the last one cut short by the end
    obs = [Observation(T0 + s, "identity.fingerprint", "", "ok") for s in (10, 310, 610, 910)]
    for kw in ({}, {"now": end}, {"now": end + timedelta(days=1)}, {"known_from": START},
               {"known_from": START - timedelta(days=1), "now": end}):
        sheet = score_period(IDENTITY_ONLY, obs, START, end, IV, **kw)
        assert (sheet.start, sheet.end, sheet.interval, sheet.slots, sheet.knowable_slots) == (START, end, IV, 4, 4), kw
        assert (sheet.scored_from, sheet.scored_until, sheet.reported_share) == (START, end, 1.0), kw
        assert lines(sheet)["identity"].availability == 1.0
    sheet = score_period(IDENTITY_ONLY, obs, START, end, IV, now=START + timedelta(seconds=650))
    assert (sheet.knowable_slots, sheet.scored_until) == (2, START + timedelta(seconds=600))


def test_each_line_carries_its_items_words_rule_and_source():
    sheet = score_now(PROFILE, well(), now=NOW)
    assert (sheet.profile, sheet.title) == ("now", "现状")
    net, site = lines(sheet)["net"], lines(sheet)["site"]
    assert (net.title, net.category, net.points, net.source, net.mode) == ("net", "测试", 2, "f net", "auto")
    assert "net.core.tcp == ok" in net.rule and net.hold == 1.0
    assert lines(sheet)["identity"].hold == 0.5  # the item's own hold, as its rule says: 50%
    assert (site.rule, site.hold, site.mode, site.source) == (None, None, "manual", "f site")
    period = score_period(PROFILE, well(at=T0 + 10), START, START + timedelta(hours=1), IV)
    assert lines(period)["net"].rule == net.rule and lines(period)["net"].title == "net"


def test_a_failure_in_the_first_slot_is_an_incident_of_its_own():
    obs = [Observation(T0 + 10, "identity.fingerprint", "", "fail"),
           *[Observation(T0 + s, "identity.fingerprint", "", "ok") for s in (310, 610, 910)]]
    line = lines(score_period(IDENTITY_ONLY, obs, START, START + timedelta(seconds=4 * IV), IV))["identity"]
    assert (line.incidents, line.availability) == (1, 0.75)
    assert (line.first_failure, line.last_failure) == (START, START + timedelta(seconds=IV))


VETOES = parse_profile({
    "name": "vetoes", "title": "否决", "source": {"file": "f", "item": "all"}, "total": 3,
    "items": [item("b_veto", 1, manual=True, veto=True), item("a_veto", 1, manual=True, veto=True),
              item("net", 1, rule={"all": ["net.core.tcp == ok"], "hold": "100%"})]}, "vetoes")


def test_naming_an_item_that_is_no_veto_says_which_are():
    with pytest.raises(ValueError) as info:
        score_now(VETOES, [], vetoed=["net"])
    assert str(info.value) == "'net' is not a veto (一票否决) item of vetoes (veto items: a_veto, b_veto)"
    with pytest.raises(ValueError) as info:
        score_now(PROFILE, [], vetoed=["zzz", "site"])
    assert str(info.value) == "'site' is not a veto (一票否决) item of now (veto items: none)"


def test_a_count_now_is_over_the_devices_seen_now():
    counts = parse_profile({
        "name": "counts", "title": "台数", "source": {"file": "f", "item": "all"}, "scoring": "checklist",
        "total": 2, "items": [
            {"id": "at_most_one", "title": "至多一台", "category": "设备", "source": {"file": "f", "item": "1"},
             "rule": {"all": ["device.kiosk.reported <= 1"], "hold": "100%"}},
            {"id": "two", "title": "两台", "category": "设备", "source": {"file": "f", "item": "2"},
             "rule": {"all": ["device.kiosk.present >= 2"], "hold": "100%"}}]}, "counts")
    two = [Observation(T - 30, "device.kiosk", KIOSK, "ok"), Observation(T - 30, "device.kiosk", "二号一体机", "ok")]
    assert states(score_now(counts, two, now=NOW)) == {"at_most_one": ("not_met", 0.0), "two": ("met", 1)}
    assert states(score_now(counts, two[:1], now=NOW)) == {"at_most_one": ("met", 1), "two": ("not_met", 0.0)}


def test_a_veto_item_the_points_level_is_not_held_to_vetoes_nothing():
    levels = parse_profile({
        "name": "levels", "title": "层级", "source": {"file": "f", "item": "all"}, "total": 2,
        "items": [item("town_veto", 1, manual=True, veto=True, applies_to=["town"]),
                  item("net", 1, rule={"all": ["net.core.tcp == ok"], "hold": "100%"})]}, "levels")
    obs = [Observation(T - 30, "net.core.tcp", CORE, "ok")]
    village = score_now(levels, obs, now=NOW, level="village", vetoed=["town_veto"])
    assert (village.vetoed, village.vetoed_by, village.earned) == (False, [], 1)
    assert lines(village)["town_veto"].vetoed is False
    town = score_now(levels, obs, now=NOW, level="town", vetoed=["town_veto"])
    assert (town.vetoed, town.vetoed_by, town.earned) == (True, ["town_veto"], 0)
