"""A small HTTP stand-in for the collector in the agent's process tests: records every request, dedups by
report_id.

It answers like the real collector's ingest (202 {"accepted", "duplicates"}) and enrolment, validates each
body with the real collector's parser (collector.ingest.accept.parse_reports: a report the collector would
refuse is refused here with its 422 too), notes whether each request came gzipped, and can be stopped and
started again on the same port to play a collector that goes away for a while.

Why a stand-in at all, where the real one (tests/livecollector.py, collector.app under uvicorn) is used
elsewhere: the tests on it read what only a recorder can tell — each request's batch in arrival order
(backlog order, batching, fresh reports overtaking), the report_ids seen under each seq across kills,
and a store-then-hold-the-answer moment to kill the agent in — and bring the collector down and up a
dozen times in seconds on one port. The same faults against the real collector (SIGKILL, SIGSTOP mid-
request, outages, 4xx, gzip) are tests/test_faults_collector.py, test_faults_agent.py (the kill test) and
test_agent_against_collector.py.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from collector.ingest.accept import IngestError, parse_reports


class RecordingCollector:
    def __init__(self, port: int, token: str = "test-token-0123456789"):
        self.port, self.token = port, token
        self.requests: list[dict] = []      # every ingest request: {"seqs": [...], "ids": [...], "status"}
        self.stored: dict[str, dict] = {}   # report_id -> report, first arrival wins (like the collector)
        self.arrival: list[int] = []        # seqs in the order they were first stored
        self.duplicates = 0
        self.status_override: int | None = None
        self.answer_delay = 0.0             # store, then wait this long before answering (to kill mid-send)
        self.in_request = threading.Event()
        self.seq_ids: dict[int, set] = {}   # seq -> report_ids seen with it (must never be two)
        self.enrolments: list[dict] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingCollector:
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                gzipped = self.headers.get("Content-Encoding") == "gzip"
                if gzipped:
                    raw = gzip.decompress(raw)
                doc = json.loads(raw)
                if self.path == "/api/v1/enroll":
                    collector.enrolments.append(doc)
                    return self._answer(200, {"agent_id": "agent-1", "token": collector.token,
                                              "point_code": doc["point_code"]})
                if self.path != "/api/v1/reports":
                    return self._answer(404, {"detail": "not found"})
                if self.headers.get("Authorization") != f"Bearer {collector.token}":
                    return self._answer(401, {"detail": "bad token"})
                if collector.status_override:
                    return self._answer(collector.status_override, {"detail": "override"})
                try:
                    parse_reports(raw)  # the real collector's validation
                except IngestError as exc:
                    return self._answer(exc.status, {"detail": exc.detail})
                reports = doc.get("reports", [doc])
                accepted = duplicates = 0
                with collector.lock:
                    collector.requests.append({"seqs": [r["seq"] for r in reports],
                                               "ids": [r["report_id"] for r in reports], "gzip": gzipped})
                    for r in reports:
                        collector.seq_ids.setdefault(r["seq"], set()).add(r["report_id"])
                        if r["report_id"] in collector.stored:
                            duplicates += 1
                            collector.duplicates += 1
                        else:
                            accepted += 1
                            collector.stored[r["report_id"]] = r
                            collector.arrival.append(r["seq"])
                if collector.answer_delay:
                    collector.in_request.set()
                    time.sleep(collector.answer_delay)
                self._answer(202, {"accepted": accepted, "duplicates": duplicates})

            def _answer(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def seqs(self) -> list[int]:
        with self.lock:
            return sorted(r["seq"] for r in self.stored.values())
