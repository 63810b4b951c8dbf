"""What the agent's requests never do: follow a redirect with its token to another address, or start a
release download the disk has no room for. Real loopback HTTP servers and the real filesystem."""

from __future__ import annotations

import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from agent import transport
from agent.upgrade.download import FREE_MARGIN, DownloadError, NoSpace, download
from tests.policy_collector import TOKEN
from tests.release_collector import PLATFORM, ReleaseCollector


class Recorder:
    """A loopback server that records each request's path and Authorization header and answers ``answer``
    (a status and headers) to every method."""

    def __init__(self, answer=(200, {})):
        self.answer, self.seen = answer, []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.seen.append((self.command, self.path, self.headers.get("Authorization")))
                status, headers = recorder.answer
                self.send_response(status)
                for k, v in {**headers, "Content-Length": "2", "Content-Type": "application/json"}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(b"{}")

            do_GET = do_POST = do_PUT = _any  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def elsewhere():
    server = Recorder()
    yield server
    server.stop()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_the_token_never_reaches_where_it_points(tmp_path, elsewhere, status):
    collector = Recorder((status, {"Location": f"{elsewhere.url}/steal"}))
    try:
        with pytest.raises(transport.SendError) as got:
            transport.get(f"{collector.url}/api/v1/agent/policy", TOKEN, timeout=5)
        assert got.value.status == status and "follows no redirect" in str(got.value) and got.value.retry
        with pytest.raises(transport.SendError) as got:
            transport.send_reports(collector.url, TOKEN, [{"report_id": "r1"}], timeout=5)
        # the batch is kept for later (a setting to fix), never dropped as refused
        assert got.value.status == status and got.value.retry
        with pytest.raises(DownloadError, match="follows no redirect"):
            download(f"{collector.url}/api/v1/agent/releases/0.2.0/{PLATFORM}/file", TOKEN, tmp_path / "a.part",
                     1000, 1000, timeout=5, wait=lambda s: False)
    finally:
        collector.stop()
    assert [auth for _, _, auth in collector.seen] == [f"Bearer {TOKEN}"] * 3  # the collector was asked
    assert elsewhere.seen == []  # and nothing, token or not, went where the Location pointed


def test_a_plain_answer_still_arrives(elsewhere):
    assert transport.get(f"{elsewhere.url}/x", TOKEN, timeout=5)[0] == 200
    assert elsewhere.seen == [("GET", "/x", f"Bearer {TOKEN}")]


@pytest.fixture
def releases():
    server = ReleaseCollector().start()
    yield server
    server.stop()


def test_a_download_the_disk_has_no_room_for_is_not_started(tmp_path, releases):
    releases.add("0.2.0", os.urandom(1000))
    part = tmp_path / "r" / "pointwatch-agent.part"
    part.parent.mkdir()
    too_big = shutil.disk_usage(part.parent).free + 1  # what was signed: the disk holds it, but not the margin
    with pytest.raises(NoSpace) as got:
        download(f"{releases.url}/api/v1/agent/releases/0.2.0/{PLATFORM}/file", TOKEN, part, too_big, 1000,
                 timeout=5, wait=lambda s: False)
    assert isinstance(got.value, DownloadError)  # retried later, like any unfinished download: no failed build
    assert "磁盘空间不足" in str(got.value) and "稍后自动重试" in str(got.value)
    assert releases.file_requests() == [] and not part.exists()


def test_a_resumed_download_needs_room_for_what_is_left_only(tmp_path, releases):
    data = os.urandom(50_000)
    releases.add("0.2.0", data)
    url = f"{releases.url}/api/v1/agent/releases/0.2.0/{PLATFORM}/file"
    part = tmp_path / "pointwatch-agent.part"
    part.write_bytes(data[:20_000])
    free = shutil.disk_usage(tmp_path).free
    # what is left is more than the disk holds beyond the margin: not resumed, the part kept
    with pytest.raises(NoSpace):
        download(url, TOKEN, part, 20_000 + free - FREE_MARGIN + 8 * 1024 * 1024, 100000, timeout=5,
                 wait=lambda s: False)
    assert releases.file_requests() == [] and part.read_bytes() == data[:20_000]
    assert download(url, TOKEN, part, len(data), 100000, timeout=5, wait=lambda s: False)
    assert releases.file_requests() == ["bytes=20000-"] and part.read_bytes() == data


def test_a_proxys_own_page_neither_replaces_the_part_nor_starts_a_release(tmp_path, elsewhere):
    # A captive portal answers 200 with a page of its own, whatever the Range asked: before, the part
    # downloaded so far was truncated and the page became the release's first bytes (a digest mismatch,
    # and three of them ban a good build).
    part = tmp_path / "pointwatch-agent.part"
    part.write_bytes(b"x" * 20_000)
    with pytest.raises(DownloadError, match="2 bytes, 50000 expected"):
        download(f"{elsewhere.url}/file", TOKEN, part, 50_000, 100000, timeout=5, wait=lambda s: False)
    assert part.read_bytes() == b"x" * 20_000
    part.unlink()
    with pytest.raises(DownloadError, match="2 bytes, 50000 expected"):
        download(f"{elsewhere.url}/file", TOKEN, part, 50_000, 100000, timeout=5, wait=lambda s: False)
    assert not part.exists() or part.stat().st_size == 0


def test_a_range_of_a_file_of_another_size_is_not_appended(tmp_path):
    part = tmp_path / "pointwatch-agent.part"
    part.write_bytes(b"x" * 20_000)
    server = Recorder((206, {"Content-Range": "bytes 20000-20001/99999"}))
    try:
        with pytest.raises(DownloadError, match="Content-Range"):
            download(f"{server.url}/file", TOKEN, part, 50_000, 100000, timeout=5, wait=lambda s: False)
    finally:
        server.stop()
    assert part.read_bytes() == b"x" * 20_000


def test_an_answer_that_acknowledges_nothing_deletes_no_report_and_commits_no_trial(tmp_path, elsewhere):
    # A proxy (or a captive portal) answering the reports POST with 200 "{}": before, that was an ack, the
    # batch left the outbox and an upgrade trial's first report "committed" the trial.
    from agent.outbox import Outbox
    from agent.sender import Sender
    from tests.helpers import report_json

    with pytest.raises(transport.SendError, match="without an acknowledgement") as got:
        transport.send_reports(elsewhere.url, TOKEN, [{"report_id": "r1"}], timeout=5)
    assert got.value.retry
    box = Outbox(tmp_path / "o.sqlite3", max_reports=100)
    box.add(lambda seq, note: report_json(seq=seq, agent_id="agent-1"))
    acked = []
    sender = Sender(box, elsewhere.url, lambda: TOKEN, lambda: "agent-1", timeout=5, on_ack=acked.append)
    sender.send_once()
    assert box.depth() == 1 and acked == [] and sender.failures == 1
    box.close()
