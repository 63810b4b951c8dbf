"""Scoring counts only results checked against an issued policy, and the evidence bundle records the period's
policy digests and the documents behind them (and still verifies)."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta, timezone

from agent.wire import Fingerprint
from collector.evidence.bundle import export
from collector.evidence.keys import load_or_create
from collector.evidence.period import parse_period
from collector.evidence.verify import verify_bundle
from collector.policy import service
from collector.scoring.scores import point_sheet
from collector.store import points
from collector.store.audit import Actor
from tests.helpers import ingest, make_report

COUNTY = "甘肃省/兰州市/城关区"
STATUSES = {"net.core.tcp": "ok", "net.core.icmp": "ok", "isolation.internet": "ok", "isolation.interfaces": "ok",
            "identity.fingerprint": "ok", "usage.processes": "ok", "usage.removable_media": "ok",
            "device.printer": "ok", "device.kiosk": "ok"}
FP = Fingerprint("m-1", "SN1", ["00:11:22:33:44:55"])
POLICY = "core_network: {timeout: 1s, tcp: [{target: '10.10.1.20:443'}]}\n"


def _fleet(store, start):
    for code in ("P-OK", "P-NONE", "P-FORGED"):
        points.upsert_point(store, code, code, COUNTY + "/某镇/" + code, profile="lanzhou-basic-2023",
                            created_at=start)
    service.set_region(store, COUNTY, POLICY, "county.yaml", Actor("user:admin"))
    digest = service.show_point(store, "P-OK").digest
    for i in range(30):
        at = start + timedelta(minutes=i)
        for code, stamp in (("P-OK", digest), ("P-NONE", None), ("P-FORGED", "sha256:" + "e" * 64)):
            report = make_report(code, seq=i + 1, statuses=STATUSES, collected_at=at, fingerprint=FP)
            report.policy_digest = stamp
            ingest(store, [report], received_at=at + timedelta(seconds=2), policy=False)
    return digest


def test_only_reports_checked_against_an_issued_policy_earn_automatic_points(store):
    start = (datetime.now(timezone.utc) - timedelta(minutes=31)).replace(second=0, microsecond=0)
    _fleet(store, start)
    sheets = {code: point_sheet(store, code, start, start + timedelta(minutes=30))
              for code in ("P-OK", "P-NONE", "P-FORGED")}
    assert sheets["P-OK"].earned > 0
    # The same results, but checked against an exam nobody issued (none, or a forged one): not evidence.
    automatic = {i.id for i in sheets["P-OK"].items if i.state in ("met", "not_met")}
    for code in ("P-NONE", "P-FORGED"):
        met = {i.id for i in sheets[code].items if i.state == "met" and i.id in automatic}
        assert met < {i.id for i in sheets["P-OK"].items if i.state == "met"}, code
        assert sheets[code].earned < sheets["P-OK"].earned, code


def test_the_bundle_records_the_periods_digests_and_the_documents(store, tmp_path):
    start = (datetime.now(timezone.utc) - timedelta(minutes=31)).replace(second=0, microsecond=0)
    digest = _fleet(store, start)
    key = load_or_create(tmp_path / "keys")
    period = parse_period(start.isoformat(), (datetime.now(timezone.utc) + timedelta(minutes=1)).isoformat())
    path = tmp_path / "b.zip"
    with open(path, "wb") as fh:
        manifest = export(store, key, fh, period, codes=["P-OK"])
    assert manifest["points"][0]["policy_digests"] == [digest]
    with zipfile.ZipFile(path) as zf:
        record = json.loads(zf.read("points/P-OK/policy.json"))
    assert [i["digest"] for i in record["issued"]] == [digest]
    assert record["issued"][0]["policy"]["core_network"]["tcp"] == [{"target": "10.10.1.20:443"}]
    (doc,) = record["documents"]
    assert (doc["scope"], doc["key"], doc["version"], doc["source"], doc["by"]) == (
        "region", COUNTY, 1, POLICY, "user:admin")
    assert verify_bundle(path, key.public_key()).ok


def test_an_agents_own_verdict_rows_are_never_the_reports_verdict(store):
    # Ingest refuses them now (tests/test_hostile_ingest.py); a row that got in anyway (stored before that
    # refusal) must not stand for the collector's: the report's verdict is the collector's own agent.policy row.
    from agent.wire import Result
    from collector.store import observations, queries

    start = (datetime.now(timezone.utc) - timedelta(minutes=31)).replace(second=0, microsecond=0)
    for code in ("P-NONE", "P-SELF"):
        points.upsert_point(store, code, code, COUNTY + "/某镇/" + code, profile="lanzhou-basic-2023",
                            created_at=start)
    service.set_region(store, COUNTY, POLICY, "county.yaml", Actor("user:admin"))
    for i in range(30):
        at = start + timedelta(minutes=i)
        for code in ("P-NONE", "P-SELF"):
            report = make_report(code, seq=i + 1, statuses=STATUSES, collected_at=at, fingerprint=FP)
            if code == "P-SELF":  # no digest, but its own "ok" verdicts
                report.results += [Result(check=check, target=target, status="ok", message="x", observed_at=at)
                                   for check, target in (("agent.policy", "policy"),
                                                         ("identity.matches_enrolment", "enrolment"))]
            ingest(store, [report], received_at=at + timedelta(seconds=2), policy=False)
    end = start + timedelta(minutes=30)
    period = {code: point_sheet(store, code, start, end) for code in ("P-NONE", "P-SELF")}
    now = {code: point_sheet(store, code) for code in ("P-NONE", "P-SELF")}
    assert period["P-SELF"].earned == period["P-NONE"].earned
    assert now["P-SELF"].earned == now["P-NONE"].earned
    # Each result is read once, with the collector's verdict: none (collected before the point's first policy,
    # naming none), never the agent's "ok".
    rows = list(observations.observations(store, "P-SELF", start, end + timedelta(minutes=1)))
    agents = [r for r in rows if r[1] == "net.core.tcp"]
    assert len(agents) == 30 and {r[4] for r in agents} == {None}
    assert [r for r in rows if r[1] == "identity.matches_enrolment"] == []  # nothing pinned: the agent's is not read
    streamed = [r for r in queries.stream_observations(store, "P-SELF", start, end + timedelta(minutes=1))
                if r[1] == "net.core.tcp"]
    assert len(streamed) == 30 and {r[4] for r in streamed} == {None}
