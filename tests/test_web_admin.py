"""Administration in a real browser (Debian's Chromium through playwright), at desktop and phone width.

The headline: a collector fresh from its first start, whose first admin is made with the command its
first-run page shows; that admin registers a point in the browser, makes an enrolment code, a real agent
process enrols with the command the page gives and reports, and the admin sees the report on the
dashboard. No other shell step on the collector's host.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from urllib.parse import urlparse

import pytest

from tests.conftest import require, require_tool
from tests.livecollector import COLLECTOR, start_collector
from tests.test_web_browser import CHROMIUM_ARGS

AGENT = [sys.executable, "-m", "agent.cli"]
PASSWORD = "county-admin-2026"
COUNTY = "甘肃省/兰州市/榆中县"
SIZES = {"desktop": {"width": 1366, "height": 768}, "phone": {"width": 390, "height": 844}}


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


@pytest.fixture(scope="module")
def site(tmp_path_factory, browser):
    """A fresh collector: nobody can log in until the first admin is made as its first-run page says."""
    work = tmp_path_factory.mktemp("admin-web")
    live = start_collector(work)
    try:
        pg = browser.new_page()
        pg.goto(live.base + "/login")
        assert "创建第一个管理员" in pg.locator("h1").inner_text()
        command = shlex.split(pg.locator("pre.command code").inner_text())
        pg.close()
        assert command[0] == "pointwatch-collector"
        command[command.index("--username") + 1] = "county-admin"
        command[command.index("--region") + 1] = COUNTY  # a county's admin, as the page suggests
        subprocess.run([*COLLECTOR, *command[1:], "--password-stdin"], input=PASSWORD + "\n", text=True,
                       check=True, capture_output=True, timeout=60, env=live.env)
        yield live, work
    finally:
        live.stop()


def _page(browser, live, size: str):
    context = browser.new_context(viewport=SIZES[size], locale="zh-CN")
    pg = context.new_page()
    pg.outside, pg.errors, pg.base, pg.size = [], [], live.base, size
    pg.on("request", lambda r: pg.outside.append(r.url) if urlparse(r.url).hostname != "127.0.0.1" else None)
    pg.on("console", lambda m: pg.errors.append(m.text) if m.type == "error" else None)
    return pg


def _login(pg, username: str, password: str = PASSWORD) -> None:
    pg.goto(pg.base + "/login")
    pg.fill("input[name=username]", username)
    pg.fill("input[name=password]", password)
    pg.click("form button[type=submit]")
    pg.wait_for_url(pg.base + "/")


def _fits(pg) -> None:
    """Usable at this width: the page never scrolls sideways (wide tables scroll in their own box)."""
    width = SIZES[pg.size]["width"]
    assert pg.evaluate("document.documentElement.scrollWidth") <= width, f"{pg.url} overflows at {pg.size}"


def _done(pg, refused: str | None = None) -> None:
    """No request left loopback and no console error, but Chromium's note of the one status a test
    provoked on purpose (``refused``: "status of 403")."""
    assert pg.outside == [], f"requests left 127.0.0.1: {pg.outside}"
    errors = [e for e in pg.errors if not (refused and "Failed to load resource" in e and refused in e)]
    assert errors == [], f"console errors: {errors}"
    pg.context.close()


@pytest.fixture(params=list(SIZES))
def admin(request, browser, site):
    live, _ = site
    pg = _page(browser, live, request.param)
    _login(pg, "county-admin")
    yield pg
    _done(pg)


def _register(pg, code: str, name: str, region: str) -> None:
    pg.click("header nav a:has-text('管理')")
    pg.wait_for_url("**/admin/points")
    pg.click("a:has-text('登记一个服务点')")
    pg.fill("input[name=code]", code)
    pg.fill("input[name=name]", name)
    pg.fill("input[name=region]", region)
    pg.fill("input[name=expected_devices]", "printer:1")
    _fits(pg)
    pg.click("form.point-form button[type=submit]")
    pg.wait_for_url("**/admin/points?**")
    assert f"服务点 {code}（{name}）已登记" in pg.locator(".notice").inner_text()


def _agent_config(work, code: str, base: str):
    port = urlparse(base).port
    cfg = work / f"agent-{code}.yaml"
    cfg.write_text(f"""
