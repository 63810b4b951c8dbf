"""Every page in Debian's Chromium with its console watched: no error, no failed request (a favicon 404 included),
Chinese chart legends; and the first-run page of a collector that has no account yet."""

from __future__ import annotations

import shlex
import sys

from tests.livecollector import COLLECTOR, start_collector
from tests.test_web_browser import PASSWORD, _close, _new_page, login
from tests.test_web_browser import browser as _browser
from tests.test_web_browser import page as _page
from tests.test_web_browser import site as _site

browser, site, page = _browser, _site, _page  # the browser tests' fixtures: a seeded collector, Chromium, a login


def _watched(pg) -> list[str]:
    problems: list[str] = []
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("response", lambda r: problems.append(f"HTTP {r.status} {r.url}") if r.status >= 400 else None)
    # A request the browser itself cancels because the page navigated on (the favicon of /login while the form
    # submits) fails with net::ERR_ABORTED; that is not the server's fault, and a real 4xx/5xx is caught above.
    pg.on("requestfailed", lambda r: None if r.failure == "net::ERR_ABORTED" else
          problems.append(f"failed {r.url}: {r.failure}"))
    return problems


def _visit(pg, path: str, ready: str, problems: list[str]) -> None:
    response = pg.goto(pg.base + path)
    assert response.status == 200, path
    pg.wait_for_selector(ready, timeout=15000)
    pg.wait_for_load_state("networkidle")
    pg.wait_for_timeout(300)  # the favicon is fetched after load
    assert problems == [], f"{path}: {problems}"


def test_no_page_logs_a_console_error(browser, site):
    _, sims = site
    pg = _new_page(browser, site)
    problems = _watched(pg)
    try:
        _visit(pg, "/login", "form button[type=submit]", problems)
        login(pg, "county-admin")
        pages = {"/": "table.points", f"/points/{sims[3].code}": ".chart canvas", f"/points/{sims[5].code}":
                 "section.sheet", "/scores": "table.points", "/scores?from=2026-01-01&to=2026-01-02": "table.points",
                 "/alerts": "table.alerts", "/alerts?state=resolved": "table.alerts", "/audit": "table.points",
                 "/docs": ".swagger-ui .info", "/admin/points": "table.admin-points",
                 f"/admin/points/{sims[3].code}/edit": "form.point-form", "/admin/points/new": "form.point-form",
                 "/admin/users": "table.admin-users", "/admin/tokens": "table.admin-tokens",
                 "/admin/releases": "table.admin-releases",
                 "/reviews": "table.reviews"}
        for path, ready in pages.items():
            _visit(pg, path, ready, problems)
        icon = pg.request.get(pg.base + "/favicon.ico")
        assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon" and icon.body()[:4] == b"\0\0\1\0"
        svg = pg.request.get(pg.base + "/static/favicon.svg")
        assert svg.status == 200 and b"<svg" in svg.body()
    finally:
        _close(pg)


def test_chart_legends_are_chinese(page, site):
    _, sims = site
    page.goto(page.base + f"/points/{sims[3].code}")
    page.wait_for_selector(".chart .u-legend", timeout=10000)
    legend = " ".join(page.locator(".chart .u-legend").all_inner_texts())
    assert "时间" in legend and "Time" not in legend
    assert not any(x in legend for x in ("am", "pm")), legend  # 24-hour times


def test_first_run_page_shows_how_to_create_the_first_admin(browser, tmp_path):
    live = start_collector(tmp_path)
    context = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN")
    pg = context.new_page()
    pg.base = live.base
    problems = _watched(pg)
    try:
        _visit(pg, "/", "pre.command", problems)  # anonymous: sent to /login, which is the first-run page
        assert "创建第一个管理员" in pg.locator("h1").inner_text()
        assert pg.locator("input[name=password]").count() == 0  # no form nobody could use
        command = pg.locator("pre.command").inner_text().strip()
        assert command == ("pointwatch-collector users create --username admin --role admin --region / --person admin "
                           f"--data-dir {shlex.quote(str(live.data_dir.resolve()))}")
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390  # readable on a phone
        # The command as shown creates an admin (the password from stdin here instead of the prompt).
        argv = shlex.split(command)
        assert argv[0] == "pointwatch-collector" and COLLECTOR[0] == sys.executable
        import subprocess

        subprocess.run([*COLLECTOR, *argv[1:], "--password-stdin"], input=PASSWORD, text=True, check=True,
                       capture_output=True, timeout=60, env=live.env)
        pg.reload()
        pg.fill("input[name=username]", "admin")
        pg.fill("input[name=password]", PASSWORD)
        pg.click("form button[type=submit]")
        pg.wait_for_url(pg.base + "/")
        assert "管理员" in pg.locator("header .who").inner_text()
        assert problems == []
    finally:
        context.close()
        live.stop()
