"""Every endpoint × role × inside/outside the caller's region, generated from the app's own routes.

Who may call what is stated here, in ``WHO_MAY``, from the README (Security, People, Audit, Evidence,
Alerts), and never read from the code under test: a route's ``require_roles(...)`` could be widened (say
``POST /api/v1/tokens`` opened to viewers) and a test reading the roles back from it would widen with it.
A route added later fails here until it is listed as public or in ``WHO_MAY``; a protected route must also
carry a ``require_roles(...)`` dependency (collector.api.deps).

Guards the planted bug "``POST /api/v1/tokens`` opened to viewers and reviewers" (and any other role
widened or narrowed on an API route). Principals are bound to one county (A); the other county's point (B) must be
invisible to them: 404 for its code, absent from every listing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.app import create_app
from collector.policy import service as policy_service
from collector.settings import Settings
from collector.store import points
from collector.store.audit import Actor
from tests.helpers import session_headers, web_login

COUNTY_A = "甘肃省/兰州市/城关区"
COUNTY_B = "甘肃省/兰州市/七里河区"
POINT_A, POINT_B = "620102001001", "620103009009"
NAME_B = "七里河区秘密服务点"

# Reachable without credentials, on purpose. /metrics is scraped by Prometheus inside the private network
# (owned by the metrics issue); /api/v1/enroll is authenticated by its one-time code.
PUBLIC = {
    ("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/login"), ("POST", "/login"),
    ("POST", "/logout"), ("POST", "/api/v1/enroll"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"),
    ("GET", "/openapi.json"), ("GET", "/redoc"), ("GET", "/favicon.ico"),
    ("GET", "/api/v1/evidence/public-key"),  # a public key is public: reviewers verify bundles offline with it
}
READERS = ("viewer", "reviewer", "admin")  # "a viewer, reviewer or admin sees nothing outside their region"
# Every protected API route and the roles that may call it, from the README:
WHO_MAY = {
    # agent tokens can only POST /api/v1/reports for their own point (Security)
    ("POST", "/api/v1/reports"): ("agent",),
    ("GET", "/api/v1/points"): READERS,
    ("GET", "/api/v1/points/{code}"): READERS,
    ("GET", "/api/v1/points/{code}/results"): READERS,
    ("GET", "/api/v1/points/{code}/reports"): READERS,
    ("GET", "/api/v1/scores"): READERS,
    ("GET", "/api/v1/scores/{code}"): READERS,
    ("GET", "/api/v1/alerts"): READERS,
    ("GET", "/api/v1/silences"): READERS,
    ("GET", "/api/v1/me"): READERS,
    # Evidence for reviewers: "reviewer token or session"; duty split keeps admins out of 监督
    ("GET", "/api/v1/evidence/points/{code}.zip"): ("reviewer",),
    ("GET", "/api/v1/evidence/region.zip"): ("reviewer",),
    # Audit: "GET /api/v1/audit (admins, their region), GET /api/v1/audit/verify"
    ("GET", "/api/v1/audit"): ("admin",),
    ("GET", "/api/v1/audit/verify"): ("admin",),
    # Silences: "POST /api/v1/silences, admin"; deleting one is the same power
    ("POST", "/api/v1/silences"): ("admin",),
    ("DELETE", "/api/v1/silences/{silence_id}"): ("admin",),
    # People: users, tokens and enrolment codes are made by admins (管理), never by viewers or reviewers
    ("GET", "/api/v1/users"): ("admin",),
    ("POST", "/api/v1/users"): ("admin",),
    ("POST", "/api/v1/tokens"): ("admin",),
    ("POST", "/api/v1/enroll-codes"): ("admin",),
    # Stopping an account: "the same for an admin of the user's region" (Security, Stopping an account)
    ("POST", "/api/v1/users/{username}/disable"): ("admin",),
    ("POST", "/api/v1/users/{username}/enable"): ("admin",),
    ("POST", "/api/v1/users/{username}/end-sessions"): ("admin",),
    ("PUT", "/api/v1/users/{username}/password"): ("admin",),
    # "PUT /api/v1/me/password for a signed-in user": any reader's own password
    ("PUT", "/api/v1/me/password"): READERS,
    # Tokens are listed and revoked by admins of their region (People); points are registered, changed
    # and imported by admins (管理) over HTTP as with the CLI
    ("GET", "/api/v1/tokens"): ("admin",),
    ("POST", "/api/v1/tokens/{token_id}/revoke"): ("admin",),
    ("POST", "/api/v1/points"): ("admin",),
    ("PUT", "/api/v1/points/{code}"): ("admin",),
    ("POST", "/api/v1/points/import"): ("admin",),
    # Pages (docs/zh/日常运维.md): the audit log and every administration page and form are an admin's
    ("GET", "/audit"): ("admin",),
    ("GET", "/admin/points"): ("admin",),
    ("GET", "/admin/points/new"): ("admin",),
    ("POST", "/admin/points"): ("admin",),
    ("GET", "/admin/points/{code}/edit"): ("admin",),
    ("POST", "/admin/points/{code}/edit"): ("admin",),
    ("POST", "/admin/points/import"): ("admin",),
    ("POST", "/admin/points/{code}/enroll-code"): ("admin",),
    ("GET", "/admin/users"): ("admin",),
    ("POST", "/admin/users"): ("admin",),
    ("POST", "/admin/users/{username}/disable"): ("admin",),
    ("POST", "/admin/users/{username}/enable"): ("admin",),
    ("POST", "/admin/users/{username}/password"): ("admin",),
    ("GET", "/admin/tokens"): ("admin",),
    ("POST", "/admin/tokens"): ("admin",),
    ("POST", "/admin/tokens/{token_id}/revoke"): ("admin",),
    # Reviews (issue 22): the reviewer (监督) writes them; an admin (管理) sees reviews, never edits them; the
    # signed bundle is the reviewer's, as evidence exports are
    ("POST", "/api/v1/reviews"): ("reviewer",),
    ("GET", "/api/v1/reviews"): ("reviewer", "admin"),
    ("GET", "/api/v1/reviews/summary"): ("reviewer", "admin"),
    ("GET", "/api/v1/reviews/summary.xlsx"): ("reviewer", "admin"),
    ("GET", "/api/v1/reviews/{review_id}"): ("reviewer", "admin"),
    ("PUT", "/api/v1/reviews/{review_id}/items/{item}"): ("reviewer",),
    ("POST", "/api/v1/reviews/{review_id}/attachments"): ("reviewer",),
    ("GET", "/api/v1/reviews/{review_id}/attachments/{sha256}"): ("reviewer", "admin"),
    ("POST", "/api/v1/reviews/{review_id}/submit"): ("reviewer",),
    ("GET", "/api/v1/reviews/{review_id}/bundle.zip"): ("reviewer",),
    ("GET", "/api/v1/reviews/{review_id}/sheet.pdf"): ("reviewer", "admin"),
    ("GET", "/api/v1/reviews/{review_id}/sheet.xlsx"): ("reviewer", "admin"),
    ("GET", "/reviews"): ("reviewer", "admin"),
    # Central policy (issue 17): "Admins only, within their region (viewers and reviewers may read)"
    ("GET", "/api/v1/policies/regions/{path:path}"): READERS,
    ("PUT", "/api/v1/policies/regions/{path:path}"): ("admin",),
    ("GET", "/api/v1/policies/points/{code}"): READERS,
    ("GET", "/api/v1/policies/history"): READERS,
    # The policy contract: "GET /api/v1/agent/policy with the agent's token (the point is the token's point)"
    ("GET", "/api/v1/agent/policy"): ("agent",),
    # Agent releases (issue 23): an agent fetches the release its own point's policy names; the rollout view
    # is for admins and viewers ("GET /api/v1/agent-releases (admin/viewer)"), the page for admins
    ("GET", "/api/v1/agent/releases/{version}/{platform}"): ("agent",),
    ("GET", "/api/v1/agent/releases/{version}/{platform}/file"): ("agent",),
    ("GET", "/api/v1/agent-releases"): ("admin", "viewer"),
    ("GET", "/admin/releases"): ("admin",),
}
# Routes whose answer to an admitted caller may be "no such thing" for the placeholder values fill() gives
# ("x"): that refusal, with this code, comes after the role check and so counts as access.
NOT_FOUND_AFTER_ROLE = {("GET", "/api/v1/agent/releases/{version}/{platform}"): "no_release",
                        ("GET", "/api/v1/agent/releases/{version}/{platform}/file"): "no_release"}
# Routes whose role check is inside the handler (with its own rejection counters) rather than a dependency.
HANDLER_CHECKED = {("POST", "/api/v1/reports")}
# Bodies for writes whose effect depends on a region or a point, so inside/outside can be told apart.
BODIES = {
    ("POST", "/api/v1/enroll-codes"): lambda point, region: {"point": point},
    ("POST", "/api/v1/tokens"): lambda point, region: {"role": "viewer", "region": region, "person": "大屏"},
    ("PUT", "/api/v1/policies/regions/{path:path}"): lambda point, region: {"intervals": {"network": "60s"}},
    ("POST", "/api/v1/users"): lambda point, region: {"username": f"u{abs(hash(region)) % 10**8}",
                                                      "password": "long-enough-pw", "role": "viewer",
                                                      "region": region, "person": "查看员"},
    ("POST", "/api/v1/points"): lambda point, region: {"code": f"m{abs(hash(region)) % 10**8}", "name": "新点",
                                                       "region": region},
    ("PUT", "/api/v1/points/{code}"): lambda point, region: {"name": "改名", "region": region},
}
UI_MODULES = {"collector.api.ui", "collector.api.admin_points", "collector.api.admin_people",
              "collector.api.reviewpages", "collector.api.releasepages"}  # the HTML pages


@pytest.fixture
def world(store, tmp_path):
    points.upsert_point(store, POINT_A, "城关区某村服务点", COUNTY_A + "/某镇/某村")
    points.upsert_point(store, POINT_B, NAME_B, COUNTY_B + "/某镇/某村")
    # County A runs on a policy, so its agent's GET /api/v1/agent/policy has one to answer with.
    policy_service.set_region(store, COUNTY_A, "intervals: {network: 60s}\n", "a.yaml", Actor("test"))
    principals = {"anonymous": {}}
    for role in ("viewer", "reviewer", "admin"):
        principals[role] = {"Authorization": "Bearer " + users.create_token(store, role, COUNTY_A)}
    principals["agent"] = {"Authorization": "Bearer " + users.create_token(store, "agent", point_code=POINT_A)}
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    client = TestClient(app, follow_redirects=False)
    for role in ("viewer", "admin"):  # the same roles through a web session instead of a token
        users.create_user(store, f"web-{role}", "long-enough-pw", role, COUNTY_A, person=f"p-{role}")
        r = web_login(client, f"web-{role}", "long-enough-pw")
        assert r.status_code == 303, r.text
        # as the pages' own scripts send it: the cookie, our origin and the session's CSRF token
        principals[f"{role}(session)"] = {"Cookie": f"pw_session={r.cookies['pw_session']}",
                                          **session_headers(client)}
        client.cookies.clear()
    # the user the /users/{username}/… routes act on ("x", as fill() names every non-code parameter)
    users.create_user(store, "x", "long-enough-pw", "viewer", COUNTY_A + "/某镇", person="小x")
    return app, client, principals


def role_of(principal: str) -> str | None:
    return None if principal == "anonymous" else principal.split("(")[0]


def has_role_dependency(route: Endpoint, method: str) -> bool:
    """Whether the route is guarded by a require_roles() dependency at all (which roles it names is not read)."""
    if (method, route.path) in HANDLER_CHECKED:
        return True
    return any(getattr(dep.call, "roles", None) for dep in route.dependant.dependencies)


@dataclass
class Endpoint:
    path: str
    methods: set
    endpoint: object
    dependant: object


def flat_routes(app):
    """Every API route with its full path; FastAPI >= 0.16x keeps included routers lazily, older ones flat."""
    try:
        from fastapi.routing import _iter_routes_with_context
    except ImportError:  # older FastAPI: app.routes is already flat
        _iter_routes_with_context = None
    if _iter_routes_with_context is None:
        for r in app.routes:
            if isinstance(r, APIRoute):
                yield Endpoint(r.path, r.methods, r.endpoint, r.dependant)
        return
    for original, ctx in _iter_routes_with_context(app.routes):
        if not isinstance(original, APIRoute):
            continue
        if ctx is None:
            yield Endpoint(original.path, original.methods, original.endpoint, original.dependant)
        else:
            yield Endpoint(ctx.path or original.path, ctx.methods or original.methods,
                           ctx.endpoint or original.endpoint, ctx.dependant or original.dependant)


def endpoints(app, ui: bool):
    for route in flat_routes(app):
        if (route.endpoint.__module__ in UI_MODULES) != ui:
            continue
        for method in sorted(route.methods - {"HEAD"}):
            yield route, method


def fill(path: str, code: str, region: str = "x") -> str:
    """A route's path with a point code for ``{code}``, a region path for ``{path}`` and "x" for the rest."""
    path = path.replace("{path:path}", region)
    return re.sub(r"\{code\}", code, re.sub(r"\{(?!code)[^}]+\}", "x", path))