point: {{code: "{code}", name: 测试服务点}}
collector: {{url: "{base}"}}
state_dir: "{(work / f'state-{code}').as_posix()}"
intervals: {{network: 5s, devices: 5m, compliance: 5m, identity: 5m}}
core_network:
  timeout: 1s
  count: 2
  icmp: [{{target: 127.0.0.1, name: 核心网关}}]
  tcp: [{{target: "127.0.0.1:{port}", name: 采集端}}]
""", encoding="utf-8")
    return cfg


def test_first_admin_registers_a_point_enrols_its_pc_and_sees_the_first_report(admin, site, artifacts_dir):
    live, work = site
    pg = admin
    code = {"desktop": "620123100001", "phone": "620123100002"}[pg.size]
    _register(pg, code, f"头一个服务点{pg.size}", f"{COUNTY}/城关镇/东关村")

    row = pg.locator("table.admin-points tbody tr", has_text=code)
    row.locator("button:has-text('生成注册码')").click()
    pg.wait_for_selector("#enroll-code")
    _fits(pg)
    pg.screenshot(path=str(artifacts_dir / f"admin-enroll-{pg.size}.png"), full_page=True)
    enroll_code = pg.locator("#enroll-code").inner_text().strip()
    linux = shlex.split(pg.locator("#cmd-linux").inner_text())
    assert enroll_code in pg.locator("#cmd-windows").inner_text()
    assert linux[0] == "sudo" and linux[1].endswith("pointwatch-agent") and linux[2] == "enroll"
    assert linux[linux.index("--collector") + 1] == live.base and linux[linux.index("--code") + 1] == enroll_code

    # The person at the point's PC runs that command (the installed program is this checkout's agent,
    # the config the one they wrote), then starts the service.
    cfg = _agent_config(work, code, live.base)
    args = linux[3:]
    args[args.index("--config") + 1] = str(cfg)
    enrolled = subprocess.run([*AGENT, "enroll", *args], capture_output=True, text=True, timeout=60)
    assert enrolled.returncode == 0, enrolled.stdout + enrolled.stderr
    agent = subprocess.Popen([*AGENT, "run", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            pg.goto(pg.base + f"/?q={code}")
            row = pg.locator("table.points tbody tr", has_text=code)
            if row.count() == 1 and "失联" not in row.locator("td:first-child").inner_text():
                break
            assert time.monotonic() < deadline, "the first report never reached the dashboard"
            pg.wait_for_timeout(1000)
    finally:
        agent.terminate()
        agent.wait(20)
    _fits(pg)
    pg.goto(pg.base + f"/points/{code}")
    assert "采集端" in pg.locator("main").inner_text()  # the agent's own TCP check of this collector
    pg.goto(pg.base + "/audit")
    log = pg.locator("table.points").inner_text()
    assert "登记服务点" in log and "创建注册码" in log and "终端注册" in log


def test_admin_edits_a_point_and_a_bad_form_names_each_field(admin):
    pg = admin
    code = {"desktop": "620123200001", "phone": "620123200002"}[pg.size]
    _register(pg, code, "待修改的点", f"{COUNTY}/城关镇/西关村")
    pg.locator("table.admin-points tbody tr", has_text=code).locator("a:has-text('编辑')").click()
    pg.wait_for_url(f"**/admin/points/{code}/edit")
    assert pg.input_value("input[name=expected_devices]") == "printer:1"
    pg.fill("input[name=name]", "")
    pg.fill("input[name=region]", "甘肃省/兰州市/城关区/某镇")  # another county
    pg.fill("input[name=report_interval_s]", "5")
    pg.evaluate("document.querySelector('form.point-form').noValidate = true")  # as a script could send it
    pg.click("form.point-form button[type=submit]")
    problems = pg.locator("[role=alert]").inner_text()
    assert "名称：不能为空" in problems and "不在您的管辖区域" in problems and "上报间隔" in problems
    _fits(pg)
    pg.fill("input[name=name]", "改过名的点")
    pg.fill("input[name=region]", f"{COUNTY}/城关镇/南关村")
    pg.fill("input[name=report_interval_s]", "120")
    pg.click("form.point-form button[type=submit]")
    pg.wait_for_url("**/admin/points?**")
    row = pg.locator("table.admin-points tbody tr", has_text=code)
    assert "改过名的点" in row.inner_text()
    if pg.size == "desktop":
        assert "南关村" in row.inner_text()


def test_spreadsheet_upload_lists_every_problem_and_writes_nothing_until_clean(admin, tmp_path):
    pg = admin
    prefix = {"desktop": "6201233", "phone": "6201234"}[pg.size]
    bad = tmp_path / "服务点.csv"
    bad.write_text("编码,名称,区域,标准,设备\n"
                   f"{prefix}00001,甲村服务点,{COUNTY}/甲镇/甲村,national-basic,printer:1\n"
                   f",乙村服务点,{COUNTY}/甲镇/乙村,national-basic,\n"
                   f"{prefix}00003,丙村服务点,甘肃省/兰州市/城关区/丙村,no-such-profile,飞机:2\n", encoding="utf-8")
    pg.goto(pg.base + "/admin/points")
    pg.set_input_files("input[name=file]", str(bad))
    pg.click("form.import button[type=submit]")
    problems = pg.locator(".import-problems li").all_inner_texts()
    assert "未写入任何数据" in pg.locator(".import-problems h2").inner_text()
    assert "第 3 行，列 code：不能为空" in problems
    assert any(p.startswith("第 4 行，列 region：") and "不在您的管辖区域" in p for p in problems)
    assert any(p.startswith("第 4 行，列 profile：") for p in problems)
    assert any(p.startswith("第 4 行，列 expected_devices：未知设备类型") for p in problems)
    _fits(pg)
    pg.goto(pg.base + f"/admin/points?q={prefix}")
    assert pg.locator("table.admin-points tbody tr[data-code]").count() == 0  # the clean row was not written

    from openpyxl import Workbook

    wb = Workbook()
    wb.active.append(["code", "name", "region", "profile", "expected_devices"])
    for i in range(1, 4):
        wb.active.append([f"{prefix}0000{i}", f"第{i}村服务点", f"{COUNTY}/甲镇/{i}村", "national-basic", "kiosk:1"])
    good = tmp_path / "服务点.xlsx"
    wb.save(good)
    pg.set_input_files("input[name=file]", str(good))
    pg.click("form.import button[type=submit]")
    assert "导入完成：3 行，新增 3，更新 0" in pg.locator(".notice").inner_text()
    pg.goto(pg.base + f"/admin/points?q={prefix}")
    assert pg.locator("table.admin-points tbody tr[data-code]").count() == 3


def test_admin_creates_a_user_resets_its_password_and_disables_it(admin, browser, site):
    live, _ = site
    pg = admin
    username = f"town-viewer-{pg.size}"
    pg.goto(pg.base + "/admin/users")
    form = pg.locator("form.user-form")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=person]").fill(f"王{pg.size}")
    form.locator("select[name=role]").select_option("viewer")
    form.locator("input[name=region]").fill(f"{COUNTY}/城关镇")
    form.locator("input[name=password]").fill("first-password-1")
    form.locator("input[name=password2]").fill("first-password-1")
    _fits(pg)
    form.locator("button[type=submit]").click()
    pg.wait_for_url("**/admin/users?**")
    assert f"用户 {username}" in pg.locator(".notice").inner_text()

    row = pg.locator("table.admin-users tbody tr", has_text=username)
    row.locator("input[name=password]").fill("second-password-2")
    row.locator("button:has-text('重设密码')").click()
    pg.wait_for_url("**/admin/users?**")
    assert "密码已重设" in pg.locator(".notice").inner_text()
    other = _page(browser, live, pg.size)
    try:
        _login(other, username, "second-password-2")  # the new password works
        assert other.locator("header nav a:has-text('管理')").count() == 0
    finally:
        _done(other)

    pg.locator("table.admin-users tbody tr", has_text=username).locator("button:has-text('停用')").click()
    pg.wait_for_url("**/admin/users?**")
    assert "已停用" in pg.locator("table.admin-users tbody tr", has_text=username).inner_text()
    refused = _page(browser, live, pg.size)
    try:
        refused.goto(refused.base + "/login")
        refused.fill("input[name=username]", username)
        refused.fill("input[name=password]", "second-password-2")
        refused.click("form button[type=submit]")
        assert "用户名或密码不正确" in refused.locator("[role=alert]").inner_text()
    finally:
        _done(refused, refused="status of 401")  # the refused login's answer


def test_admin_creates_lists_and_revokes_a_token(admin):
    import urllib.error
    import urllib.request

    pg = admin
    pg.goto(pg.base + "/admin/tokens")
    form = pg.locator("form.token-form")
    form.locator("select[name=role]").select_option("viewer")
    form.locator("input[name=region]").fill(COUNTY)
    form.locator("input[name=person]").fill("大屏值守")
    form.locator("input[name=description]").fill(f"大屏 {pg.size}")
    form.locator("button[type=submit]").click()
    token = pg.locator("#new-token").inner_text().strip()
    assert token.startswith("pw_")
    _fits(pg)

    def status() -> int:
        request = urllib.request.Request(pg.base + "/api/v1/points", headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as resp:
                return resp.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert status() == 200
    pg.goto(pg.base + "/admin/tokens")
    assert token not in pg.content()  # shown once, never listed
    row = pg.locator("table.admin-tokens tbody tr", has_text=f"大屏 {pg.size}")
    assert "有效" in row.inner_text()
    row.locator("button:has-text('吊销')").click()
    pg.wait_for_url("**/admin/tokens?**")
    assert "已吊销" in pg.locator(".notice").inner_text()
    assert "已吊销" in pg.locator("table.admin-tokens tbody tr", has_text=f"大屏 {pg.size}").inner_text()
    assert status() == 401


@pytest.mark.parametrize("role", ["viewer", "reviewer"])
def test_viewers_and_reviewers_see_no_admin_controls_and_are_refused(browser, site, role):
    live, _ = site
    username = f"plain-{role}"
    live.cli("users", "create", "--username", username, "--role", role, "--region", COUNTY, "--person",
             f"{role}-person", "--password-stdin", stdin=PASSWORD + "\n")
    pg = _page(browser, live, "phone")
    try:
        _login(pg, username)
        assert pg.locator("header nav a:has-text('管理')").count() == 0
        token = pg.evaluate("document.querySelector('meta[name=csrf-token]').content")  # the session's own
        for path in ("/admin/points", "/admin/users", "/admin/tokens", "/admin/points/new", "/admin/releases"):
            assert pg.goto(pg.base + path).status == 403, path
        for path, form in (("/admin/points", {"code": "620123999999", "name": "越权", "region": COUNTY}),
                           ("/admin/tokens", {"role": "admin", "region": COUNTY, "person": "越权"}),
                           ("/admin/users/county-admin/disable", {})):
            response = pg.request.post(pg.base + path, form={"csrf_token": token, **form},
                                       headers={"Origin": pg.base})
            assert response.status == 403, path
    finally:
        _done(pg, refused="status of 403")  # the admin pages opened above
