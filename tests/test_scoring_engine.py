"""Scores of synthetic report streams, computed by hand from the documents' points.

The stream: a point reporting every 5 minutes over 30 days (8640 slots), each report carrying the core
network, 专网/专用 and device results; identity hourly. Lanzhou's city table gives the monitor 10 of its
110 points: 核心网络 4 (hold 95%), 自助终端 3 (90%), 专网专用 3 (99%). Its assisted items (自动+人工) —
人机信息相符 5 (95%), 多媒体显示屏 2 (90%), 群众查询 3 (90%), 网上办理 3 (95%), 账号与数据安全 1 (99%) —
are evaluated the same way, but the result is evidence for the reviewer (``evidence``), never points.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from collector.scoring import Observation, load_profiles, parse_profile, rank_points, score_now, score_period

PROFILES = load_profiles()
LANZHOU = PROFILES["lanzhou-basic-2023"]
START = datetime(2024, 3, 1, tzinfo=timezone.utc)
T0 = START.timestamp()
DAY, HOUR, IV = 86400, 3600, 300
END = START + timedelta(days=30)
N = 30 * DAY // IV  # 8640 slots

EVERY_REPORT = [
    ("net.core.icmp", "10.10.0.1"), ("net.core.tcp", "10.10.1.20:443"), ("net.core.dns", "ybj.example.gov.cn"),
    ("net.core.https", "https://10.10.1.20/health"), ("isolation.internet", "223.5.5.5:53"),
    ("isolation.interfaces", ""), ("usage.processes", ""), ("usage.listening_ports", ""),
    ("usage.accounts", ""), ("usage.removable_media", ""), ("device.kiosk", "自助服务一体机"),
    ("device.display", "电子显示屏"),
]
HOURLY = [("identity.fingerprint", ""), ("identity.matches_enrolment", "")]


def down(check, start, end, status="fail", target=None):
    """A fault: ``check`` (optionally one target) reports ``status`` from start to end seconds."""
    def fault(c, tgt, s):
        if c == check and (target is None or tgt == target) and start <= s < end:
            return status
        return None
    return fault


def stream(days=30, faults=(), silent=(), extra=(), hourly=HOURLY, until=None):
    """Reports 7 s into each 5-minute slot; ``silent`` = [(from_s, to_s)] with no report at all."""
    checks = [*EVERY_REPORT, *extra]
    for i in range(days * DAY // IV):
        s = i * IV + 7
        if any(a <= s < b for a, b in silent):
            continue
        batch = list(checks) + (list(hourly) if i % (HOUR // IV) == 0 and (until is None or s < until) else [])
        for check, target in batch:
            status = next((st for f in faults if (st := f(check, target, s))), "ok")
            yield Observation(T0 + s, check, target, status)


def score(profile=LANZHOU, level=None, vetoed=None, **kw):
    return score_period(profile, stream(**kw), START, END, IV, level=level, vetoed=vetoed)


def items(sheet):
    return {i.id: i for i in sheet.items}


def test_all_well_earns_every_automatic_point_and_lists_manual_items():
    sheet = score()
    assert (sheet.total, sheet.automatic_points, sheet.manual_points, sheet.earned) == (110, 10, 100, 10)
    assert (sheet.assisted_points, sheet.inferred_points, sheet.vetoed) == (14, 4, False)
    assert sheet.slots == N and sheet.reported_share == 1
    by_id = items(sheet)
    assert len(by_id) == len(LANZHOU.items) == 45  # the whole table
    # An assisted item: the monitor's part is shown as evidence; the points are the reviewer's.
    computer = by_id["site.computer"]
    assert (computer.state, computer.earned, computer.evidence, computer.availability) == ("manual", None, "met", 1)
    assert computer.mode == "assisted" and computer.review and computer.hold_source == "pointwatch 策略"
    manual = by_id["site.location"]
    assert (manual.state, manual.earned, manual.availability) == ("manual", None, None)
    core = by_id["network.core"]
    assert (core.state, core.earned, core.availability, core.incidents) == ("met", 4, 1.0, 0)
    assert core.first_failure is None and core.last_failure is None


def test_core_network_down_ten_percent_loses_exactly_its_four_points():
    # net.core.tcp fails for 3 of 30 days: 10% of the period, against a 95% hold.
    sheet = score(faults=[down("net.core.tcp", 10 * DAY, 13 * DAY)])
    core = items(sheet)["network.core"]
    assert core.state == "not_met" and core.earned == 0
    assert core.availability == pytest.approx(0.9)
    assert core.first_failure == START + timedelta(days=10)
    assert core.last_failure == START + timedelta(days=13)
    assert core.incidents == 1
    as_json = sheet.as_dict()
    row = next(i for i in as_json["items"] if i["id"] == "network.core")
    assert row["first_failure"] == "2024-03-11T00:00:00Z" and as_json["start"] == "2024-03-01T00:00:00Z"
    assert as_json["earned"] == 6 and as_json["share"] == pytest.approx(6 / 10)
    assert row["hold_source"] == "pointwatch 策略" and row["mode"] == "auto" and row["inferred"] is False
    # 群众查询 (assisted: tcp == ok, hold 90%) holds for exactly 90%: its evidence is met, at the boundary,
    # and it earns nothing by itself.
    query = items(sheet)["network.query"]
    assert (query.state, query.evidence, query.earned) == ("manual", "met", None)
    assert sheet.earned == 10 - 4


@pytest.mark.parametrize("item, hold, check", [
    ("network.core", 0.95, "net.core.tcp"),   # 核心网络: net.core.tcp == ok, hold 95%
    ("security.dedicated_network", 0.99, "isolation.internet"),  # 专网专机专用: isolation.internet == ok, hold 99%
])
@pytest.mark.parametrize("short", [0, 1])
def test_a_hold_is_met_at_its_share_of_slots_and_not_one_slot_below(item, hold, check, short):
    """The hold is a share of the period's slots: 95% of 8640 five-minute slots is 8208 good slots, 99% is
    8554 (8553.6 rounded up: a share of whole slots). At exactly that many the item is met; one slot fewer and it is not.

    Guards the planted bug "scoring hold one slot short still scores" (the boundary was only ever tested
    exactly at the hold, never just below it).
    """
    needed = -(-hold * N // 1)  # 8208 or 8554: the hold's share of the slots, rounded up to a whole slot
    bad = N - needed + short
    sheet = score(faults=[down(check, 10 * DAY, 10 * DAY + bad * IV)])
    scored = items(sheet)[item]
    assert scored.availability == pytest.approx((N - bad) / N)
    assert scored.state == ("met" if short == 0 else "not_met"), (item, N - bad, needed)
    assert scored.earned == (scored.points if short == 0 else 0)


@pytest.mark.parametrize("silent_days, earned, lost, unseen", [
    # The point is silent once its last report is two intervals old: a silent day fails 288 - 1 slots.
    # ~29/30 = 96.7%: only the 99% items fail: 专网专用 3 (and the evidence of 账号与数据安全).
    (1, 7, {"security.dedicated_network"}, {"security.accounts_data"}),
    # 28/30 = 93.3%: the 95% items fail too: 核心网络 4 (and the evidence of 人机信息相符, 网上办理).
    (2, 3, {"security.dedicated_network", "network.core"},
     {"security.accounts_data", "site.computer", "network.online"}),
])
def test_silence_never_earns_points(silent_days, earned, lost, unseen):
    sheet = score(silent=[(5 * DAY, (5 + silent_days) * DAY)])
    assert sheet.reported_share == pytest.approx((30 - silent_days) / 30)
    assert sheet.earned == earned
    assert {i.id for i in sheet.items if i.state == "not_met"} == lost
    assert {i.id for i in sheet.items if i.evidence == "not_met"} == unseen
    core = items(sheet)["network.core"]
    failing = silent_days * DAY // IV - 1
    assert core.availability == pytest.approx((N - failing) / N)
    assert core.first_failure == START + timedelta(days=5, seconds=IV)
    assert core.last_failure == START + timedelta(days=5 + silent_days)
    assert core.incidents == 1


def test_jitter_and_one_lost_report_are_not_silence():
    # Reports drift across slot edges (two in one slot, none in the next) and one report is lost.
    obs = [o._replace(at=o.at + (IV - 10 if (o.at - T0) // IV % 7 == 3 else 0)) for o in stream(days=1)]
    obs = [o for o in obs if not (10 * HOUR <= o.at - T0 < 10 * HOUR + IV)]
    obs.sort(key=lambda o: o.at)
    sheet = score_period(LANZHOU, obs, START, START + timedelta(days=1), IV)
    assert sheet.reported_share < 1
    assert sheet.earned == 10
    assert items(sheet)["security.dedicated_network"].availability == 1
    # The same holds at the period's first slot when the report before it came late.
    late = [Observation(T0 - 3, check, target, "ok") for check, target in EVERY_REPORT + HOURLY]
    opening = late + [o for o in obs if o.at >= T0 + IV]
    assert items(score_period(LANZHOU, opening, START, START + timedelta(days=1), IV))[
        "network.core"].first_failure is None


def test_a_point_that_never_reported_earns_nothing():
    sheet = score_period(LANZHOU, [], START, END, IV)
    assert sheet.earned == 0 and sheet.reported_share == 0
    assert all(i.state in ("not_met", "manual") for i in sheet.items)
    core = items(sheet)["network.core"]
    assert core.first_failure == START and core.last_failure == END and core.incidents == 1


def test_incidents_first_and_last_failure():
    faults = [down("device.kiosk", d * DAY, d * DAY + HOUR) for d in (3, 9, 20)]
    kiosk = items(score(faults=faults))["service.self"]
    assert kiosk.incidents == 3
    assert kiosk.availability == pytest.approx(1 - 3 * HOUR / (30 * DAY))
    assert kiosk.state == "met"  # hold 90%
    assert kiosk.first_failure == START + timedelta(days=3)
    assert kiosk.last_failure == START + timedelta(days=20, hours=1)


def test_warn_counts_where_the_rule_allows_it():
    sheet = score(faults=[down("net.core.icmp", 0, 30 * DAY, status="warn"),
                          down("net.core.https", 0, 30 * DAY, status="error")])
    assert items(sheet)["network.core"].state == "met"  # icmp in [ok, warn]
    online = items(sheet)["network.online"]
    assert online.availability == 0 and online.evidence == "not_met"  # error is never a pass
    assert sheet.earned == 10  # 网上办理 is assisted: its evidence fails, no automatic points were at stake


def test_one_failing_target_fails_a_multi_target_check():
    second = [("net.core.tcp", "10.10.1.21:8443")]
    sheet = score(extra=second, faults=[down("net.core.tcp", 0, 3 * DAY, target="10.10.1.21:8443")])
    assert items(sheet)["network.core"].availability == pytest.approx(0.9)
    assert sheet.earned == 6


def test_hourly_results_stay_current_for_max_age_then_lapse():
    # Identity results are hourly; they hold between runs. When they stop after day 1 they lapse 3 h later.
    assert items(score())["site.computer"].evidence == "met"
    computer = items(score(until=DAY))["site.computer"]
    last_run = 23 * (HOUR // IV)  # the slot of the last hourly result
    first_gap = last_run + 3 * HOUR // IV + 1
    assert computer.first_failure == START + timedelta(seconds=first_gap * IV)
    assert computer.availability == pytest.approx(first_gap / N)
    assert computer.evidence == "not_met"


def test_results_from_before_the_period_open_it():
    # A day starting at 00:30: the hourly identity result of 00:00 (fed from before the start) holds until
    # 01:00's; without it the first half hour would have no identity state.
    obs = list(stream(days=3))
    day_start = START + timedelta(days=1, minutes=30)
    day_end = day_start + timedelta(days=1)
    sheet = score_period(LANZHOU, obs, day_start, day_end, IV)
    assert items(sheet)["site.computer"].availability == 1
    later = [o for o in obs if o.at >= day_start.timestamp()]
    computer = items(score_period(LANZHOU, later, day_start, day_end, IV))["site.computer"]
    assert computer.availability == pytest.approx(1 - 6 / 288)  # six 5-minute slots until 01:00


def test_identity_change_fails_the_item():
    sheet = score(faults=[down("identity.matches_enrolment", 2 * DAY, 30 * DAY)])
    computer = items(sheet)["site.computer"]
    assert (computer.state, computer.evidence) == ("manual", "not_met")  # the reviewer sees it failed
    assert sheet.earned == 10  # 1.② is assisted: the machine half of 人机信息相符 earns no points alone


def test_worst_status_in_a_slot_counts():
    # Several results per slot (network every minute): one fail in each slot of a day fails that slot.
    obs = list(stream())
    for i in range(DAY // IV):
        obs.append(Observation(T0 + i * IV + 120, "isolation.internet", "223.5.5.5:53", "fail"))
    obs.sort(key=lambda o: o.at)
    dedicated = items(score_period(LANZHOU, obs, START, END, IV))["security.dedicated_network"]
    assert dedicated.availability == pytest.approx(29 / 30)
    assert dedicated.state == "not_met"


DEVICE_RULES = parse_profile({
    "name": "devices", "title": "设备", "source": {"file": "x", "item": "y"}, "scoring": "checklist", "total": 3,
    "items": [
        {"id": "one", "title": "一台", "category": "设备", "source": {"file": "x", "item": "1"},
         "rule": {"all": ["device.kiosk.present >= 1"], "hold": "100%"}},
        {"id": "two", "title": "两台", "category": "设备", "source": {"file": "x", "item": "2"},
         "rule": {"all": ["device.kiosk.present >= 2"], "hold": "100%"}},
        {"id": "none_bad", "title": "无故障", "category": "设备", "source": {"file": "x", "item": "3"},
         "rule": {"none": ["device.kiosk == fail"], "hold": "100%"}},
    ]}, "devices")


def test_device_counts():
    faults = [down("device.kiosk", 0, 30 * DAY, target="二号一体机")]
    sheet = score(DEVICE_RULES, extra=[("device.kiosk", "二号一体机")], faults=faults)
    assert {i.id: i.state for i in sheet.items} == {"one": "met", "two": "not_met", "none_bad": "met"}
    sheet = score(DEVICE_RULES, extra=[("device.kiosk", "二号一体机")])
    assert sheet.earned == 3


def test_device_kind_given_apart_from_the_check():
    obs = [Observation(T0 + i * IV + 1, "device", "一体机", "ok", "kiosk") for i in range(N)]
    sheet = score_period(DEVICE_RULES, obs, START, END, timedelta(minutes=5))
    assert items(sheet)["one"].state == "met"


def test_checklist_profile_counts_items():
    jiangsu = PROFILES["jiangsu-15min"]
    extra = [("device.printer", "打印机"), ("device.queue", "取号机")]
    sheet = score(jiangsu, extra=extra)
    met = {i.id for i in sheet.items if i.state == "met"}
    # present: computer (the terminal), printer, kiosk, queue, network, 专网专机专用; the scanner was never
    # reported. The display answered too, but 电子显示屏 is assisted (a screen on HDMI is invisible): evidence.
    assert met == {"office.computer", "office.printer", "area.kiosk", "area.queue",
                   "network.provincial", "security.dedicated"}
    assert items(sheet)["publicity.display"].evidence == "met"
    assert items(sheet)["office.copier"].evidence == "not_met"  # never reported: the reviewer confirms on site
    assert (sheet.earned, sheet.automatic_points, sheet.total) == (6, 7, 19)


def test_observations_outside_the_period_are_ignored_and_datetimes_work():
    obs = [o._replace(at=datetime.fromtimestamp(o.at, tz=timezone.utc)) for o in stream(days=1)]
    before = [Observation(START - timedelta(hours=1), "net.core.tcp", "10.10.1.20:443", "ok")]
    sheet = score_period(LANZHOU, before + obs, START, START + timedelta(days=1), IV)
    assert sheet.earned == 10
    with pytest.raises(ValueError):
        score_period(LANZHOU, [], START, START, IV)


def test_now_is_the_latest_state():
    obs = list(stream(days=1))
    last = max(o.at for o in obs)
    now = datetime.fromtimestamp(last + 60, tz=timezone.utc)
    assert score_now(LANZHOU, obs, now=now).earned == 10
    obs.append(Observation(last + 30, "device.kiosk", "自助服务一体机", "fail"))
    sheet = score_now(LANZHOU, obs, now=now)
    assert items(sheet)["service.self"].state == "not_met" and sheet.earned == 7
    assert items(sheet)["site.computer"].evidence == "met"
    assert items(sheet)["site.location"].state == "manual"
    # A point silent for a day: every result has lapsed.
    assert score_now(LANZHOU, obs, now=now + timedelta(days=1)).earned == 0
    assert score_now(LANZHOU, []).earned == 0


def test_county_ranking_by_score_then_code():
    good, bad = score(), score_period(LANZHOU, [], START, END, IV)
    mid = score(faults=[down("device.kiosk", 0, 30 * DAY)])
    ranked = rank_points([("620102003", mid), ("620102002", good), ("620102001", good), ("620102000", bad)])
    assert [(r.rank, r.code, r.score) for r in ranked] == [
        (1, "620102001", 10), (1, "620102002", 10), (3, "620102003", 7), (4, "620102000", 0)]
    by_share = rank_points([("a", mid), ("b", good)], by="share")
    assert [r.code for r in by_share] == ["b", "a"] and by_share[1].score == pytest.approx(7 / 10)


# ---- 一票否决 and region levels ----

def test_a_veto_zeroes_the_point_whatever_else_it_earned():
    national = PROFILES["national-basic"]
    good = score(national)
    assert good.earned == national.automatic_points == 7 and not good.vetoed
    vetoed = score_period(national, stream(), START, END, IV, vetoed={"finance.discipline"})
    assert (vetoed.vetoed, vetoed.vetoed_by, vetoed.earned, vetoed.share) == (True, ["finance.discipline"], 0, 0)
    item = items(vetoed)["finance.discipline"]
    assert (item.veto, item.vetoed, item.state, item.earned) == (True, True, "manual", None)
    # The automatic items keep their own verdicts (the evidence stays true); only the total is vetoed.
    assert items(vetoed)["network.core"].state == "met"
    assert vetoed.as_dict()["vetoed"] is True
    now = score_now(LANZHOU, list(stream(days=1)), vetoed=["finance.veto"])
    assert now.vetoed and now.earned == 0
    with pytest.raises(ValueError, match="not a veto"):
        score_period(national, [], START, END, IV, vetoed={"network.core"})


def test_a_village_point_is_not_held_to_town_requirements():
    xiangyuan = PROFILES["xiangyuan-county"]
    extra = [("device.printer", "打印机")]
    town = score(xiangyuan, extra=extra, level="town")
    assert {i.id: i.state for i in town.items if i.mode == "auto"} == {
        "equipment.computer": "met", "equipment.printer": "met", "network.line": "met", "network.system": "met"}
    assert (town.total, town.automatic_points, town.earned, town.not_applicable_points) == (7, 4, 4, 0)
    village = score(xiangyuan, extra=extra, level="village")
    assert {i.state for i in village.items} == {"not_applicable"}
    assert all(i.earned is None and i.evidence is None for i in village.items)
    assert (village.total, village.automatic_points, village.manual_points, village.earned,
            village.not_applicable_points, village.level) == (0, 0, 0, 0, 7, "village")
    # Unknown level: every item applies (the point is held to the whole list).
    assert score(xiangyuan, extra=extra).total == 7
    assert {i.state for i in score_now(xiangyuan, list(stream(days=1)), level="village").items} == {
        "not_applicable"}


def test_inferred_points_are_marked_on_the_sheet():
    national = PROFILES["national-basic"]
    sheet = score(national)
    inferred = {i.id: i.points for i in sheet.items if i.inferred}
    assert inferred == {"matters.consistent": 3, "rules.quality_evaluation": 5, "security.dedicated": 3,
                        "security.accounts_data": 1, "security.secrecy": 1}
    assert sheet.inferred_points == 13
    row = next(r for r in sheet.as_dict()["items"] if r["id"] == "security.dedicated")
    assert row["inferred"] is True and row["inferred_reason"] and row["state"] == "met"
