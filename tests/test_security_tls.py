"""TLS serving: ``serve --tls-cert/--tls-key`` with a CA made here; the agent trusts it only through
``collector.ca_bundle``; session cookies are Secure over HTTPS, and behind a proxy only when it is trusted."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.certs import make_ca_and_cert
from tests.conftest import free_port
from tests.helpers import POINT, REGION, raw_form_login, session_cookie

COLLECTOR = [sys.executable, "-m", "collector.cli"]
AGENT = [sys.executable, "-m", "agent.cli"]
PASSWORD = "county-it-2026"


class Collector:
    def __init__(self, work: Path, data: Path, *serve_args: str, https: bool, ca: Path | None = None,
                 config: Path | None = None):
        self.port = free_port()
        self.https, self.ca, self.data = https, ca, data
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.env.pop("POINTWATCH_DATABASE_URL", None)
        self.log_path = work / f"collector-{self.port}.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        config_args = ["--config", str(config)] if config else []
        self.proc = subprocess.Popen([*COLLECTOR, *config_args, "--data-dir", str(data), "serve", "--port",
                                      str(self.port), *serve_args], stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-2000:]
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("collector did not come up")

    @property
    def base(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    def connection(self):
        if self.https:
            return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10,
                                               context=ssl.create_default_context(cafile=str(self.ca)))
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.getheaders(), resp.read()
        finally:
            conn.close()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def cli(data: Path, *args: str, stdin: str | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "POINTWATCH_DATABASE_URL"}
    return subprocess.run([*COLLECTOR, "--data-dir", str(data), *args], check=True, capture_output=True,
                          text=True, timeout=60, env=env, input=stdin).stdout.strip()


def login_cookie(c: Collector, extra_headers: dict | None = None, origin: str | None = None) -> str:
    status, headers, _ = raw_form_login(c.request, origin or c.base, "xxk", PASSWORD, extra_headers)
    assert status == 303, status
    return session_cookie(headers)


def agent_config(path: Path, base: str, state: Path, ca: Path | None) -> Path:
    ca_line = f', ca_bundle: "{ca.as_posix()}"' if ca else ""
    path.write_text(f"""
point: {{code: "{POINT}", name: 某村医保服务点}}
collector: {{url: "{base}"{ca_line}}}
state_dir: "{state.as_posix()}"
intervals: {{network: 5s, devices: 5m, compliance: 5m, identity: 5m}}
core_network:
  timeout: 1s
  count: 1
  tcp: [{{target: "127.0.0.1:1", name: 关闭的端口}}]
""", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    data = work / "data"
    ca, cert, key = make_ca_and_cert(work / "pki", "127.0.0.1", name="collector")
    cli(data, "points", "add", "--code", POINT, "--name", "某村医保服务点", "--region", REGION)
    cli(data, "users", "create", "--username", "xxk", "--role", "viewer", "--region", REGION,
        "--person", "县信息科", "--password-stdin", stdin=PASSWORD + "\n")
    c = Collector(work, data, "--tls-cert", str(cert), "--tls-key", str(key), https=True, ca=ca)
    try:
        yield work, data, c
    finally:
        c.stop()


def stored_reports(c: Collector, admin: str) -> list[dict]:
    status, _, body = c.request("GET", f"/api/v1/points/{POINT}/reports", headers={
        "Authorization": f"Bearer {admin}"})
    assert status == 200, body
    return json.loads(body)["reports"]


def test_plain_http_client_gets_no_answer_on_the_tls_port(tls_site):
    _, _, c = tls_site
    plain = http.client.HTTPConnection("127.0.0.1", c.port, timeout=5)
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.request("GET", "/healthz")
        plain.getresponse().read()
    with pytest.raises(ssl.SSLCertVerificationError):  # our CA is nobody else's: the system store refuses
        http.client.HTTPSConnection("127.0.0.1", c.port, timeout=5).request("GET", "/healthz")


def test_agent_with_the_ca_reports_over_https_and_without_it_sends_nothing(tls_site):
    work, data, c = tls_site
    admin = cli(data, "tokens", "create", "--role", "admin", "--person", "信息科")
    # Without the CA: enrolment refuses the certificate and the one-time code stays unused.
    code = cli(data, "enroll-code", "create", "--point", POINT)
    cfg = agent_config(work / "no-ca.yaml", c.base, work / "state-no-ca", None)
    refused = subprocess.run([*AGENT, "enroll", "--config", str(cfg), "--code", code],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0
    assert "CERTIFICATE_VERIFY_FAILED" in refused.stdout + refused.stderr, refused.stdout + refused.stderr
    # With it: the same code enrols, and the service's reports arrive.
    cfg_ok = agent_config(work / "ca.yaml", c.base, work / "state-ca", c.ca)
    enrolled = subprocess.run([*AGENT, "enroll", "--config", str(cfg_ok), "--code", code],
                              capture_output=True, text=True, timeout=60)
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    token = (work / "state-ca" / "token").read_text().strip()

    # A service without the CA but with a valid token: every send fails verification, nothing arrives.
    (work / "state-no-ca").mkdir(exist_ok=True)
    (work / "state-no-ca" / "token").write_text(token)
    agent = subprocess.Popen([*AGENT, "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        log = work / "state-no-ca" / "logs" / "agent.log"
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and "CERTIFICATE_VERIFY_FAILED" not in (
                log.read_text(errors="replace") if log.exists() else ""):
            time.sleep(0.3)
    finally:
        agent.terminate()
        out, _ = agent.communicate(timeout=30)
    assert "CERTIFICATE_VERIFY_FAILED" in log.read_text(errors="replace"), out[-2000:]
    assert stored_reports(c, admin) == []

    agent = subprocess.Popen([*AGENT, "run", "--config", str(cfg_ok)], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and not stored_reports(c, admin):
            time.sleep(0.3)
    finally:
        agent.terminate()
        out, _ = agent.communicate(timeout=30)
    assert stored_reports(c, admin), out[-3000:]


def test_session_cookie_is_secure_over_https(tls_site):
    _, _, c = tls_site
    cookie = login_cookie(c)
    flags = {f.strip().lower() for f in cookie.split(";")}
    assert {"httponly", "secure", "samesite=lax", "path=/"} <= flags, cookie


def test_behind_a_proxy_secure_only_when_the_proxy_is_trusted(tls_site):
    work, _, _ = tls_site
    # A data directory of its own (the module's TLS collector holds the shared one), and the two collectors
    # one after the other: a second collector on one SQLite directory refuses to start.
    data = work / "proxy-data"
    cli(data, "users", "create", "--username", "xxk", "--role", "viewer", "--region", REGION,
        "--person", "xxk", "--password-stdin", stdin=PASSWORD + "\n")
    forwarded = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "10.1.2.3"}
    untrusting = Collector(work, data, https=False)
    try:
        plain = {f.strip().lower() for f in login_cookie(untrusting, forwarded).split(";")}
        assert "httponly" in plain and "secure" not in plain  # anyone can send the header
    finally:
        untrusting.stop()
    trusting = Collector(work, data, "--forwarded-allow-ips", "127.0.0.1", https=False)
    try:
        # behind the proxy the browser's page is https: its Origin says so, and the collector (trusting
        # the proxy's X-Forwarded-Proto) agrees that is its own origin
        proxied = {f.strip().lower() for f in login_cookie(trusting, forwarded,
                                                           trusting.base.replace("http:", "https:")).split(";")}
        assert {"httponly", "secure", "samesite=lax"} <= proxied
        # the trusted proxy's client is the one audited; the untrusted header was ignored
        admin = cli(data, "tokens", "create", "--role", "admin", "--person", "信息科")
        _, _, body = trusting.request("GET", "/api/v1/audit?action=login", headers={
            "Authorization": f"Bearer {admin}"})
        sources = [e["source"] for e in json.loads(body)["entries"]]
        assert sources[0] == "10.1.2.3" and sources[1] == "127.0.0.1", sources
    finally:
        trusting.stop()
