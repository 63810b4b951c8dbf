"""collector/ingest/admission.py: any number of requests is taken while each is served in time; one that waited too
long is refused before store work; the hard cap holds when nothing finishes."""

from __future__ import annotations

import pytest

from collector.ingest.admission import Admission, AdmissionConfigError
from collector.settings import Settings, SettingsError


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_a_burst_is_taken_however_many_wait_and_each_is_judged_on_its_own_age():
    clock = Clock()
    adm = Admission(max_in_flight=512, max_wait_s=5.0, clock=clock)
    arrivals = []
    for _ in range(300):  # far more than the old fixed cap of 64
        arrivals.append(adm.arrive())
        clock.t += 0.01
    assert None not in arrivals and adm.in_flight == 300
    clock.t = arrivals[0] + 5.5  # the first ones waited 5.5 s, the last ones 2.5 s
    assert adm.too_late(arrivals[0]) and not adm.too_late(arrivals[-1])
    for _ in arrivals:
        adm.leave()
    assert adm.in_flight == 0 and adm.arrive() is not None


def test_the_hard_cap_refuses_at_once_and_frees_with_each_answer():
    clock = Clock()
    adm = Admission(max_in_flight=3, clock=clock)
    for _ in range(3):
        assert adm.arrive() is not None
    clock.t += 60  # a store that stopped answering: nothing finishes
    assert adm.arrive() is None and adm.in_flight == 3
    adm.leave()
    assert adm.arrive() is not None and adm.in_flight == 3


@pytest.mark.parametrize("section, named", [
    ({"max_in_flight": 0}, "ingest.max_in_flight"),
    ({"max_in_flight": 2.5}, "ingest.max_in_flight"),
    ({"max_wait_s": "5s"}, "ingest.max_wait_s"),
    ({"max_wait_s": True}, "ingest.max_wait_s"),
    ({"max_delay_s": 2}, "ingest.max_delay_s: unknown key"),
    ([1, 2], "ingest: expected a mapping"),
])
def test_bad_ingest_config_names_the_key(section, named):
    with pytest.raises(AdmissionConfigError, match=named.replace(".", r"\.")):
        Admission.from_config(section)


def test_bad_ingest_config_stops_the_collector_at_start(tmp_path):
    config = tmp_path / "collector.yaml"
    config.write_text("ingest:\n  max_wait_s: -1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"collector\.yaml: ingest\.max_wait_s: expected a positive number"):
        Settings.load(str(config), str(tmp_path / "data"))
    config.write_text("ingest:\n  max_wait_s: 0.5\n  max_in_flight: 100\n", encoding="utf-8")
    settings = Settings.load(str(config), str(tmp_path / "data"))
    assert Admission.from_config(settings.extra["ingest"]) == Admission(max_in_flight=100, max_wait_s=0.5)


def test_the_defaults_are_the_documented_ones_and_a_section_may_give_either_key():
    """docs/en/configuration.md and operations.md: ``ingest: {max_in_flight: 512, max_wait_s: 5.0}``."""
    assert Admission.from_config(None) == Admission(max_in_flight=512, max_wait_s=5.0)
    assert Admission.from_config({}) == Admission(max_in_flight=512, max_wait_s=5.0)
    assert Admission() == Admission(max_in_flight=512, max_wait_s=5.0)
    assert Admission.from_config({"max_wait_s": 2}) == Admission(max_in_flight=512, max_wait_s=2)  # whole seconds too
    assert Admission.from_config({"max_in_flight": 8}) == Admission(max_in_flight=8, max_wait_s=5.0)


def test_a_request_is_too_late_only_once_it_waited_longer_than_max_wait():
    clock = Clock()
    adm = Admission(max_wait_s=5.0, clock=clock)
    arrived = adm.arrive()
    assert arrived == clock.t  # its arrival time, on the admission's clock
    clock.t += 5.0
    assert not adm.too_late(arrived)  # "waited longer than max_wait_s"
    clock.t += 0.01
    assert adm.too_late(arrived)


def test_the_cap_takes_exactly_max_in_flight():
    adm = Admission(max_in_flight=1, clock=Clock())
    assert adm.arrive() is not None and adm.in_flight == 1
    assert adm.arrive() is None and adm.in_flight == 1  # a refusal holds no slot
    adm.leave()
    assert adm.in_flight == 0


def test_a_bad_value_is_named_with_where_it_was_and_what_is_known():
    with pytest.raises(AdmissionConfigError) as bad:
        Admission.from_config({"max_in_flight": -3}, where="collector.yaml: ingest")
    assert str(bad.value) == "collector.yaml: ingest.max_in_flight: expected a positive number, got -3"
    with pytest.raises(AdmissionConfigError) as unknown:
        Admission.from_config({"max_delay_s": 1, "zzz": 2})
    assert str(unknown.value) == "ingest.max_delay_s: unknown key (known: max_in_flight, max_wait_s, heartbeat_s)"
    with pytest.raises(AdmissionConfigError) as shape:
        Admission.from_config("fast")
    assert str(shape.value) == "ingest: expected a mapping, got str"
    with pytest.raises(AdmissionConfigError, match="got 0.0"):
        Admission.from_config({"max_wait_s": 0.0})


def test_the_heartbeat_may_be_zero_or_any_finite_number_of_seconds_and_nothing_else():
    for good in (0, 0.5, 1, 300, 86400.0):
        assert Admission.from_config({"heartbeat_s": good}).heartbeat_s == good
    assert Admission.from_config({}).heartbeat_s == 300
    for bad in (-1, -0.5, float("inf"), float("nan"), True, False, "300s", None):
        with pytest.raises(AdmissionConfigError) as err:
            Admission.from_config({"heartbeat_s": bad}, where="collector.yaml: ingest")
        assert str(err.value) == ("collector.yaml: ingest.heartbeat_s: expected a number of seconds, 0 or more "
                                  f"(0: every sample is stored), got {bad!r}"), bad
