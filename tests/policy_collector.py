"""The collector's half of the policy wire contract, for the agent's tests: envelopes signed with
``cryptography`` under the collector's key id (collector/evidence/keys.py), the broken ones included, and a
stand-in enrolment endpoint for the one answer a real collector never gives (a misnamed key).

Everything a real collector does answer — enrolment, ``GET /api/v1/agent/policy``, reports — the agent's tests
take from a real collector process (tests/livecollector.py).
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
    """``POST /api/v1/enroll`` answering ``policy_keys`` as told (``enrol_keys``; default: its own key) and
    ``release_keys`` as told (``enrol_release_keys``)."""

    def __init__(self, port: int, point: str):
        self.port, self.point = port, point
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.enrol_keys: list | None = None
        self.enrol_release_keys: list | None = None  # the release keys it answers (None: the field is left out)
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> PolicyCollector:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                doc = json.loads(gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" else raw)
                if self.path != "/api/v1/enroll":
                    return self._answer(404, {"detail": "not found"})
                answer = {"agent_id": "agent-1", "token": TOKEN, "point_code": doc["point_code"],
                          "policy_keys": server.enrol_keys if server.enrol_keys is not None
                          else [key_object(server.key)]}
                if server.enrol_release_keys is not None:
                    answer["release_keys"] = server.enrol_release_keys
                return self._answer(200, answer)

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
