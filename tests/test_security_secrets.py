"""Secrets never leak: a realistic flow through a real collector and a real agent — enrolment, reports, an
alert to a webhook, logins right and wrong, tokens made, an evidence export — then every log (collector and
agent, files and std streams), every HTTP answer, /metrics, the audit log, the evidence zip, what the webhook
received and the store's own file are searched for each secret in its obvious encodings.

The only places a secret may appear are the ones whose job is to hold or hand it out: the answer to
``tokens create`` and ``enroll`` (to their caller), the agent's token file, and the signing key's file."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import time
import urllib.parse
import zipfile
from pathlib import Path

import pytest

from collector.api.csrf import session_token
from tests.alerts_receivers import RobotServer
from tests.helpers import POINT, REGION, raw_form_login, session_cookie
from tests.test_security_tls import Collector, cli

AGENT = [sys.executable, "-m", "agent.cli"]
ADMIN_PW = "Admin-Secret-Pw-7f3a9c"
REVIEWER_PW = "Reviewer-Secret-Pw-5b21e0"
WRONG_PW = "Wrong-Guess-Pw-c0ffee42"
HOOK_SECRET = "Hook-Bearer-Secret-91ab"


def encodings(secret: str | bytes) -> set[str]:
    raw = secret.encode() if isinstance(secret, str) else secret
    forms = {base64.b64encode(raw).decode().rstrip("="), base64.urlsafe_b64encode(raw).decode().rstrip("="),
             raw.hex()}
    if isinstance(secret, str):
        forms |= {secret, urllib.parse.quote(secret, safe=""), urllib.parse.quote_plus(secret),
                  json.dumps(secret)[1:-1]}
    return {f for f in forms if len(f) >= 12}


class Haystack:
    """Everything written or answered during the flow, by where it came from."""

    def __init__(self):
        self.items: list[tuple[str, str]] = []

    def add(self, where: str, data: str | bytes) -> None:
        text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
        self.items.append((where, text))

    def add_zip(self, where: str, data: bytes) -> None:
        self.add(where, data)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for name in zf.namelist():
                self.add(f"{where}:{name}", zf.read(name))

    def leaks(self, secrets: dict[str, set[str]]) -> list[str]:
        return [f"{name} in {where}" for name, forms in secrets.items() for where, text in self.items
                if any(f in text for f in forms)]


def agent_yaml(path: Path, base: str, state: Path, port: int) -> Path:
    path.write_text(f"""
point: {{code: "{POINT}", name: 某村医保服务点}}
collector: {{url: "{base}"}}
state_dir: "{state.as_posix()}"
intervals: {{network: 5s, devices: 5m, compliance: 5m, identity: 5m}}
core_network:
  timeout: 1s
  count: 1
  tcp: [{{target: "127.0.0.1:{port}", name: 采集端}}]
isolation:
  internet_canaries: [{{target: "127.0.0.1:{port}", name: 假装的公网}}]
