"""The rule language on hand-made slot bitmaps: one byte per slot, 0 = nothing, 1 ok, 2 warn, 3 fail, 4 error."""

from __future__ import annotations

import pytest

from collector.scoring.rules import RuleError, Slots, parse_condition, parse_hold, parse_rule

OK, W, F, E, _ = 1, 2, 3, 4, 0


def slots(series):
    """series: check -> {target: [code per slot]}"""
    n = len(next(iter(next(iter(series.values())).values())))
    return Slots(n, {check: [(t, bytearray(codes)) for t, codes in targets.items()]
                     for check, targets in series.items()})


def bits(mask: int, n: int) -> list[int]:
    return list(mask.to_bytes(n, "big"))


TCP = {"net.core.tcp": {"a": [OK, F, OK, _, W], "b": [OK, OK, _, _, OK]}}


@pytest.mark.parametrize("cond, expected", [
    ("net.core.tcp == ok", [1, 0, 1, 0, 0]),        # slot 3: nobody reported; slot 4: a is warn
    ("net.core.tcp in [ok, warn]", [1, 0, 1, 0, 1]),
    ("net.core.tcp != fail", [1, 0, 1, 0, 1]),
    ("net.core.tcp not in [fail, error]", [1, 0, 1, 0, 1]),
    ("net.core.tcp[b] == ok", [1, 1, 0, 0, 1]),
    ("net.core.tcp[a] == fail", [0, 1, 0, 0, 0]),
    ("net.core.dns == ok", [0, 0, 0, 0, 0]),         # never reported: never holds
])
def test_status_conditions(cond, expected):
    assert bits(parse_condition(cond).mask(slots(TCP)), 5) == expected


KIOSKS = {"device.kiosk": {"k1": [OK, W, F, _, E], "k2": [OK, OK, OK, F, _]}}


@pytest.mark.parametrize("cond, expected", [
    # present counts devices that answered ok: a warn (absent optional device, could not verify) is not seen.
    ("device.kiosk.present >= 1", [1, 1, 1, 0, 0]),
    ("device.kiosk.present >= 2", [1, 0, 0, 0, 0]),
    ("device.kiosk.ok >= 2", [1, 0, 0, 0, 0]),
    ("device.kiosk.reported == 2", [1, 1, 1, 0, 0]),
    ("device.kiosk.present < 1", [0, 0, 0, 1, 1]),
    ("device.printer.present == 0", [1, 1, 1, 1, 1]),
    ("device.kiosk == ok", [1, 0, 0, 0, 0]),
])
def test_device_counts(cond, expected):
    assert bits(parse_condition(cond).mask(slots(KIOSKS)), 5) == expected


def test_warn_is_never_present():
    # The agent reports an absent optional device, and one it could not verify, as warn: never "present".
    only_warn = {"device.display": {"d": [W, W, OK]}}
    assert bits(parse_condition("device.display.present >= 1").mask(slots(only_warn)), 3) == [0, 0, 1]
    assert bits(parse_condition("device.display.reported >= 1").mask(slots(only_warn)), 3) == [1, 1, 1]


def test_holds_are_policy_not_the_standards():
    assert parse_rule({"all": ["net.core.tcp == ok"], "hold": "95%"}).hold_source == "pointwatch 策略"
    assert parse_rule({"all": ["net.core.tcp == ok"], "hold": "95%", "hold_source": "某文件"}).hold_source == "某文件"
    with pytest.raises(RuleError):
        parse_rule({"all": ["net.core.tcp == ok"], "hold": "95%", "hold_source": ""})


def test_combinators_nest():
    s = Slots(4, {"net.core.tcp": [("a", bytearray([OK, F, OK, F]))],
                  "isolation.internet": [("x", bytearray([OK, OK, F, F]))]})
    rule = parse_rule({"any": ["net.core.tcp == ok", {"none": ["isolation.internet == fail"]}], "hold": "50%"})
    assert bits(rule.mask(s), 4) == [1, 1, 1, 0]
    rule = parse_rule({"all": ["net.core.tcp == ok", "isolation.internet == ok"], "hold": 1})
    assert bits(rule.mask(s), 4) == [1, 0, 0, 0]
    assert rule.checks() == {"net.core.tcp", "isolation.internet"}
    assert rule.text == "all(net.core.tcp == ok, isolation.internet == ok) hold 100%"


def test_hold():
    assert parse_hold("95%") == 0.95 and parse_hold(0.5) == 0.5 and parse_hold("100%") == 1
    for bad in ("0%", "abc%", 95, True, None):
        with pytest.raises(RuleError):
            parse_hold(bad)


@pytest.mark.parametrize("text", ["net.core.tcp", "tcp == ok", "net.core.tcp in ok", "net.core.tcp in []",
                                  "device.kiosk[x].present >= 1", "device.kiosk.present in [1]",
                                  "device.kiosk.count >= 1"])
def test_bad_conditions(text):
    with pytest.raises(RuleError):
        parse_condition(text)


# -- what configs/standards/README.md ("The rule language") says, case by case -------------------------------


def test_a_slot_in_which_no_target_reported_never_holds_a_status_condition():
    # "holds when at least one target reported and every reported target satisfies it" — the last slot too
    s = slots({"net.core.tcp": {"a": [OK, _]}})
    assert bits(parse_condition("net.core.tcp == ok").mask(s), 2) == [1, 0]
    assert bits(parse_condition("net.core.tcp != fail").mask(s), 2) == [1, 0]


