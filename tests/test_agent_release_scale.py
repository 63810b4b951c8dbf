"""The rollout at province scale (issue 23): a stage holding more points than one SQL statement may carry
parameters (PostgreSQL: 65,535; SQLite: 32,766 unless built with more) is still counted and judged. The
points, their latest results and the province's document are seeded straight into the real store (issuing
66,000 digests through the policy service would take minutes); the view and the judgement run as the
collector runs them. SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import insert

from agent.upgrade.state import DIGEST_MISMATCH, DOES_NOT_START, ROLLED_BACK
from agent.vocabulary import AGENT_UPGRADE, FAIL, OK
from collector.policy.documents import parse_document
from collector.releases import rollout
from collector.store import audit
from collector.store import models as m
from collector.store.releasemodels import AgentRelease

PROVINCE, VERSION, SHA = "甘肃省", "0.4.0", "b" * 64
POINTS = 66_000  # beyond the parameters one statement may carry: 65,535 on PostgreSQL, 32,766 in SQLite by default


def code_of(i: int) -> str:
    return f"62{i:010d}"


def _result(code: str, status: str, details: dict, now: datetime) -> dict:
    return dict(point_code=code, check=AGENT_UPGRADE, target="代理程序", status=status, value=None, unit=None,
                message="升级", details=details, observed_at=now, received_at=now, since=now,
                report_id="00000000-0000-4000-8000-000000000000")


def seed(store) -> None:
    now = datetime.now(timezone.utc)
    text = f"agent: {{version: '{VERSION}', window: '00:00-24:00'}}\n"
    points = [dict(code=code_of(i), name=f"服务点{i}", region_path=f"{PROVINCE}/市{i // 6000:02d}/县{i // 300:03d}/"
                   f"镇{i // 30:04d}/村{i // 5:05d}", profile="national-basic", report_interval_s=60, simulated=True,
                   created_at=now) for i in range(POINTS)]
    failed = {code_of(11): DOES_NOT_START, code_of(20_000): ROLLED_BACK, code_of(65_999): DIGEST_MISMATCH}
    results = [_result(code_of(i), FAIL if code_of(i) in failed else OK,
                       {"running": "0.3.0", "target": VERSION, "state": "failed", "sha256": SHA,
                        "reason": failed[code_of(i)]} if code_of(i) in failed else
                       {"running": VERSION, "target": VERSION, "state": "current"}, now) for i in range(POINTS)]
    with store.engine.begin() as conn:
        for k in range(0, POINTS, 5000):
            conn.execute(insert(m.Point), points[k:k + 5000])
            conn.execute(insert(m.LatestResult), results[k:k + 5000])
        conn.execute(insert(m.PolicyDocument).values(scope="region", key=PROVINCE, version=1, region_path=PROVINCE,
                                                     source=text, body=parse_document(text, "p.yaml").body, diff=[],
                                                     created_at=now, created_by="test"))
        conn.execute(insert(AgentRelease).values(version=VERSION, platform="linux-x86_64", file_name="pointwatch-agent",
                                                 size=1, sha256=SHA, manifest=b"{}", added_at=now))


def test_a_province_stage_beyond_one_statements_parameters_is_counted_and_judged(store):
    seed(store)
    (release,) = rollout.stats(store)["releases"]
    (stage,) = release["stages"]
    assert (stage["stage"], stage["points"], stage["failed"], stage["build_faults"]) == (PROVINCE, POINTS, 3, 2)
    assert release["failed_points"] == sorted([code_of(11), code_of(20_000), code_of(65_999)])
    # Two build faults of 66,000 points: judged, and below the minimum of three.
    assert rollout.evaluate(store, [code_of(11), code_of(20_000)], 0.0, 3) == []
    assert rollout.evaluate(store, [code_of(20_000)], 0.0, 2) == [(VERSION, PROVINCE)]
    (entry,) = audit.audit_entries(store, action="agent_release.pause")
    assert (entry["details"]["failed"], entry["details"]["points"], entry["details"]["stage"]) == (2, POINTS, PROVINCE)
    assert rollout.stats(store)["releases"][0]["paused_stages"] == [PROVINCE]
