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
