"""A review on a phone in Chromium (issue 22, done-when): a reviewer opens a review of a Lanzhou point, scores
every manual item on a phone-width page while the connection drops and comes back, submits, and the signed
final sheet's total is automatic + manual; ``evidence verify`` accepts the bundle and rejects any edited byte.

A real collector process (tests/livecollector.py), Debian's Chromium through playwright; the connection is
dropped with the browser context's offline switch (requests fail as on a dead line, ``navigator.onLine``
turns false), so what was typed meanwhile can only reach the store after the line is back.
"""

from __future__ import annotations

import json
import re
import urllib.request
import zipfile
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import expect

from collector.accounts import users
from collector.cli import main
from collector.evidence.keys import parse_public
from collector.evidence.verify import verify_bundle
from collector.store import Store, points
from tests.helpers import ingest, make_report
from tests.livecollector import start_collector
from tests.test_web_browser import _close, _new_page, browser  # noqa: F401 - the shared Chromium fixture

COUNTY = "甘肃省/兰州市/城关区"
POINT = "620102001001"
PASSWORD = "village-clinic-2026"
DAY = datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=8)))
STATUSES = {"net.core.tcp": "ok", "net.core.icmp": "ok", "isolation.internet": "ok", "isolation.interfaces": "ok",
            "usage.processes": "ok", "usage.removable_media": "ok", "usage.listening_ports": "ok",
            "device.printer": "ok", "device.kiosk": "ok", "host.resources": "ok"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    work = tmp_path_factory.mktemp("review-web")
    store = Store.open(work / "data")
    points.upsert_point(store, POINT, "城关区某村医保服务点", COUNTY + "/某镇/某村", profile="lanzhou-basic-2023",
                        report_interval_s=3600, created_at=DAY - timedelta(days=2))
    for h in range(-3, 25):  # an hourly point reporting all day
        at = DAY + timedelta(hours=h)
        ingest(store, [make_report(POINT, seq=h + 4, statuses=STATUSES, collected_at=at)],
               received_at=at + timedelta(seconds=5))
    users.create_user(store, "village-reviewer", PASSWORD, "reviewer", COUNTY, person="评审员甲")
    store.close()
    live = start_collector(work)
    try:
        yield live
    finally:
        live.stop()


def phone_login(browser, live):  # noqa: F811 - the fixture's value
    pg = _new_page(browser, (live, None))
    pg.set_viewport_size({"width": 390, "height": 844})
    pg.goto(live.base + "/reviews")
    pg.wait_for_url("**/login**")
    pg.fill("input[name=username]", "village-reviewer")
    pg.fill("input[name=password]", PASSWORD)
    pg.click("form button[type=submit]")
    pg.wait_for_url(live.base + "/reviews")
    return pg


def score_item(pg, card, points: float) -> None:
    card.locator("input[name=score]").fill(f"{points:g}")
    note = card.locator("textarea[name=note]")
    note.fill("现场查看，符合要求")


def test_a_reviewer_scores_a_point_on_a_phone_through_a_dropped_connection(browser, site, tmp_path,  # noqa: F811
                                                                          artifacts_dir):
    live = site
    pg = phone_login(browser, live)
    script_errors: list[str] = []  # the page's own script must not throw, offline or not
    pg.on("pageerror", lambda e: script_errors.append(str(e)))
    try:
        pg.select_option("#open-review select[name=point]", POINT)
        pg.fill("#open-review input[name=from]", "2026-01-01")
        pg.fill("#open-review input[name=to]", "2026-01-01")
        pg.click("#open-review button[type=submit]")
        pg.wait_for_url("**/reviews?id=*")
        rid = int(pg.url.rsplit("=", 1)[1])
        cards = pg.locator("article.item")
        manual = [c for c in cards.all() if c.get_attribute("data-mode") != "auto"
                  and "na" not in (c.get_attribute("class") or "")]
        assert len(manual) == 42  # every item the Lanzhou table leaves to the reviewer
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390, "the page scrolls sideways on a phone"

        def api(path):
            return pg.context.request.get(live.base + path)

        half = len(manual) // 2
        for card in manual[:half]:
            score_item(pg, card, float(card.get_attribute("data-points")))
        expect(pg.locator("#sync-text")).to_have_text("全部已保存", timeout=20000)
        assert len(api(f"/api/v1/reviews/{rid}").json()["missing"]) == 42 - half

        pg.context.set_offline(True)  # the village line drops between two items
        offline = manual[half:half + 5]
        for card in offline:
            score_item(pg, card, float(card.get_attribute("data-points")))
        expect(pg.locator("#sync-text")).to_have_text(re.compile("^网络中断"))
        assert "离线暂存" in offline[-1].locator(".sync").inner_text()
        pg.screenshot(path=str(artifacts_dir / "review-phone-offline.png"))
        pg.context.set_offline(False)
        # nothing typed offline reached the store until now; the queue sends it as the line is back
        expect(pg.locator("#sync-text")).to_have_text("全部已保存", timeout=20000)
        assert len(api(f"/api/v1/reviews/{rid}").json()["missing"]) == 42 - half - 5

        for card in manual[half + 5:]:
            points_ = float(card.get_attribute("data-points"))
            score_item(pg, card, points_ / 2 if points_ >= 2 and points_ % 1 == 0 else points_)
        # one automatic item the reviewer overrides on site, with the reason
        auto = next(c for c in cards.all() if c.get_attribute("data-mode") == "auto")
        met = "未达标" not in auto.locator(".monitor").inner_text()
        auto.locator("summary").click()
        auto.locator("textarea[name=reason]").fill("现场核实：监测所见与现场不符")
        auto.locator("input[name=score]").fill("0" if met else auto.get_attribute("data-points"))
        expect(pg.locator("#sync-text")).to_have_text("全部已保存", timeout=20000)
        expect(pg.locator("#missing-text")).to_have_text("人工评分已全部填写", timeout=20000)
        pg.click("#submit-review")
        try:
            pg.wait_for_selector("table.final", timeout=30000)  # submitted: the page shows the final sheet
        except Exception:
            pytest.fail(f"not submitted: {pg.locator('#submit-error').inner_text()}")

        review = api(f"/api/v1/reviews/{rid}").json()
        assert review["state"] == "submitted" and review["missing"] == []
        assert review["automatic"] > 0 and review["manual"] > 0 and not review["vetoed"]
        assert review["total"] == review["automatic"] + review["manual"]
        assert len(review["overridden"]) == 1
        text = pg.locator("#sum-text").inner_text()
        assert f"总分 {review['total']:g} 分" in text
        assert pg.locator("table.final tr.overridden").count() == 1
        assert pg.evaluate("document.documentElement.scrollWidth") <= 390

        pg.screenshot(path=str(artifacts_dir / "review-phone-final.png"), full_page=True)
        bundle = api(f"/api/v1/reviews/{rid}/bundle.zip")
        assert bundle.status == 200
        path = tmp_path / "review.zip"
        path.write_bytes(bundle.body())
        with urllib.request.urlopen(live.base + "/api/v1/evidence/public-key") as resp:
            pem = resp.read()
        key_file = tmp_path / "collector.pem"
        key_file.write_bytes(pem)
        assert verify_bundle(path, parse_public(pem)).ok
        assert main(["evidence", "verify", str(path), "--public-key", str(key_file)]) == 0
        with zipfile.ZipFile(path) as zf:
            manifest = json.loads(zf.read("manifest.json"))
            doc = json.loads(zf.read("review.json"))
        assert manifest["review"]["total"] == review["total"] == doc["totals"]["total"]
        assert manifest["reviewer"]["actor"] == "user:village-reviewer" and manifest["reviewer"]["via"] == "session"
        assert script_errors == []
        raw = path.read_bytes()
        for at in range(0, len(raw), max(1, len(raw) // 60)):
            bad = tmp_path / "edited.zip"
            bad.write_bytes(raw[:at] + bytes([raw[at] ^ 0x20]) + raw[at + 1:])
            assert main(["evidence", "verify", str(bad), "--public-key", str(key_file)]) != 0, at
    finally:
        _close(pg)
