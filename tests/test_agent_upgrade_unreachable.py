"""A trial whose collector never answered (a village's 2G line down, a county-wide outage in the rollout window):
rolled back without banning the build or counting as a build fault, tried again later, at most
UNREACHABLE_TRIES trials in all; a trial the collector answered (any HTTP status) stays ``rolled_back``.

The send outcomes the watchdog is told of are real transport.SendError raised by real requests: to a loopback
port nobody listens on (no answer at all), to a loopback server answering 503, or 200 without an
acknowledgement.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import transport
from agent.outbox import Outbox
from agent.sender import Sender
from agent.service import watched_sender
from agent.upgrade import state as st
from agent.upgrade import upgrade_path
from agent.upgrade.launch import UNREACHABLE_TRIES
from agent.upgrade.manager import TRIAL_AGAIN_AFTER
from collector.api.releases import REASON_CN as COLLECTOR_REASON_CN
from tests.conftest import free_port
from tests.release_collector import ReleaseCollector, manifest
from tests.test_agent_upgrade import SECTION, _base_binary, _batch, _trial_manager, setup


@pytest.fixture
def releases():
    server = ReleaseCollector().start()
    yield server
    server.stop()


def _send_error(url: str) -> transport.SendError:
    with pytest.raises(transport.SendError) as caught:
        transport.send_reports(url, "token", [{"report_id": "r1"}], 2.0)
    return caught.value


@pytest.fixture
def nobody():
    """A loopback URL where nothing listens: every send fails with no answer at all."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def answering():
    """``(url of a server answering every POST 503, url of one answering 200 with {})``: answers, but neither
    acknowledges a report."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            busy = self.path.startswith("/busy/")
            self.send_response(503 if busy else 200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "busy"}' if busy else b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield f"{url}/busy", url
    server.shutdown()
    server.server_close()


def _doc(state) -> dict:
    return json.loads(upgrade_path(state.dir).read_text())


def _again(tmp_path, releases, now):
    """The next trial of the same build, with what upgrade.json holds (its ``unreachable`` count kept)."""
    doc = st.load(upgrade_path(tmp_path / "state"))
    trial = {"version": "0.2.0", "path": str(tmp_path / "state" / "releases" / "0.2.0" / "pointwatch-agent"),
             "sha256": "ab" * 32, "from_version": "0.1.0", "from_path": _base_binary(tmp_path),
             "started_at": now[0], "budget_s": 600, "ran_s": 0, "launches": 0, "boots": 0, "boot_id": "boot-1"}
    base = {"version": "0.1.0", "path": _base_binary(tmp_path)}
    st.save(upgrade_path(tmp_path / "state"), {**doc, "base": base, "trial": trial})
    return _trial_manager(tmp_path, releases, now, write=False)


def test_the_transport_says_which_failures_got_no_answer_at_all(nobody, answering):
    busy, unacknowledging = answering
    assert _send_error(nobody).unanswered is True
    assert (_send_error(busy).status, _send_error(busy).unanswered) == (503, False)
    assert _send_error(unacknowledging).unanswered is False  # a 2xx without "accepted" is still an answer


def test_the_agents_sender_tells_the_watchdog_of_every_failed_send(tmp_path, nobody):
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    box.add(lambda seq, note: {"report_id": f"r{seq}", "agent_version": "0.2.0"})
    seen: list = []
    sender = watched_sender(Sender, seen.append)(box, nobody, lambda: "token", lambda: "agent-1", 2.0)
    sender.send_once()
    assert [e.unanswered for e in seen] == [True] and box.depth() == 1  # the sender went on as ever


def test_a_trial_that_never_reached_the_collector_rolls_back_and_is_tried_again_later(tmp_path, releases, nobody):
    now = [1_000_000.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now)
    for _ in range(3):
        manager.on_send_failed(_send_error(nobody))
    now[0] += 601
    manager.step()
    assert handed == [_base_binary(tmp_path)]
    doc = _doc(state)
    assert doc["trial"] is None and doc["failed"] == [] and doc["last"]["event"] == "rolled_back"
    assert (doc["unreachable"]["version"], doc["unreachable"]["sha256"], doc["unreachable"]["count"]) == (
        "0.2.0", "ab" * 32, 1)
    assert st.COLLECTOR_UNREACHABLE not in st.BUILD_FAULTS and st.COLLECTOR_UNREACHABLE in COLLECTOR_REASON_CN
    # The old version reports it (not a build fault: the collector's stage pause ignores it) and waits.
    releases.add("0.2.0", b"", envelope=manifest(b"x" * 10, "0.2.0", [releases.key], sha256="ab" * 32))
    old, _state, old_handed = setup(tmp_path, releases, SECTION, clock=lambda: now[0])
    status, message, details = old.describe()
    assert (status, details["reason"], details["sha256"]) == ("fail", st.COLLECTOR_UNREACHABLE, "ab" * 32)
    assert "无法连接采集端" in message and "第 1 次" in message
    old.step()
    assert old_handed == [] and releases.file_requests() == []
    now[0] += TRIAL_AGAIN_AFTER + 1  # after the delay the same build is fetched again
    old.step()
    assert releases.file_requests() != []


def test_the_last_allowed_unreachable_trial_is_rolled_back_for_good(tmp_path, releases, nobody):
    now = [1_000_000.0]
    for attempt in range(1, UNREACHABLE_TRIES + 1):
        manager, state, handed = _again(tmp_path, releases, now)
        manager.on_send_failed(_send_error(nobody))
        now[0] += 601
        manager.step()
        assert handed == [_base_binary(tmp_path)]
        doc = _doc(state)
        if attempt < UNREACHABLE_TRIES:
            assert doc["failed"] == [] and doc["unreachable"]["count"] == attempt
    assert [(f["version"], f["reason"]) for f in doc["failed"]] == [("0.2.0", st.ROLLED_BACK)]
    assert doc["unreachable"] is None


@pytest.mark.parametrize("answer", ["http_503", "http_200_unacknowledged", "old_reports_acknowledged"])
def test_a_trial_the_collector_answered_is_rolled_back_at_once(tmp_path, releases, nobody, answering, answer):
    now = [1_000_000.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now)
    manager.on_send_failed(_send_error(nobody))
    if answer == "http_503":
        manager.on_send_failed(_send_error(answering[0]))
    elif answer == "http_200_unacknowledged":
        manager.on_send_failed(_send_error(answering[1]))
    else:  # only reports the old version queued were acknowledged: the collector answered, 0.2.0 never reported
        manager.on_ack(_batch("0.1.0"))
    manager.on_send_failed(_send_error(nobody))
    now[0] += 601
    manager.step()
    doc = _doc(state)
    assert handed == [_base_binary(tmp_path)] and doc["unreachable"] is None
    assert [(f["version"], f["reason"]) for f in doc["failed"]] == [("0.2.0", st.ROLLED_BACK)]


def test_an_answer_before_a_reboot_still_counts_after_it(tmp_path, releases, nobody, answering):
    """The trial's launches share one verdict: an answer seen before a power cut is in upgrade.json."""
    now = [1_000_000.0]
    manager, state, _handed = _trial_manager(tmp_path, releases, now)
    manager.on_send_failed(_send_error(answering[0]))  # HTTP 503: the collector answered
    now[0] += 250
    manager.step()  # the watchdog writes its count (and what the sender saw) to upgrade.json
    doc = st.load(upgrade_path(state.dir))
    st.save(upgrade_path(state.dir), {**doc, "trial": {**doc["trial"], "launches": 0}})  # the next launch
    manager, state, handed = _trial_manager(tmp_path, releases, now, write=False)
    manager.on_send_failed(_send_error(nobody))
    now[0] += 351
    manager.step()
    assert handed == [_base_binary(tmp_path)]
    assert [f["reason"] for f in _doc(state)["failed"]] == [st.ROLLED_BACK]


