"""The dashboard in a real browser: Debian's Chromium driven by playwright (never a downloaded browser)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from urllib.parse import urlparse

import pytest

from collector.accounts import users
from collector.demo import fleet as demo_fleet
from collector.store import Store, points
from tests.conftest import require, require_tool
from tests.livecollector import start_collector

XSS_NAME = "<script>alert(1)</script>"
PASSWORD = "village-clinic-2026"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from agent import transport

    work = tmp_path_factory.mktemp("web")
    store = Store.open(work / "data")
    sims = demo_fleet.seed(store, work / "data", 60)[:20]
    points.upsert_point(store, "620123999001", XSS_NAME, f"{demo_fleet.COUNTY}/城关镇/东关村")
    xss_token = users.create_token(store, "agent", point_code="620123999001")
    users.create_user(store, "county-admin", PASSWORD, "admin", demo_fleet.COUNTY, person="admin-person")
    users.create_user(store, "town-viewer", PASSWORD, "viewer", f"{demo_fleet.COUNTY}/城关镇", person="viewer-person")
    users.create_user(store, "county-reviewer", PASSWORD, "reviewer", demo_fleet.COUNTY, person="reviewer-person")
    store.close()
    live = start_collector(work)
    try:
        sims[3].faults.add("kiosk_offline")
        sims[5].faults.add("remote_control")
        for sim in sims:
            transport.send_reports(live.base, sim.token, [demo_fleet._report(sim)], timeout=10)
        xss = demo_fleet.SimPoint("620123999001", XSS_NAME, "", random.Random(1), token=xss_token)
        transport.send_reports(live.base, xss_token, [demo_fleet._report(xss)], timeout=10)
        yield live, sims
    finally:
        live.stop()


@pytest.fixture(scope="module")
def browser():
    chromium = require_tool("chromium", "chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright (PyPI) is not installed")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def login(pg, username: str) -> None:
    pg.goto(pg.base + "/")
    pg.wait_for_url("**/login**")  # anonymous visitors are sent to the login page
    pg.fill("input[name=username]", username)
    pg.fill("input[name=password]", PASSWORD)
    pg.click("form button[type=submit]")
    pg.wait_for_url(pg.base + "/")


@pytest.fixture
def page(browser, site):
    pg = _new_page(browser, site)
    login(pg, "county-admin")
    yield pg
    _close(pg)


@pytest.fixture
def viewer_page(browser, site):
    pg = _new_page(browser, site)
    login(pg, "town-viewer")
    yield pg
    _close(pg)


def _new_page(browser, site):
    live, _ = site
    context = browser.new_context(viewport={"width": 1366, "height": 768}, locale="zh-CN")
    pg = context.new_page()
    outside, dialogs = [], []
    pg.on("request", lambda req: outside.append(req.url) if urlparse(req.url).hostname != "127.0.0.1" else None)
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.base = live.base
    pg.outside, pg.dialogs = outside, dialogs
    return pg


def _close(pg) -> None:
    pg.context.close()
    assert pg.outside == [], f"requests left 127.0.0.1: {pg.outside}"
    assert pg.dialogs == [], f"a script ran from page content: {pg.dialogs}"


def shot(pg, artifacts: Path, name: str) -> None:
    for label, size in (("desktop", {"width": 1366, "height": 768}), ("phone", {"width": 390, "height": 844})):
        pg.set_viewport_size(size)
        pg.wait_for_timeout(400)  # charts redraw for the new width
        pg.screenshot(path=str(artifacts / f"{name}-{label}.png"), full_page=True)
        # Usable on a phone: wide tables scroll inside their box, the page never scrolls sideways.
        assert pg.evaluate("document.documentElement.scrollWidth") <= size["width"], f"{name} overflows on {label}"
    pg.set_viewport_size({"width": 1366, "height": 768})


def test_overview_lists_points_worst_first_and_filters(page, site, artifacts_dir):
    page.goto(page.base + "/")
    rows = page.locator("table.points tbody tr")
    assert rows.count() == 69  # 68 registered (48 never reported: silent) + the hostile-named one
    order = ["失联", "检查出错", "不合格", "警告", "正常"]
    states = page.locator("table.points tbody tr td:first-child .badge").all_inner_texts()
    assert states == sorted(states, key=order.index), "worst first"
    assert states.count("不合格") == 2 and states.count("失联") == 48
    assert page.locator(".violations .stat.hot").count() >= 2  # 专用 and 设备
    shot(page, artifacts_dir, "overview")

    page.select_option("select[name=state]", "fail")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**state=fail**")
    assert page.locator("table.points tbody tr").count() == 2
    assert "向日葵" in page.locator("table.points").inner_text()

    page.fill("input[name=q]", "东关")
    page.select_option("select[name=state]", "")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**q=**")
    names = page.locator("table.points tbody tr td:nth-child(3)").all_inner_texts()
    assert names and all("东关" in n or n.startswith("<script>") for n in names)


def test_region_tree_narrows_the_list(page):
    page.goto(page.base + "/")
    page.locator(".regions a.region", has_text="城关镇").click()
    page.wait_for_url("**region=**")
    assert "城关镇" in page.locator(".crumbs").inner_text()
    regions = page.locator("table.points tbody td.wide").all_inner_texts()
    assert regions and all("/城关镇" in r for r in regions)


def test_point_page_shows_pillars_devices_and_charts(page, site, artifacts_dir):
    _, sims = site
    page.goto(page.base + f"/points/{sims[3].code}")
    assert page.locator(".pillar").count() == 3
    assert "自助服务一体机未检测到" in page.locator("section", has_text="设备").first.inner_text()
    page.wait_for_selector(".chart canvas", timeout=10000)
    assert page.locator(".chart canvas").count() >= 2
    assert page.locator(".supply meter").count() >= 1
    page.click("button[data-range='7d']")
    page.wait_for_selector("button[data-range='7d'].on")
    shot(page, artifacts_dir, "point")


def test_hostile_point_name_is_text(page):
    page.goto(page.base + "/?q=620123999001")
    cell = page.locator("table.points tbody tr td:nth-child(3)").first
    assert XSS_NAME in cell.inner_text()
    page.goto(page.base + "/points/620123999001")
    assert XSS_NAME in page.locator("h1").inner_text()


def test_live_update_swaps_data_without_reload(page, site):
    live, sims = site
    from agent import transport

    page.goto(page.base + f"/points/{sims[0].code}")
    marker = page.evaluate("() => { window.__marker = 42; return window.__marker; }")
    sims[0].faults.add("internet_reachable")
    transport.send_reports(live.base, sims[0].token, [demo_fleet._report(sims[0])], timeout=10)
    page.click("#refresh-now")
    page.wait_for_function("() => document.querySelector('.pillar').innerText.includes('可访问互联网')",
                           timeout=20000)
    assert page.evaluate("() => window.__marker") == marker  # same document: swapped, not reloaded


def test_docs_are_served_offline(page):
    page.goto(page.base + "/docs")
    page.wait_for_selector(".swagger-ui .info", timeout=15000)
    assert "pointwatch" in page.inner_text(".swagger-ui .info")
    spec = json.loads(page.evaluate("() => fetch('/openapi.json').then(r => r.text())"))
    assert "/api/v1/reports" in spec["paths"]


def test_scores_page_ranks_points_and_shows_item_rates(page, site, artifacts_dir):
    _, sims = site
    page.goto(page.base + "/scores")
    rows = page.locator("table.points tbody tr")
    assert rows.count() == 69
    ranks = [int(x) for x in page.locator("table.points tbody tr td:first-child").all_inner_texts()]
    assert ranks == sorted(ranks) and ranks[0] == 1
    # The point running remote-control software ranks below a clean one.
    text = page.locator("table.points").inner_text()
    assert text.index(sims[0].code) < text.index(sims[5].code)
    assert page.locator("section.panel h2", has_text="各项达标率").count() >= 1
    assert "以上时间满足" in page.locator("section.panel small.rule").first.inner_text()
    shot(page, artifacts_dir, "scores")
    page.fill("input[name=from]", "2026-01-01")
    page.fill("input[name=to]", "2026-01-02")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**from=2026-01-01**")
    assert "北京时间" in page.locator("p.matched").inner_text()


def test_point_page_has_the_score_sheet(page, site):
    _, sims = site
    page.goto(page.base + f"/points/{sims[5].code}")
    sheet = page.locator("section.sheet")
    assert "评分表" in sheet.inner_text() and "人工评审" in sheet.inner_text()
    assert sheet.locator("tbody tr").count() >= 20
    # Rules read as sentences; the expression stays in the profile and the API.
    assert "以上时间满足" in sheet.inner_text() and " hold " not in sheet.inner_text()


def test_alerts_page_lists_firing_alerts_and_an_admin_silences_one(page, site, artifacts_dir):
    _, sims = site
    page.goto(page.base + "/alerts")
    row = page.locator("table.alerts tbody tr", has_text=sims[5].code)
    row.wait_for()
    assert "告警中" in row.inner_text()  # remote-control software pages at once
    shot(page, artifacts_dir, "alerts")
    row.locator("input[name=reason]").fill("现场核查远程软件，县信息科已知悉")
    row.locator("select[name=duration]").select_option("8h")
    row.locator("button:has-text('屏蔽')").click()
    page.wait_for_url("**notice=**")
    assert "已屏蔽" in page.locator(".notice").inner_text()
    silences = page.locator("section.panel", has_text="生效中的屏蔽").inner_text()
    assert "现场核查远程软件" in silences and sims[5].code in silences
    assert "已屏蔽" in page.locator("table.alerts tbody tr", has_text=sims[5].code).inner_text()
    page.click("nav.tabs a:has-text('已恢复')")
    page.wait_for_url("**state=resolved**")


def test_viewer_sees_only_their_town_and_no_admin_controls(viewer_page, site):
    _, sims = site
    page = viewer_page
    regions = page.locator("table.points tbody td.wide").all_inner_texts()
    assert regions and all("/城关镇" in r for r in regions)
    assert page.locator("a:has-text('审计日志')").count() == 0
    page.goto(page.base + "/alerts")
    assert page.locator("form.silence").count() == 0 and "需要管理员权限" in page.content()
    outside = next(s for s in sims if "/城关镇" not in s.region)
    response = page.goto(page.base + f"/points/{outside.code}")
    assert response.status == 404
    response = page.request.post(page.base + "/alerts/silence",
                                 form={"point": sims[0].code, "reason": "试图越权", "duration": "2h"})
    assert response.status == 403


def test_audit_log_page_for_admins(page):
    page.click("header nav a:has-text('审计日志')")
    page.wait_for_url("**/audit")
    assert "链完整" in page.locator("p.meta").inner_text()
    assert "登录" in page.locator("table.points").inner_text()  # this very session's login is audited


def test_reviewer_downloads_a_signed_evidence_bundle(browser, site, tmp_path):
    import zipfile

    _, sims = site
    pg = _new_page(browser, site)
    try:
        login(pg, "county-reviewer")
        pg.goto(pg.base + f"/points/{sims[3].code}")
        form = pg.locator("section.panel", has_text="导出验收证据")
        today = __import__("datetime").date.today().isoformat()
        form.locator("input[name=from]").fill(today)
        form.locator("input[name=to]").fill(today)
        with pg.expect_download() as info:
            form.locator("button[type=submit]").click()
        path = tmp_path / "bundle.zip"
        info.value.save_as(path)
        with zipfile.ZipFile(path) as zf:
            assert {"manifest.json", "manifest.sig"} <= set(zf.namelist())
    finally:
        _close(pg)