def check_route(client, principals, route, method, failures: list[str]) -> None:
    key = (method, route.path)
    if key in PUBLIC:
        return
    roles = WHO_MAY.get(key)
    if roles is None:
        failures.append(f"{method} {route.path}: neither public nor in WHO_MAY; state who may call it")
        return
    if not has_role_dependency(route, method):
        failures.append(f"{method} {route.path}: not public and has no require_roles() dependency")
    for who, headers in principals.items():
        role = role_of(who)
        for side, code, region in (("inside", POINT_A, COUNTY_A + "/某镇"), ("outside", POINT_B, COUNTY_B)):
            has_code = "{code}" in route.path or "{path:path}" in route.path  # a point's or a region's own route
            body_for = BODIES.get(key)
            if side == "outside" and not has_code and body_for is None and method != "GET":
                continue
            url = fill(route.path, code, region)
            kwargs = {"json": body_for(code, region)} if body_for else {}
            r = client.request(method, url, headers=headers, **kwargs)
            where = f"{method} {url} as {who} ({side})"
            if role is None:
                if r.status_code != 401:
                    failures.append(f"{where}: {r.status_code}, expected 401")
            elif role not in roles:
                if r.status_code != 403:
                    failures.append(f"{where}: {r.status_code}, expected 403")
            elif side == "inside" or not (has_code or body_for):
                if r.status_code == 404 and key in NOT_FOUND_AFTER_ROLE and \
                        r.json()["detail"]["code"] == NOT_FOUND_AFTER_ROLE[key]:
                    continue
                if r.status_code in (401, 403, 404) or r.status_code >= 500:
                    failures.append(f"{where}: {r.status_code}, expected access")
                if method == "GET" and (POINT_B in r.text or NAME_B in r.text or COUNTY_B in r.text):
                    failures.append(f"{where}: shows the other county's data")
            elif r.status_code not in (403, 404):
                failures.append(f"{where}: {r.status_code}, expected 403/404 outside the region")