def test_a_trial_that_sent_nothing_is_rolled_back_at_once(tmp_path, releases):
    """No send at all is no sign of a line down: the build itself may never have reported."""
    now = [1_000_000.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now)
    now[0] += 601
    manager.step()
    assert [f["reason"] for f in _doc(state)["failed"]] == [st.ROLLED_BACK]


def test_a_trial_whose_reports_go_nowhere_while_the_collector_answers_it_is_the_builds_fault(tmp_path, releases,
                                                                                             nobody):
    """A build that sends its reports nowhere (a broken sender) while its policy fetches and manifest requests
    are answered: the collector was reachable, so this is the build's failure, rolled_back at once — not an
    outage retried later. Any HTTP answer to any request of the process counts (transport.last_answer)."""
    now = [1_000_000.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now)
    for _ in range(3):
        manager.on_send_failed(_send_error(nobody))
    with pytest.raises(transport.SendError) as answered:  # the policy fetcher's request, say: any status counts
        transport.get(f"{releases.url}/api/v1/agent/releases/0.2.0/linux-x86_64", "not-the-token", 5.0)
    assert answered.value.status == 401 and not answered.value.unanswered
    now[0] += 601
    manager.step()
    doc = _doc(state)
    assert doc["trial"] is None and [(f["version"], f["reason"]) for f in doc["failed"]] == [("0.2.0", st.ROLLED_BACK)]
    assert not doc.get("unreachable")
