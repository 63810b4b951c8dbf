"""Every notifier against a real receiver: a local HTTP server answering like the DingTalk, WeCom and
Feishu robots (signatures checked, errcode in the body), a generic webhook, a local SMTP server (aiosmtpd)
and a real Alertmanager started here, whose API must list the alert."""

from __future__ import annotations

import email
import json
import subprocess
import time
import urllib.request
from email.policy import default as default_policy

import pytest

from collector.alerts.config import AlertConfigError, parse
from collector.alerts.notifiers import NotifyError, build_notifier
from tests.alerts_receivers import (
    DING_SECRET,
    FEISHU_HOOK,
    FEISHU_SECRET,
    WECOM_KEY,
    RobotServer,
    SmtpSink,
    dingtalk_url,
)
from tests.conftest import free_port, require_tool


def payload(event: str = "firing") -> dict:
    return {
        "version": 1, "event": event, "alert_id": 7, "fingerprint": "f" * 64, "rule": "internet_reachable",
        "title": "专网违规：可访问互联网", "severity": "critical", "severity_cn": "严重",
        "point_code": "620123001001", "point_name": "东关村医保服务点", "region": "甘肃省/兰州市/榆中县/城关镇/东关村",
        "check": "isolation.internet", "target": "互联网隔离", "summary": "可访问互联网 223.5.5.5:53", "value": 1,
        "since": "2026-03-02T02:01:00.000Z", "since_local": "2026-03-02 10:01:00",
        "resolved_at": "2026-03-02T02:09:00.000Z" if event == "resolved" else None,
        "link": "http://10.10.1.5:8443/points/620123001001",
        "subject": "【严重】东关村医保服务点：专网违规：可访问互联网",
        "lines": ["服务点：东关村医保服务点（620123001001）", "详情：可访问互联网 223.5.5.5:53"],
        "text": "服务点：东关村医保服务点（620123001001）\n查看服务点：http://10.10.1.5:8443/points/620123001001",
        "markdown": "### 【严重】东关村医保服务点\n\n- 详情：可访问互联网\n\n[查看服务点](http://10.10.1.5:8443/points/620123001001)",
    }


def notifier(node: dict):
    cfg = parse({"notifiers": [{"name": "n", "timeout": "5s", **node}]})
    return build_notifier(cfg.notifiers[0])


@pytest.fixture
def robot():
    server = RobotServer()
    yield server
    server.close()


def test_dingtalk_signed_markdown(robot):
    n = notifier({"type": "dingtalk", "url": dingtalk_url(robot), "secret": DING_SECRET, "at_mobiles": ["13800000000"]})
    n.send(payload())
    body = robot.wait_for("dingtalk")[0]["body"]
    assert body["msgtype"] == "markdown" and "东关村医保服务点" in body["markdown"]["title"]
    assert "查看服务点" in body["markdown"]["text"] and body["at"]["atMobiles"] == ["13800000000"]
    # A wrong secret is refused by the robot in a 200 body: that must be a failure, not a success.
    bad = notifier({"type": "dingtalk", "url": dingtalk_url(robot), "secret": "SECwrong"})
    with pytest.raises(NotifyError, match="310000"):
        bad.send(payload())
    robot.fail_next["dingtalk"] = 1
    with pytest.raises(NotifyError, match="130101") as exc:
        n.send(payload())
    assert exc.value.retryable  # "sending too fast" is worth another try


def test_wecom_markdown(robot):
    n = notifier({"type": "wecom", "url": f"{robot.url}/wecom/cgi-bin/webhook/send?key={WECOM_KEY}"})
    n.send(payload("resolved"))
    content = robot.wait_for("wecom")[0]["body"]["markdown"]["content"]
    assert "东关村医保服务点" in content and "http://10.10.1.5:8443/points/620123001001" in content
    wrong = notifier({"type": "wecom", "url": f"{robot.url}/wecom/cgi-bin/webhook/send?key=nope"})
    with pytest.raises(NotifyError, match="93000"):
        wrong.send(payload())


def test_feishu_signed_post(robot):
    n = notifier({"type": "feishu", "url": f"{robot.url}/feishu/open-apis/bot/v2/hook/{FEISHU_HOOK}",
                  "secret": FEISHU_SECRET})
    n.send(payload())
    post = robot.wait_for("feishu")[0]["body"]["content"]["post"]["zh_cn"]
    assert post["title"].startswith("【严重】") and post["content"][-1][0]["href"].endswith("/points/620123001001")
    with pytest.raises(NotifyError, match="19021"):
        notifier({"type": "feishu", "url": f"{robot.url}/feishu/open-apis/bot/v2/hook/{FEISHU_HOOK}",
                  "secret": "wrong"}).send(payload())


def test_webhook_through_a_proxy_url_and_errors(robot):
    # The robot server doubles as a plain HTTP forward proxy target: an absolute-URI request reaches it.
    n = notifier({"type": "webhook", "url": "http://robots.invalid/hook", "proxy": robot.url})
    n.send(payload())
    assert robot.wait_for("hook")[0]["body"]["point_code"] == "620123001001"
    robot.fail_next["hook"] = 1
    with pytest.raises(NotifyError, match="503") as exc:
        n.send(payload())
    assert exc.value.retryable
    down = notifier({"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/hook"})
    with pytest.raises(NotifyError):
        down.send(payload())


