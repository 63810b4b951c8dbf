"""A minimal collector for the agent's policy tests: enrolment with ``policy_keys``, ``GET /api/v1/agent/policy``
with signed envelopes, and report ingest — exactly the policy wire contract, nothing more.

The real collector endpoint (the policy issue's collector side) is being built in parallel on another branch;
at merge the lead switches these tests to it (tests/livecollector.py). Until then this stand-in serves what
the contract says the collector serves, signing with ``cryptography`` and the collector's own key id
(collector/evidence/keys.py), and validating every report with the collector's own parser
(collector/ingest/accept.py), so the switch changes where the envelope comes from, not what the tests assert.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives.asymmetric import ed25519

from agent.policy import canonical_digest
from collector.evidence import keys as evidence_keys
from collector.ingest.accept import IngestError, parse_reports

TOKEN = "test-token-policy-0123456789"


def key_object(key: ed25519.Ed25519PrivateKey) -> dict:
    pub = key.public_key()
    return {"algorithm": "Ed25519", "key_id": evidence_keys.key_id(pub), "public_key": evidence_keys.public_b64(pub)}


def envelope(policy: dict, point: str, signers, announce=(), digest: str | None = None,
             payload_edit=None) -> bytes:
    """The contract's envelope for ``policy``, signed by each of ``signers``. ``digest`` and ``payload_edit``
    (bytes -> bytes, after signing) make the broken ones the tests need."""
    payload = {"format": 1, "point": point, "digest": digest or canonical_digest(policy),
               "issued_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
               "policy": policy}
    if announce:
        payload["announce_keys"] = [key_object(k) for k in announce]
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    signatures = [{"key_id": evidence_keys.key_id(k.public_key()),
                   "signature": base64.b64encode(k.sign(data)).decode("ascii")} for k in signers]
    if payload_edit:
        data = payload_edit(data)
    return json.dumps({"payload": base64.b64encode(data).decode("ascii"), "signatures": signatures}).encode()


class PolicyCollector:
    def __init__(self, port: int, point: str):
        self.port, self.point = port, point
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.policy: dict | None = None  # None: 404 no_policy
        self.policy_down = False         # the policy endpoint answers 503
        self.enrol_keys: list | None = None  # what the enrolment answer's policy_keys holds (default: our key)
        self.reports: list[dict] = []    # every stored report, in arrival order
        self.fetches: list[dict] = []    # every policy request: if_none_match, status, digest served
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def digest(self) -> str | None:
        return canonical_digest(self.policy) if self.policy is not None else None

    def start(self) -> PolicyCollector:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                if self.path != "/api/v1/agent/policy":
                    return self._answer(404, {"detail": "not found"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, {"detail": "bad token"})
                with server.lock:
                    policy, down = server.policy, server.policy_down
                    record = {"if_none_match": self.headers.get("If-None-Match"), "digest": server.digest()}
                    server.fetches.append(record)
                if down:
                    record["status"] = 503
                    return self._answer(503, {"detail": "down"})
                if policy is None:
                    record["status"] = 404
                    return self._answer(404, {"detail": {"code": "no_policy", "message": "本服务点没有适用的检查策略"}})
                etag = f'"{canonical_digest(policy)}"'
                if self.headers.get("If-None-Match") == etag:
                    record["status"] = 304
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return None
                record["status"] = 200
                body = envelope(policy, server.point, [server.key])
                return self._answer(200, body, etag)

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    raw = gzip.decompress(raw)
                doc = json.loads(raw)
                if self.path == "/api/v1/enroll":
                    return self._answer(200, {"agent_id": "agent-1", "token": TOKEN, "point_code": doc["point_code"],
                                              "policy_keys": server.enrol_keys if server.enrol_keys is not None
                                              else [key_object(server.key)]})
                if self.path != "/api/v1/reports":
                    return self._answer(404, {"detail": "not found"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, {"detail": "bad token"})
                try:
                    parse_reports(raw)  # the real collector's validation
                except IngestError as exc:
                    return self._answer(exc.status, {"detail": exc.detail})
                with server.lock:
                    server.reports.extend(doc.get("reports", [doc]))
                return self._answer(202, {"accepted": len(doc.get("reports", [doc])), "duplicates": 0})

            def _answer(self, code, body, etag=None):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if etag:
                    self.send_header("ETag", etag)
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