def test_every_api_route_by_role_and_region(world):
    app, client, principals = world
    failures: list[str] = []
    seen = set()
    for route, method in endpoints(app, ui=False):
        check_route(client, principals, route, method, failures)
        seen.add((method, route.path))
    seen |= {(method, route.path) for route, method in endpoints(app, ui=True)}
    assert set(WHO_MAY) <= seen, f"routes in WHO_MAY the app no longer has: {sorted(set(WHO_MAY) - seen)}"
    assert not failures, "\n".join(failures)


def test_agent_tokens_read_nothing(world):
    """...but their own point's policy, the one GET stated for agents above."""
    app, client, principals = world
    for route, method in endpoints(app, ui=False):
        if method == "GET" and (method, route.path) not in PUBLIC and "agent" not in WHO_MAY[(method, route.path)]:
            r = client.get(fill(route.path, POINT_A), headers=principals["agent"])
            assert r.status_code == 403, f"GET {route.path} as agent: {r.status_code}"


def test_a_root_admin_sees_both_counties(store, tmp_path):
    points.upsert_point(store, POINT_A, "A", COUNTY_A)
    points.upsert_point(store, POINT_B, NAME_B, COUNTY_B)
    client = TestClient(create_app(Settings(data_dir=tmp_path / "d"), store=store))
    headers = {"Authorization": "Bearer " + users.create_token(store, "admin", "/")}
    codes = {p["code"] for p in client.get("/api/v1/points", headers=headers).json()["points"]}
    assert codes == {POINT_A, POINT_B}
    assert client.get(f"/api/v1/points/{POINT_B}", headers=headers).status_code == 200


