"""Real receivers for alert tests: one local HTTP server answering like the DingTalk, WeCom and Feishu
robots and a generic webhook (verifying payloads and signatures, errcode in a 200 body), and an SMTP server
(aiosmtpd). Only 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

DING_TOKEN, DING_SECRET = "dingtoken", "SECdingsecret"
WECOM_KEY = "wecom-key"
FEISHU_HOOK, FEISHU_SECRET = "feishu-hook", "feishusecret"


class RobotServer:
    def __init__(self):
        self.received: list[dict] = []  # {"kind", "body", "at" (monotonic), "query"}
        self.rejected: list[dict] = []
        self.fail_next: dict[str, int] = {}  # kind → how many next requests to refuse
        self.delay_s = 0.0
        self._cond = threading.Condition()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def of(self, kind: str) -> list[dict]:
        with self._cond:
            return [r for r in self.received if r["kind"] == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 15.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len([r for r in self.received if r["kind"] == kind]) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{kind}: got {len(self.of(kind))} of {count} messages in {timeout}s")
                self._cond.wait(left)
            return [r for r in self.received if r["kind"] == kind]

    def _record(self, kind, body, query, ok: bool, why: str = ""):
        with self._cond:
            entry = {"kind": kind, "body": body, "query": query, "at": time.monotonic(), "why": why}
            (self.received if ok else self.rejected).append(entry)
            self._cond.notify_all()

    def _handler(self):
        robot = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                raw = self.rfile.read(int(self.headers.get("content-length", 0)))
                if robot.delay_s:
                    time.sleep(robot.delay_s)
                try:
                    body = json.loads(raw)
                except ValueError:
                    return self._answer(400, {"error": "not json"})
                kind = parts.path.strip("/").split("/")[0]
                if robot.fail_next.get(kind):
                    robot.fail_next[kind] -= 1
                    robot._record(kind, body, query, False, "told to fail")
                    if kind == "hook":
                        return self._answer(503, {"error": "unavailable"})
                    code = {"dingtalk": ("errcode", 130101), "wecom": ("errcode", 45009),
                            "feishu": ("code", 9499)}[kind]
                    return self._answer(200, {code[0]: code[1], "errmsg": "send too fast", "msg": "too many"})
                check = getattr(self, "_" + kind, None)
                if check is None:
                    return self._answer(404, {"error": "no such robot"})
                problem, answer = check(body, query, parts.path)
                robot._record(kind, body, query, problem is None, problem or "")
                self._answer(200, answer)

            def _answer(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _hook(self, body, query, path):
                ok = body.get("version") == 1 and body.get("point_code") and body.get("event")
                return (None if ok else "bad webhook payload"), {"ok": True}

            def _alertmanager(self, body, query, path):
                return None, {}

            def _dingtalk(self, body, query, path):
                if query.get("access_token") != DING_TOKEN:
                    return "token", {"errcode": 300001, "errmsg": "token is not exist"}
                ts, sign = query.get("timestamp", ""), query.get("sign", "")
                expect = base64.b64encode(hmac.new(DING_SECRET.encode(), f"{ts}\n{DING_SECRET}".encode(),
                                                   hashlib.sha256).digest()).decode()
                # parse_qs already URL-decoded the sign once, as DingTalk's server does.
                if not ts.isdigit() or abs(int(ts) - time.time() * 1000) > 3600_000 or sign != expect:
                    return "sign", {"errcode": 310000, "errmsg": "sign not match"}
                md = body.get("markdown") or {}
                if body.get("msgtype") != "markdown" or not md.get("title") or not md.get("text"):
                    return "payload", {"errcode": 40035, "errmsg": "缺少参数 markdown"}
                return None, {"errcode": 0, "errmsg": "ok"}

            def _wecom(self, body, query, path):
                if query.get("key") != WECOM_KEY:
                    return "key", {"errcode": 93000, "errmsg": "invalid webhook url"}
                if body.get("msgtype") != "markdown" or not (body.get("markdown") or {}).get("content"):
                    return "payload", {"errcode": 40008, "errmsg": "invalid message type"}
                return None, {"errcode": 0, "errmsg": "ok"}

            def _feishu(self, body, query, path):
                if not path.endswith("/" + FEISHU_HOOK):
                    return "hook", {"code": 19001, "msg": "param invalid: incoming webhook access token invalid"}
                ts = body.get("timestamp", "")
                expect = base64.b64encode(hmac.new(f"{ts}\n{FEISHU_SECRET}".encode(), b"",
                                                   hashlib.sha256).digest()).decode()
                if not str(ts).isdigit() or abs(int(ts) - time.time()) > 3600 or body.get("sign") != expect:
                    return "sign", {"code": 19021, "msg": "sign match fail or timestamp is not within one hour"}
                post = (((body.get("content") or {}).get("post") or {}).get("zh_cn") or {})
                if body.get("msg_type") != "post" or not post.get("title") or not post.get("content"):
                    return "payload", {"code": 9499, "msg": "Bad Request"}
                return None, {"code": 0, "msg": "success", "data": {}}

        return Handler


def dingtalk_url(server: RobotServer) -> str:
    return f"{server.url}/dingtalk/robot/send?access_token={DING_TOKEN}"


class SmtpSink:
    """aiosmtpd on a free loopback port, keeping each message it accepts."""

    def __init__(self, tls_context=None):
        from aiosmtpd.controller import Controller

        self.messages: list = []
        self._cond = threading.Condition()
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                with sink._cond:
                    sink.messages.append(envelope)
                    sink._cond.notify_all()
                return "250 OK"

        from tests.conftest import free_port

        self.port = free_port()
        # With a TLS context the server offers STARTTLS and refuses mail until the client has used it.
        extra = {"tls_context": tls_context, "require_starttls": True} if tls_context else {}
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, **extra)
        self.controller.start()

    def wait_for(self, count: int = 1, timeout: float = 15.0) -> list:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"smtp: got {len(self.messages)} of {count} messages")
                self._cond.wait(left)
            return list(self.messages)

    def close(self):
        self.controller.stop()


@pytest.fixture
def robot():
    """A running receiver standing in for the robots, webhooks and Alertmanager's peers."""
    server = RobotServer()
    yield server
    server.close()
