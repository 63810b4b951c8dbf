"""collector/admission.py: a burst is taken, a standing queue is refused, the refusal ends with the queue."""

from __future__ import annotations

import pytest

from collector.admission import Admission, AdmissionConfigError
from collector.settings import Settings, SettingsError


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_a_burst_answered_in_time_is_taken_however_many_wait():
    clock = Clock()
    adm = Admission(max_in_flight=512, max_delay_s=2.0, window_s=1.0, clock=clock)
    for _ in range(300):  # far more than the old fixed cap of 64
        assert adm.refuse_reason() is None
        adm.enter()
    for i in range(300):
        clock.t += 0.01
        adm.leave(0.2 + i * 0.005)  # the fastest of the window: 0.2 s
    clock.t += 1.0
    assert adm.refuse_reason() is None and adm.in_flight == 0


def test_a_standing_queue_is_refused_until_answers_are_fast_again():
    clock = Clock()
    adm = Admission(max_in_flight=512, max_delay_s=2.0, window_s=1.0, clock=clock)
    for _ in range(50):
        adm.enter()
    for _ in range(10):  # a whole window in which even the fastest answer took 3 s
        clock.t += 0.1
        adm.leave(3.0)
    clock.t += 0.01
    assert adm.refuse_reason() == "queue_delay"
    clock.t += 0.5  # still waiting requests, none finished this window: the verdict stands
    assert adm.refuse_reason() == "queue_delay"
    clock.t += 1.0
    assert adm.refuse_reason() == "queue_delay"
    adm.leave(0.05)  # the queue drained: a fast answer in this window
    clock.t += 1.0
    assert adm.refuse_reason() is None


def test_a_drained_queue_ends_the_refusal_even_if_nothing_finished():
    clock = Clock()
    adm = Admission(max_delay_s=1.0, window_s=1.0, clock=clock)
    adm.enter()
    clock.t += 0.5
    adm.leave(5.0)
    clock.t += 1.0
    assert adm.refuse_reason() == "queue_delay"
    clock.t += 1.0  # an empty window with nothing in flight
    assert adm.refuse_reason() is None


def test_the_hard_cap_holds_when_nothing_finishes():
    clock = Clock()
    adm = Admission(max_in_flight=3, clock=clock)
    for _ in range(3):
        adm.enter()
    clock.t += 60  # a store that stopped answering: no window ever shows the delay
    assert adm.refuse_reason() == "busy"
    adm.leave(60.0)
    assert adm.refuse_reason() is None  # room again; this window's slow answer is judged when it ends
    clock.t += 1.0
    assert adm.refuse_reason() == "queue_delay"


@pytest.mark.parametrize("section, named", [
    ({"max_in_flight": 0}, "ingest.max_in_flight"),
    ({"max_in_flight": 2.5}, "ingest.max_in_flight"),
    ({"max_delay_s": "2s"}, "ingest.max_delay_s"),
    ({"window_s": True}, "ingest.window_s"),
    ({"max_delay": 2}, "ingest.max_delay: unknown key"),
    ([1, 2], "ingest: expected a mapping"),
])
def test_bad_ingest_config_names_the_key(section, named):
    with pytest.raises(AdmissionConfigError, match=named.replace(".", r"\.")):
        Admission.from_config(section)


def test_bad_ingest_config_stops_the_collector_at_start(tmp_path):
    config = tmp_path / "collector.yaml"
    config.write_text("ingest:\n  max_delay_s: -1\n", encoding="utf-8")
    with pytest.raises(SettingsError, match=r"collector\.yaml: ingest\.max_delay_s: expected a positive number"):
        Settings.load(str(config), str(tmp_path / "data"))
    config.write_text("ingest:\n  max_delay_s: 0.5\n  max_in_flight: 100\n", encoding="utf-8")
    Settings.load(str(config), str(tmp_path / "data"))
    assert Admission.from_config({"max_delay_s": 0.5}).max_delay_s == 0.5
