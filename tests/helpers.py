"""Builders shared by collector tests: wire reports as a real agent would send them."""

from __future__ import annotations

import threading
import uuid
import weakref
from datetime import datetime, timedelta, timezone

from agent.wire import Fingerprint, Host, Report, Result, report_to_dict

POINT = "620102001001"
REGION = "甘肃省/兰州市/城关区/某镇/某村"


def make_report(point_code: str = POINT, seq: int = 1, statuses: dict | None = None,
                collected_at: datetime | None = None, agent_id: str = "00000000-0000-4000-8000-000000000001",
                fingerprint: Fingerprint | None = None) -> Report:
    at = collected_at or datetime.now(timezone.utc)
    statuses = statuses or {"net.core.tcp": "ok", "net.core.icmp": "ok", "host.resources": "ok"}
    results = [Result(check=c, target="核心网关" if c.startswith("net.") else "本机", status=s,
                      message=f"{c} {s}", value=0.012 if c == "net.core.icmp" else None,
                      unit="seconds" if c == "net.core.icmp" else None,
                      details={"loss_ratio": 0.0} if c == "net.core.icmp" else {},
                      observed_at=at, duration_ms=3.0) for c, s in statuses.items()]
    host = Host(hostname="cun-pc", os="Windows 10", boot_time=at - timedelta(days=1),
                fingerprint=fingerprint or Fingerprint("m-1", "SN1", ["00:11:22:33:44:55"]))
    return Report(report_id=str(uuid.uuid4()), seq=seq, agent_id=agent_id, point_code=point_code,
                  agent_version="0.1.0", collected_at=at, sent_at=at, host=host, results=results)


def report_json(policy_digest: str | None = None, **kw) -> dict:
    """A report as JSON; with ``policy_digest`` (an issued digest, see ``issue_policy``) as an agent running a
    fetched policy sends it."""
    body = report_to_dict(make_report(**kw))
    if policy_digest is not None:
        body["policy_digest"] = policy_digest
    return body


_PIPELINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_PIPELINES_LOCK = threading.Lock()


def issue_policy(store, code: str, text: str = "intervals: {network: 60s}\n") -> str:
    """Give a registered point a policy the way an administrator does (a point document, through the
    collector's policy service) and return the digest the collector issued for it."""
    from collector.policy import service
    from collector.store.audit import Actor

    service.set_point(store, code, text, "test-policy.yaml", Actor("test:helpers"))
    return current_digest(store, code)


def current_digest(store, code: str) -> str | None:
    from collector.store import policies

    issued = policies.current_issue(store, code)
    return issued.digest if issued is not None else None


def stamp_policy(store, reports) -> None:
    """Stamp each report with its point's issued policy digest, as an agent that fetched its policy does,
    issuing a point policy first where a registered point has none. Reports already stamped keep theirs."""
    from collector.store import points

    digests: dict[str, str | None] = {}
    for report in reports:
        if getattr(report, "policy_digest", None) is not None:
            continue
        code = report.point_code
        if code not in digests:
            digests[code] = current_digest(store, code)
            if digests[code] is None and points.point_region(store, code) is not None:
                digests[code] = issue_policy(store, code)
        report.policy_digest = digests[code]


def ingest(store, reports, received_at=None, policy: bool = True) -> tuple[int, int]:
    """Reports down the collector's path after acceptance (derive, store), as POST /api/v1/reports sends them;
    one pipeline per store, so concurrent callers share its group commit as they do in the collector.

    ``policy``: the reports are stamped with their point's issued policy digest first (``stamp_policy``), as
    reports of agents running a fetched policy are; only those count as evidence for scoring. False: sent
    as given (an agent that never fetched a policy, or a test of agent.policy itself)."""
    from collector.ingest.pipeline import ReportPipeline

    if policy:
        stamp_policy(store, reports)
    with _PIPELINES_LOCK:
        pipeline = _PIPELINES.get(store)
        if pipeline is None:
            pipeline = _PIPELINES[store] = ReportPipeline(store)
    return pipeline.receive(reports, received_at)


ORIGIN = "http://testserver"  # a TestClient's own origin, as a browser on the collector's pages sends it


def login_form_token(client) -> str:
    """GET /login as a browser would: the pre-session CSRF cookie lands in the client, the token is returned."""
    import re

    page = client.get("/login")
    return re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)


def web_login(client, username: str, password: str, next: str = "/"):
    """Sign in through the login form as a browser on the collector's own page does (collector/api/csrf.py)."""
    token = login_form_token(client)
    return client.post("/login", data={"username": username, "password": password, "next": next,
                                       "csrf_token": token},
                       headers={"Origin": ORIGIN}, follow_redirects=False)


def session_headers(client) -> dict:
    """What the pages' own scripts send with a cookie-authenticated write: the origin and X-CSRF-Token."""
    from collector.api.csrf import session_token

    return {"Origin": ORIGIN, "X-CSRF-Token": session_token(client.cookies.get("pw_session"))}


def raw_form_login(request, origin: str, username: str, password: str, extra: dict | None = None,
                   target: str = "/"):
    """The login form over a raw HTTP ``request(method, path, body, headers) -> (status, headers, body)``:
    GET /login for the pre-session token and its cookie, then POST it from ``origin``. Returns the POST's
    (status, headers, body); ``session_cookie(headers)`` picks the session out of it."""
    import re
    import urllib.parse

    _, headers, body = request("GET", "/login", None, dict(extra or {}))
    token = re.search(r'name="csrf_token" value="([^"]+)"', body.decode()).group(1)
    cookie = next(v for k, v in headers if k.lower() == "set-cookie" and v.startswith("pw_login_csrf="))
    form = urllib.parse.urlencode({"username": username, "password": password, "next": target,
                                   "csrf_token": token}).encode()
    return request("POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded",
                                            "Cookie": cookie.split(";")[0], "Origin": origin, **(extra or {})})


def session_cookie(headers) -> str:
    """The pw_session Set-Cookie header (with its flags) of a login answer."""
    return next(v for k, v in headers if k.lower() == "set-cookie" and v.startswith("pw_session="))
