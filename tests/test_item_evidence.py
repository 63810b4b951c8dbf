"""For every item of every profile: what evidence earns it.

A verdict only from what was seen. Each automatic item has a minimal set of observations that earns it and
one that does not (often the same facts with one ``warn``: an absent optional device, "could not verify");
each assisted item (自动+人工) the observations that make its evidence "met" and ones that do not — and it
never earns points. Manual items are never earned, whatever the monitor saw. The table must name every
auto and assisted item: a new one cannot land without saying what earns it.

Observations are written ``check[target]=status`` and reported in every slot of one hour (12 slots of
5 minutes), so a rule's hold is met exactly when the rule holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from collector.scoring import CHECK_IDS, Observation, load_profiles, score_now, score_period

PROFILES = load_profiles()
START = datetime(2026, 3, 1, tzinfo=timezone.utc)
IV, SLOTS = 300, 12

CORE = ["net.core.tcp=ok", "net.core.icmp=ok"]
DEDICATED = ["isolation.internet=ok", "isolation.interfaces=ok", "usage.processes=ok", "usage.listening_ports=ok"]

# (profile, item) -> (observations that earn it, observations that do not)
AUTO = {
    ("national-basic", "network.core"): (CORE, ["net.core.tcp=warn", "net.core.icmp=ok"]),
    ("national-basic", "security.dedicated"): (
        [*DEDICATED, "identity.matches_enrolment=ok"],
        [*DEDICATED, "identity.matches_enrolment=fail"]),
    ("lanzhou-basic-2023", "network.core"): (CORE, ["net.core.tcp=ok", "net.core.icmp=fail"]),
    ("lanzhou-basic-2023", "service.self"): (["device.kiosk[一体机]=ok"], ["device.kiosk[一体机]=warn"]),
    ("lanzhou-basic-2023", "security.dedicated_network"): (
        DEDICATED,
        # canaries not configured: isolation could not be verified
        ["isolation.internet=warn", "isolation.interfaces=ok", "usage.processes=ok", "usage.listening_ports=ok"]),
    ("jiangsu-15min", "office.computer"): (["identity.fingerprint=ok"], ["identity.fingerprint=warn"]),
    ("jiangsu-15min", "office.printer"): (["device.printer[p]=ok"], ["device.printer[p]=warn"]),
    ("jiangsu-15min", "office.scanner"): (["device.scanner[s]=ok"], ["device.scanner[s]=warn"]),
    ("jiangsu-15min", "area.kiosk"): (["device.kiosk[k]=ok"], ["device.kiosk[k]=warn"]),
    ("jiangsu-15min", "area.queue"): (["device.queue[q]=ok"], ["device.queue[q]=error"]),
    ("jiangsu-15min", "network.provincial"): (CORE, ["net.core.icmp=ok"]),
    ("jiangsu-15min", "security.dedicated"): (
        [*DEDICATED, "identity.matches_enrolment=ok", "usage.removable_media=ok"],
        [*DEDICATED, "identity.matches_enrolment=ok"]),  # removable media never reported: not seen
    ("xiangyuan-county", "equipment.computer"): (["device.computer[pc2]=ok"], ["device.computer[pc2]=warn"]),
    ("xiangyuan-county", "equipment.printer"): (["device.printer[p]=ok"], ["device.printer[p]=warn"]),
    # a degraded line (loss, latency) still answers: the 专线 is seen connected
    ("xiangyuan-county", "network.line"): (["net.core.icmp=warn"], ["net.core.icmp=fail"]),
    ("xiangyuan-county", "network.system"): (["net.core.tcp=ok", "net.core.dns=ok"], ["net.core.tcp=ok"]),
}

# (profile, item) -> (observations whose evidence is met, observations whose evidence is not)
ASSISTED = {
    ("national-basic", "signage.display"): (["device.display[屏]=ok"], ["device.display[屏]=warn"]),
    ("national-basic", "network.query"): (["net.core.dns=ok", "net.core.tcp=ok"],
                                          ["net.core.dns=fail", "net.core.tcp=ok"]),
    ("national-basic", "network.online"): (["net.core.https=ok"], ["net.core.https=warn"]),
    ("national-basic", "security.accounts_data"): (["usage.accounts=ok", "usage.removable_media=ok"],
                                                   ["usage.accounts=warn", "usage.removable_media=ok"]),
    ("lanzhou-basic-2023", "site.computer"): (["identity.matches_enrolment=ok", "identity.fingerprint=ok"],
                                              ["identity.matches_enrolment=ok", "identity.fingerprint=warn"]),
    ("lanzhou-basic-2023", "signage.display"): (["device.display[屏]=ok"], ["device.display[屏]=warn"]),
    ("lanzhou-basic-2023", "network.query"): (["net.core.dns=warn", "net.core.tcp=ok"],
                                              ["net.core.dns=ok", "net.core.tcp=warn"]),
    ("lanzhou-basic-2023", "network.online"): (["net.core.https=ok"], ["net.core.https=error"]),
    ("lanzhou-basic-2023", "security.accounts_data"): (["usage.accounts=ok", "usage.removable_media=ok"],
                                                       ["usage.accounts=warn", "usage.removable_media=ok"]),
    ("jiangsu-15min", "office.copier"): (["device.copier[c]=ok"], ["device.copier[c]=warn"]),
    ("jiangsu-15min", "office.phone"): (["device.phone[t]=ok"], ["device.phone[t]=warn"]),
    ("jiangsu-15min", "publicity.display"): (["device.display[屏]=ok"], ["device.display[屏]=warn"]),
    ("jiangsu-15min", "security.terminal"): (["usage.processes=ok", "usage.listening_ports=ok"],
                                             ["usage.processes=ok"]),
    ("jiangsu-15min", "security.accounts"): (["usage.accounts=ok"], ["usage.accounts=warn"]),
    ("jiangsu-15min", "security.data"): (["usage.removable_media=ok"], ["usage.removable_media=fail"]),
    ("xiangyuan-county", "equipment.copier"): (["device.copier[c]=ok"], ["device.copier[c]=warn"]),
    ("xiangyuan-county", "equipment.phone"): (["device.phone[t]=ok"], ["device.phone[t]=warn"]),
    ("national-window", "area.self_service"): (["device.kiosk[k]=ok"], ["device.kiosk[k]=warn"]),
    ("national-window", "area.queueing"): (["device.queue[q]=ok"], ["device.queue[q]=warn"]),
    ("national-window", "area.multimedia"): (["device.display[屏]=ok"], ["device.display[屏]=warn"]),
    ("national-window", "windows.count"): (
        ["device.computer[w1]=ok", "device.computer[w2]=ok", "device.computer[w3]=ok"],
        ["device.computer[w1]=ok", "device.computer[w2]=ok", "device.computer[w3]=warn"]),
    ("national-window", "business.at_window"): (["net.core.tcp=ok", "net.core.https=ok"],
                                                ["net.core.tcp=ok", "net.core.https=warn"]),
}

# Everything the monitor can report, all ok: no manual item is ever earned from it.
EVERYTHING_OK = [f"{c}[t{n}]=ok" for c in sorted(CHECK_IDS) for n in range(3)]


def _obs(specs):
    rows = []
    for spec in specs:
        subject, status = spec.split("=")
        check, _, target = subject.partition("[")
        assert check in CHECK_IDS, spec
        rows.append((check, target.rstrip("]"), status))
    return [Observation(START.timestamp() + i * IV + 7, c, t, s) for i in range(SLOTS) for c, t, s in rows]


def _item(profile_name, item_id, specs):
    sheet = score_period(PROFILES[profile_name], _obs(specs), START, START + timedelta(seconds=SLOTS * IV), IV)
    return next(i for i in sheet.items if i.id == item_id), sheet


def _ids(mode):
    return {(name, i.id) for name, p in PROFILES.items() for i in p.items if i.mode == mode}


def test_the_table_names_every_monitored_item():
    assert set(AUTO) == _ids("auto"), "say what earns each automatic item"
    assert set(ASSISTED) == _ids("assisted"), "say what the monitor shows for each assisted item"


@pytest.mark.parametrize("key", sorted(AUTO), ids="/".join)
def test_what_earns_an_automatic_item(key):
    earns, does_not = AUTO[key]
    item, sheet = _item(*key, earns)
    assert (item.state, item.earned) == ("met", item.points), f"{key}: {earns} should earn it"
    assert sheet.earned >= item.points
    item, _ = _item(*key, does_not)
    assert (item.state, item.earned) == ("not_met", 0), f"{key}: {does_not} must not earn it"
    # Now (the latest state) agrees with the period.
    now = START + timedelta(seconds=SLOTS * IV)
    latest = next(i for i in score_now(PROFILES[key[0]], _obs(earns), now=now, interval=IV).items if i.id == key[1])
    assert latest.state == "met"


@pytest.mark.parametrize("key", sorted(ASSISTED), ids="/".join)
def test_an_assisted_item_shows_evidence_and_never_earns(key):
    seen, unseen = ASSISTED[key]
    for specs, evidence in ((seen, "met"), (unseen, "not_met"), (EVERYTHING_OK, None)):
        item, _ = _item(*key, specs)
        assert (item.state, item.earned, item.mode) == ("manual", None, "assisted"), key
        assert item.review, f"{key}: the sheet says what the reviewer confirms"
        if evidence:
            assert item.evidence == evidence, f"{key}: {specs}"


@pytest.mark.parametrize("key", sorted(_ids("manual")), ids="/".join)
def test_a_manual_item_is_never_earned_automatically(key):
    item, _ = _item(*key, EVERYTHING_OK)
    assert (item.state, item.earned, item.evidence, item.availability) == ("manual", None, None, None)


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_warn_alone_earns_nothing_that_must_be_seen(name):
    # Every check warns (absent optional devices, "could not verify"): only the reachability items whose
    # rule accepts a degraded-but-answering link may hold; nothing else is earned.
    every_warn = [f"{c}[t]=warn" for c in sorted(CHECK_IDS)]
    sheet = score_period(PROFILES[name], _obs(every_warn), START, START + timedelta(seconds=SLOTS * IV), IV)
    met = {i.id for i in sheet.items if i.state == "met"}
    assert met <= {"network.line"}, met