""", encoding="utf-8")
    return path


@pytest.fixture
def robot():
    server = RobotServer()
    yield server
    server.close()


def test_no_secret_in_logs_answers_metrics_audit_or_exports(tmp_path, robot):
    data = tmp_path / "data"
    config = tmp_path / "collector.yaml"
    config.write_text(json.dumps({"alerts": {"tick": "1s", "notifiers": [
        {"name": "转发", "type": "webhook", "url": robot.url + "/hook",
         "headers": {"Authorization": f"Bearer {HOOK_SECRET}"}}]}}), encoding="utf-8")
    hay = Haystack()
    run = lambda *a, stdin=None: cli(data, "--config", str(config), *a, stdin=stdin)  # noqa: E731
    hay.add("cli points add", run("points", "add", "--code", POINT, "--name", "某村医保服务点", "--region", REGION))
    hay.add("cli users create", run("users", "create", "--username", "admin1", "--role", "admin", "--region",
                                    REGION, "--person", "管理员", "--password-stdin", stdin=ADMIN_PW + "\n"))
    hay.add("cli users create", run("users", "create", "--username", "rev1", "--role", "reviewer", "--region",
                                    "/", "--person", "审查员", "--password-stdin", stdin=REVIEWER_PW + "\n"))
    cli_token = run("tokens", "create", "--role", "admin", "--region", REGION, "--person", "管理员")  # handed out: not searched
    enroll_code = run("enroll-code", "create", "--point", POINT)
    c = Collector(tmp_path, data, https=False, config=config)
    try:
        port = c.port
        cfg = agent_yaml(tmp_path / "agent.yaml", c.base, tmp_path / "state", port)
        enrolled = subprocess.run([*AGENT, "enroll", "--config", str(cfg), "--code", enroll_code],
                                  capture_output=True, text=True, timeout=60)
        assert enrolled.returncode == 0, enrolled.stderr
        hay.add("agent enroll stdout", enrolled.stdout)
        hay.add("agent enroll stderr", enrolled.stderr)
        agent_token = (tmp_path / "state" / "token").read_text().strip()
        agent = subprocess.Popen([*AGENT, "run", "--config", str(cfg)], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        try:
            robot.wait_for("hook", 1, timeout=60)  # 专网 violation: the canary answered
        finally:
            agent.terminate()
            out, err = agent.communicate(timeout=30)
        hay.add("agent stdout", out)
        hay.add("agent stderr", err)
        for r in robot.received:
            hay.add("webhook body", json.dumps(r["body"], ensure_ascii=False))

        def http(method, path, body=None, headers=None, where=None):
            status, hdrs, answer = c.request(method, path, body, headers)
            hay.add(where or f"{method} {path} → {status}", answer)
            hay.add(f"{method} {path} headers", json.dumps([(k, v) for k, v in hdrs
                                                            if k.lower() != "set-cookie"]))
            return status, hdrs, answer

        for pw in (WRONG_PW, WRONG_PW + "2"):
            status, _, _ = raw_form_login(http, c.base, "admin1", pw)
            assert status == 401
        status, hdrs, _ = raw_form_login(http, c.base, "admin1", ADMIN_PW)
        assert status == 303
        session = session_cookie(hdrs).split(";")[0]
        session_value = session.split("=", 1)[1]
        as_admin = {"Cookie": session, "Origin": c.base, "X-CSRF-Token": session_token(session_value)}
        status, _, answer = c.request("POST", "/api/v1/tokens", json.dumps(
            {"role": "viewer", "region": REGION, "description": "给市局看板", "person": "市局看板"}).encode(),
            {**as_admin, "Content-Type": "application/json"})  # handed out: not searched
        assert status == 201
        api_token = json.loads(answer)["token"]
        # refusals that might echo what was sent
        http("POST", "/api/v1/users", json.dumps({"username": "x", "password": ADMIN_PW * 20, "role": "viewer"}
                                                 ).encode(), {**as_admin, "Content-Type": "application/json"})
        http("POST", "/api/v1/users", json.dumps({"username": "x", "password": REVIEWER_PW, "role": "nope"}
                                                 ).encode(), {**as_admin, "Content-Type": "application/json"})
        http("GET", "/api/v1/points", headers={"Authorization": f"Bearer {agent_token}"})
        http("GET", "/api/v1/points", headers={"Authorization": f"Bearer {api_token}x"})
        http("GET", "/api/v1/points", headers={"Authorization": f"Basic {cli_token}"})
        http("POST", "/api/v1/reports", b"{", {"Authorization": f"Bearer {agent_token}"})
        http("POST", "/api/v1/enroll", json.dumps({"code": enroll_code, "point_code": POINT}).encode())
        for path in ("/", f"/points/{POINT}", "/alerts", "/audit", "/api/v1/me", f"/api/v1/points/{POINT}",
                     "/api/v1/alerts?state=all", "/api/v1/audit?limit=1000"):
            http("GET", path, headers=as_admin)
        http("GET", "/api/v1/points", headers={"Authorization": f"Bearer {api_token}"})
        http("GET", "/metrics")
        http("GET", "/api/v1/evidence/public-key")
        status, _, _ = raw_form_login(http, c.base, "rev1", REVIEWER_PW)
        assert status == 303
        rev_token = run("tokens", "create", "--role", "reviewer", "--region", "/", "--person", "审查员")
        today = time.strftime("%Y-%m-%d")
        status, _, bundle = c.request("GET", f"/api/v1/evidence/points/{POINT}.zip?from={today}&to={today}",
                                      headers={"Authorization": f"Bearer {rev_token}"})
        assert status == 200, bundle[:300]
        hay.add_zip("evidence zip", bundle)
        hay.add("cli evidence export", run("evidence", "export", "--point", POINT, "--from", today, "--to",
                                           today, "--out", str(tmp_path / "cli-bundle.zip")))
        hay.add_zip("cli evidence zip", (tmp_path / "cli-bundle.zip").read_bytes())
        hay.add("cli audit verify", run("audit", "verify"))
    finally:
        c.stop()
    hay.add("collector log", c.log_path.read_bytes())
    for log in (tmp_path / "state" / "logs").glob("*"):
        hay.add(f"agent log {log.name}", log.read_bytes())
    hay.add("store file", b"".join(p.read_bytes() for p in data.glob("*.db*")))

    key = signing_key_forms(data)
    secrets = {"admin password": encodings(ADMIN_PW), "reviewer password": encodings(REVIEWER_PW),
               "wrong password": encodings(WRONG_PW), "webhook secret": encodings(HOOK_SECRET),
               "cli token": encodings(cli_token), "api token": encodings(api_token),
               "reviewer token": encodings(rev_token), "agent token": encodings(agent_token),
               "session cookie": encodings(session_value), "enrolment code": encodings(enroll_code),
               "signing key": key}
    assert len(hay.items) > 40 and all(secrets.values())
    leaks = hay.leaks(secrets)
    assert not leaks, "\n".join(leaks)
    hay.add("self-check", base64.b64encode(agent_token.encode()).decode())  # the search does find a leak
    assert hay.leaks(secrets) == ["agent token in self-check"]


def signing_key_forms(data: Path) -> set[str]:
    from cryptography.hazmat.primitives import serialization

    pem = (data / "evidence-signing-key.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, None)
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                             serialization.NoEncryption())
    body = "".join(line for line in pem.decode().splitlines() if not line.startswith("-----"))
    return encodings(seed) | {body}