def test_a_warn_alone_meets_a_condition_that_allows_warn():
    s = slots({"net.core.icmp": {"gw": [W, W, F]}})
    assert bits(parse_condition("net.core.icmp in [ok, warn]").mask(s), 3) == [1, 1, 0]
    assert bits(parse_condition("net.core.icmp == warn").mask(s), 3) == [1, 1, 0]
    assert bits(parse_condition("net.core.icmp == ok").mask(s), 3) == [0, 0, 0]


def test_a_count_of_hundreds_of_devices_still_counts():
    # "device.<kind>.present >= 1 — devices of the kind that answered": however many a point has
    s = Slots(1, {"device.printer": [(f"p{i}", bytearray([OK])) for i in range(300)]})
    assert bits(parse_condition("device.printer.present >= 1").mask(s), 1) == [1]
    assert bits(parse_condition("device.printer.present >= 2").mask(s), 1) == [1]


def test_spelling_variants_the_language_allows():
    both = parse_condition("net.core.tcp in ['ok', \"warn\"]")  # statuses quoted as YAML users write them
    assert both.allowed == {"ok", "warn"}
    assert parse_condition("net.core.tcp == 'ok'").allowed == {"ok"}
    assert parse_condition("net.core.tcp not   in [fail]").allowed == {"ok", "warn", "error"}
    count = parse_condition("  device.kiosk.present >= 1 ")
    assert count.text == "device.kiosk.present >= 1"  # the rule's text on the sheet, as written
    assert (count.check, count.attr, count.op, count.value) == ("device.kiosk", "present", ">=", 1)


@pytest.mark.parametrize("text, named", [
    ("net.core.tcp == okay", ["'okay'", "ok, warn, fail, error"]),
    ("net.core.tcp in [ok, sure]", ["'sure'", "ok, warn, fail, error"]),
    ("net.core.tcp in [ok, warn", ["'in' wants a list", "[ok, warn"]),
    ("net.core.tcp in ok]", ["'in' wants a list", "ok]"]),
    ("net.core.tcp in [ , ]", ["empty"]),
    ("net.core.tcp ~ ok", ["cannot parse condition 'net.core.tcp ~ ok'", "net.core.tcp == ok"]),
    ("net.core.tcp >= ok", ["'net.core.tcp >= ok'", "==, !=, in or not in", "'>='"]),
    ("device.kiosk.present[k1] >= 1", ["'device.kiosk.present[k1] >= 1'", "[target]"]),
    ("device.kiosk.present in [1]", ["'device.kiosk.present in [1]'", "==, !=, >=, >, <= or <", "'in'"]),
    ("device.kiosk.present >= one", ["'device.kiosk.present >= one'", "whole number", "'one'"]),
    ("device.robot.present >= 1", ["unknown device 'device.robot.present'", "kiosk, queue, printer",
                                   "present, ok, reported"]),
    ("net.core.bogus == ok", ["'net.core.bogus == ok'", "unknown check id 'net.core.bogus'"]),
    ("net.tcp == ok", ["unknown check id 'net.tcp'"]),
])
def test_a_bad_condition_is_named_with_what_was_expected(text, named):
    with pytest.raises(RuleError) as bad:
        parse_condition(text)
    for part in named:
        assert part in str(bad.value), (text, part, str(bad.value))


def test_a_condition_that_is_not_a_string_is_named():
    with pytest.raises(RuleError, match=r"a condition is a string such as \"net.core.tcp == ok\", got 5"):
        parse_condition(5)


def _rule_error(node) -> str:
    with pytest.raises(RuleError) as bad:
        parse_rule(node)
    return str(bad.value)


def test_a_bad_rule_is_named_from_its_place_in_the_rule_down():
    ok = "net.core.tcp == ok"
    assert _rule_error(["all"]).startswith("rule: expected a mapping")
    message = _rule_error({"all": [ok]})
    assert message.startswith("rule:") and "'hold'" in message and "missing" in message
    message = _rule_error({"all": [ok], "hold": "95%", "hold_source": " "})
    assert message.startswith("rule:") and "'hold_source'" in message and "pointwatch 策略" in message
    message = _rule_error({"all": [ok], "hold": 1, "bogus": 1})
    assert message == "rule: expected exactly one of all, any, none (unexpected key 'bogus')"
    assert _rule_error({"all": [ok], "any": [ok], "hold": 1}) == "rule: expected exactly one of all, any, none"
    assert _rule_error({"hold": 1}) == "rule: expected exactly one of all, any, none"
    message = _rule_error({"all": [], "hold": 1})
    assert message.startswith("rule:") and "'all' wants a non-empty list" in message
    assert "'any' wants a non-empty list" in _rule_error({"any": ok, "hold": 1})
    message = _rule_error({"all": [ok, {"none": [ok], "any": [ok]}], "hold": 1})
    assert message == "rule.all: expected exactly one of all, any, none"
    message = _rule_error({"all": [ok, {"any": [["net.core.dns == ok"]]}], "hold": 1})
    assert message == "rule.all.any: expected a mapping with one of all, any, none"


@pytest.mark.parametrize("value, named", [
    ("95 %%", "'95 %%' is not a percentage"),
    (1.5, "hold 1.5: write a percentage like '1.5%' or a fraction <= 1"),
    (95, "'95%'"),
    ("150%", "hold 150% must be above 0% and at most 100%"),
    ("0%", "hold 0% must be above 0%"),
    (True, "hold wants a share such as 95%, got True"),
    (None, "got None"),
])
def test_a_bad_hold_is_named(value, named):
    with pytest.raises(RuleError) as bad:
        parse_hold(value)
    assert named in str(bad.value)