def test_bad_notifier_config_is_refused_at_load():
    for node, words in (({"type": "dingtalk"}, "needs url"), ({"type": "pager", "url": "http://x/"}, "not one of"),
                        ({"type": "wecom", "url": "ftp://x/"}, "not an http"),
                        ({"type": "webhook", "url": "http://x/", "colour": 1}, "unknown key")):
        with pytest.raises(AlertConfigError, match=words):
            notifier(node)


def test_smtp_mail_in_chinese():
    sink = SmtpSink()
    try:
        n = notifier({"type": "smtp", "host": "127.0.0.1", "port": sink.port, "from": "pointwatch@ybj.example",
                      "to": ["xinxike@ybj.example"]})
        n.send(payload())
        envelope = sink.wait_for(1)[0]
        msg = email.message_from_bytes(envelope.content, policy=default_policy)
        assert envelope.rcpt_tos == ["xinxike@ybj.example"]
        assert msg["Subject"] == "【严重】东关村医保服务点：专网违规：可访问互联网"
        assert "http://10.10.1.5:8443/points/620123001001" in msg.get_content()
    finally:
        sink.close()


@pytest.fixture
def alertmanager(tmp_path):
    binary = require_tool("prometheus-alertmanager", "prometheus-alertmanager")
    port = free_port()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
                             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=1) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"alertmanager did not start: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)


def test_alertmanager_v2_lists_the_alert_and_its_resolution(alertmanager):
    n = notifier({"type": "alertmanager", "url": alertmanager})
    n.send(payload())
    with urllib.request.urlopen(alertmanager + "/api/v2/alerts", timeout=5) as r:
        listed = json.load(r)
    assert len(listed) == 1
    alert = listed[0]
    assert alert["labels"]["alertname"] == "pointwatch_internet_reachable"
    assert alert["labels"]["point"] == "620123001001" and alert["status"]["state"] == "active"
    assert alert["annotations"]["summary"].startswith("【严重】") and alert["generatorURL"].endswith("/points/620123001001")
    n.send(payload("resolved"))
    with urllib.request.urlopen(alertmanager + "/api/v2/alerts?active=true", timeout=5) as r:
        still = [a for a in json.load(r) if a["status"]["state"] == "active"]
    assert still == []


def test_smtp_starttls_with_a_private_ca(tmp_path):
    import ssl

    from tests.certs import make_ca_and_cert

    ca, cert, key = make_ca_and_cert(tmp_path, "127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    sink = SmtpSink(tls_context=context)
    try:
        base = {"type": "smtp", "host": "127.0.0.1", "port": sink.port, "from": "pointwatch@ybj.example",
                "to": "xinxike@ybj.example"}
        with pytest.raises(NotifyError):  # the relay insists on STARTTLS
            notifier(base).send(payload())
        with pytest.raises(NotifyError):  # the private CA is not in the system store
            notifier({**base, "starttls": True}).send(payload())
        notifier({**base, "starttls": True, "ca_bundle": str(ca)}).send(payload())
        assert sink.wait_for(1)[0].rcpt_tos == ["xinxike@ybj.example"]
    finally:
        sink.close()


class _EchoRelay:
    """A relay that answers with everything it was sent: its URL, query string and headers."""

    def __init__(self, status: int, as_robot: bool = False):
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers.get("content-length", 0)))
                echo = f"POST {self.path} " + " ".join(f"{k}: {v}" for k, v in self.headers.items())
                data = (json.dumps({"errcode": 40035, "errmsg": echo}) if as_robot else echo).encode()
                self.send_response(status, f"Bad {self.path}")  # the reason phrase echoes too
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_notifier_errors_keep_the_status_never_the_url_query_or_headers():
    """Issue 18 item 11: a receiver's error body was stored (300 characters) and shown to every viewer; a
    relay echoing its request put the robot key and a header secret on the page."""
    key, secret = "ROBOTKEY0123456789abcdef", "Bearer hdr-secret-42"
    cases = []
    for status, as_robot, node in ((502, False, {"type": "webhook"}), (200, True, {"type": "wecom"}),
                                   (200, False, {"type": "dingtalk"}), (403, False, {"type": "feishu"})):
        relay = _EchoRelay(status, as_robot)
        try:
            n = notifier({**node, "url": f"{relay.url}/send?key={key}", "headers": {"Authorization": secret}})
            with pytest.raises(NotifyError) as exc:
                n.send(payload())
            cases.append(str(exc.value))
        finally:
            relay.close()
    down = notifier({"type": "webhook", "url": f"http://127.0.0.1:{free_port()}/send?key={key}"})
    with pytest.raises(NotifyError) as exc:
        down.send(payload())
    cases.append(str(exc.value))
    for text in cases:
        assert key not in text and "hdr-secret" not in text and "/send" not in text and "127.0.0.1" not in text, text
    assert cases[0] == "HTTP 502 Bad Gateway"
    assert cases[1] == "errcode=40035"  # the robot's code, without its echoed errmsg
    assert cases[2] == "HTTP 200 OK: answer is not JSON" and cases[3] == "HTTP 403 Forbidden"
    assert cases[4] == "connection failed (ConnectionRefusedError)"
