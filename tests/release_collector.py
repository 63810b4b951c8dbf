"""The collector's half of the release contract, for the agent's upgrade tests: manifests signed with
``cryptography`` by an offline release key, and a stdlib HTTP server answering the agent-token release routes
(``GET /api/v1/agent/releases/{version}/{platform}`` and ``.../file`` with real ``Range: bytes=N-`` support).

It stays beside the real routes (collector/api/releases.py) for the downloader's and the manager's unit tests
because of the broken answers they need and the real collector never gives: a file changed after signing
served under its manifest, a connection cut mid-file, a server ignoring Range. The whole flow against the
real collector, with real builds, is tests/test_upgrade_linux.py. ``stand_in_binary`` makes the bytes of a "new agent binary": a Python script answering ``--version``.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import sys
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.policy_collector import key_object

PLATFORM = "linux-x86_64"


def manifest(data: bytes, version: str, signers, platform: str = PLATFORM, file: str = "pointwatch-agent",
             payload_edit=None, **overrides) -> bytes:
    """The contract's manifest envelope for ``data``, signed by each of ``signers`` (``payload_edit``: bytes ->
    bytes after signing; ``overrides``: payload fields replaced before signing)."""
    payload = {"format": 1, "kind": "pointwatch-agent-release", "version": version, "platform": platform,
               "file": file, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
               "signed_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
               **overrides}
    raw = json.dumps(payload).encode("utf-8")
    signatures = [{"key_id": key_object(k)["key_id"], "signature": base64.b64encode(k.sign(raw)).decode()}
                  for k in signers]
    if payload_edit:
        raw = payload_edit(raw)
    return json.dumps({"payload": base64.b64encode(raw).decode(), "signatures": signatures}).encode()


def stand_in_binary(version: str, body: str = "") -> bytes:
    """A script standing in for an agent binary: ``--version`` prints ``pointwatch-agent <version>``; any other
    call runs ``body`` (with ``sys`` imported)."""
    return (f"#!{sys.executable}\nimport sys\n"
            f"if sys.argv[1:] == ['--version']:\n    print('pointwatch-agent {version}')\n    sys.exit(0)\n"
            f"{body}\n").encode()


class ReleaseCollector:
    """Serves ``releases[(version, platform)] = (manifest bytes, file bytes)``; ``status`` forces an answer
    (404/409/403) for every release request; ``cut_after`` closes the file after that many bytes (once);
    ``ignore_range`` answers 200 with the whole file to a Range request."""

    def __init__(self):
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.releases: dict[tuple[str, str], tuple[bytes, bytes]] = {}
        self.status: int | None = None
        self.cut_after: int | None = None
        self.ignore_range = False
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        # For a whole agent process: the signed policy it fetches, the reports it sends and which version's
        # process sent each (its User-Agent); the process of version ``refuse_sender`` gets 503 for every batch.
        self.policy: bytes | None = None
        self.reports: list[dict] = []
        self.sent_by: list[str] = []
        self.refuse_sender: str | None = None
        self._server: ThreadingHTTPServer | None = None

    def add(self, version: str, data: bytes, platform: str = PLATFORM, envelope: bytes | None = None) -> None:
        self.releases[(version, platform)] = (envelope or manifest(data, version, [self.key], platform), data)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def file_requests(self) -> list[str | None]:
        return [rng for path, rng in self.requests if path.endswith("/file")]

    def start(self) -> ReleaseCollector:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path != "/api/v1/reports":
                    return self._json(404, {"detail": "not found"})
                doc = json.loads(gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw)
                sender = (self.headers.get("User-Agent") or "").rpartition("/")[2]
                if sender == server.refuse_sender:
                    return self._json(503, {"detail": "unavailable"})
                server.reports.extend(doc["reports"])
                server.sent_by.extend([sender] * len(doc["reports"]))
                return self._json(200, {"accepted": len(doc["reports"]), "duplicates": 0})

            def do_GET(self):  # noqa: N802
                if self.path == "/api/v1/agent/policy" and server.policy is not None:
                    return self._bytes(200, server.policy, "application/json")
                server.requests.append((self.path, self.headers.get("Range")))
                m = re.fullmatch(r"/api/v1/agent/releases/([^/]+)/([^/]+)(/file)?", self.path)
                if not m or self.headers.get("Authorization") != "Bearer test-token-policy-0123456789":
                    return self._json(404 if m is None else 401, {"code": "unauthorized"})
                if server.status:
                    code = {404: "no_release", 409: "rollout_paused", 403: "not_in_policy"}[server.status]
                    return self._json(server.status, {"code": code})
                release = server.releases.get((m.group(1), m.group(2)))
                if release is None:
                    return self._json(404, {"code": "no_release"})
                envelope, data = release
                if not m.group(3):
                    return self._bytes(200, envelope, "application/json")
                start = 0
                rng = self.headers.get("Range")
                if rng and not server.ignore_range:
                    r = re.fullmatch(r"bytes=(\d+)-", rng)
                    if not r or int(r.group(1)) >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return None
                    start = int(r.group(1))
                body = data[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cut_after is not None:
                    cut, server.cut_after = server.cut_after, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return None
                self.wfile.write(body)
                return None

            def _json(self, code, doc):
                return self._bytes(code, json.dumps(doc).encode(), "application/json")

            def _bytes(self, code, data, ctype):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
