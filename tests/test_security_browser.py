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
