"""Every page under the collector's Content-Security-Policy in a real browser (Debian's Chromium): nothing the
pages need is blocked, and an injected inline script is."""

from __future__ import annotations

from tests.test_security_auth import CSP  # the README's policy, written out
from tests.test_web_browser import _close, _new_page, login
from tests.test_web_browser import browser as _browser
from tests.test_web_browser import site as _site

browser, site = _browser, _site  # the browser tests' fixtures: a seeded live collector and Chromium

WATCH = """
window.__csp = [];
document.addEventListener('securitypolicyviolation',
  e => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + e.sourceFile));
"""


def _watched_page(browser, site):
    pg = _new_page(browser, site)
    pg.context.add_init_script(WATCH)
    pg.console = []
    pg.on("console", lambda msg: pg.console.append(msg.text) if "Content Security Policy" in msg.text else None)
    return pg


def _violations(pg) -> list[str]:
    return list(pg.evaluate("() => window.__csp")) + pg.console


def test_no_page_breaks_the_policy(browser, site):
    live, sims = site
    pg = _watched_page(browser, site)
    try:
        response = pg.goto(pg.base + "/login")
        assert response.headers["content-security-policy"] == CSP
        assert _violations(pg) == []
        login(pg, "county-admin")
        pages = {"/": "table.points", f"/points/{sims[3].code}": ".chart canvas", "/scores": "table.points",
                 "/alerts": "table.alerts", "/audit": "table.points", "/docs": ".swagger-ui .info"}
        for path, ready in pages.items():
            response = pg.goto(pg.base + path)
            assert response.status == 200 and response.headers["content-security-policy"] == CSP, path
            pg.wait_for_selector(ready, timeout=15000)
            pg.wait_for_load_state("networkidle")
            assert _violations(pg) == [], f"{path}: {_violations(pg)}"
        # the listener is live and the policy enforced: an inline script injected into a page is blocked
        ran = pg.evaluate("""() => { const s = document.createElement('script');
            s.textContent = 'window.__ran = 1'; document.body.appendChild(s); return window.__ran; }""")
        assert ran is None
        pg.wait_for_function("() => window.__csp.length > 0", timeout=5000)
        assert "script-src" in _violations(pg)[0]
    finally:
        _close(pg)


def test_a_page_on_another_port_cannot_post_the_admins_forms(browser, site):
    """Issue 18 item 9, as reproduced: a page served from another port of the collector's host is "same
    site", so Chromium sends the admin's SameSite=Lax cookie with its auto-submitting form. The collector
    refuses it (not its origin, no token) and no silence is made; the admin's own form still works."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    live, sims = site
    target = sims[7].code
    evil_page = (f'<form method="post" action="{live.base}/alerts/silence">'
                 f'<input name="point" value="{target}"><input name="reason" value="攻击者的屏蔽">'
                 '<input name="duration" value="90d"></form><script>document.forms[0].submit()</script>').encode()

    class Evil(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(evil_page)))
            self.end_headers()
            self.wfile.write(evil_page)

    evil = ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    pg = _new_page(browser, site)
    try:
        login(pg, "county-admin")
        with pg.expect_response(lambda r: r.url.endswith("/alerts/silence")) as answer:
            pg.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert answer.value.status == 403
        pg.goto(pg.base + "/alerts?state=all")
        assert "攻击者的屏蔽" not in pg.content()
    finally:
        _close(pg)
        evil.shutdown()
        evil.server_close()