def test_pages_by_role_and_region(world):
    app, client, principals = world
    failures: list[str] = []
    for route, method in endpoints(app, ui=True):
        allowed = WHO_MAY.get((method, route.path))
        if allowed is not None and not has_role_dependency(route, method):
            failures.append(f"{method} {route.path}: in WHO_MAY but has no require_roles() dependency")
        for who, headers in principals.items():
            role = role_of(who)
            for side, code in (("inside", POINT_A), ("outside", POINT_B)):
                url = fill(route.path, code)
                r = client.request(method, url, headers=headers)
                where = f"{method} {url} as {who} ({side})"
                if role is None:
                    if r.status_code not in (303, 401) or (r.status_code == 303 and "/login" not in
                                                           r.headers.get("location", "")):
                        failures.append(f"{where}: {r.status_code}, expected the login page")
                elif role == "agent":
                    if r.status_code != 403:
                        failures.append(f"{where}: {r.status_code}, expected 403")
                elif allowed is not None and role not in allowed:
                    if r.status_code != 403:
                        failures.append(f"{where}: {r.status_code}, expected 403 for a {role}")
                elif allowed is not None and method == "GET":
                    expected = 404 if side == "outside" and "{code}" in route.path else 200
                    if r.status_code != expected or (r.status_code == 200 and POINT_B in r.text):
                        failures.append(f"{where}: {r.status_code}, expected {expected} (or shows the other county)")
                elif method == "POST":  # the admin forms (silences): sent here without their fields
                    if role != "admin" and r.status_code != 403:
                        failures.append(f"{where}: {r.status_code}, expected 403 for a non-admin")
                    if role == "admin" and r.status_code in (401, 403) or r.status_code >= 500:
                        failures.append(f"{where}: {r.status_code}, an admin's form must reach validation")
                elif side == "outside" and "{code}" in route.path:
                    if r.status_code != 404:
                        failures.append(f"{where}: {r.status_code}, expected 404")
                elif r.status_code != 200 or POINT_B in r.text:
                    failures.append(f"{where}: {r.status_code} or shows the other county")
    assert not failures, "\n".join(failures)
