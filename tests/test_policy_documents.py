"""Policy documents at the collector: merged from the root down, validated with the agent's own validator,
versioned and audited; a change that would break any point beneath is refused naming it, and changes nothing."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from collector.policy import documents, service
from collector.policy.documents import PolicyError
from collector.store import audit, policies
from collector.store import models as m
from collector.store import points as points_repo
from collector.store.audit import Actor

COUNTY = "甘肃省/兰州市/城关区"
VILLAGE_A, VILLAGE_B = COUNTY + "/某镇/甲村", COUNTY + "/某镇/乙村"
ADMIN = Actor("user:county-admin", "127.0.0.1")

COUNTY_POLICY = """\
intervals: {network: 60s, compliance: 5m}
core_network:
  timeout: 1s
  icmp: [{target: 10.10.0.1, name: 核心网关}]
  tcp: [{target: "10.10.1.20:443", name: 省医保信息平台}]
isolation:
  internet_canaries: [{target: "223.5.5.5:53"}]
  allowed_subnets: [10.0.0.0/8]
usage:
  forbidden_software: default
  allowed_ports: [22]
"""


@pytest.fixture
def county(store):
    points_repo.upsert_point(store, "P-A", "甲村服务点", VILLAGE_A)
    points_repo.upsert_point(store, "P-B", "乙村服务点", VILLAGE_B)
    service.set_region(store, COUNTY, COUNTY_POLICY, "county.yaml", ADMIN)
    return store


def test_merge_maps_key_by_key_and_replaces_lists_then_adds_registered_devices():
    eff = documents.merge(
        [("/", {"core_network": {"timeout": "1s", "count": 3, "icmp": [{"target": "10.0.0.1"}]}}),
         (COUNTY, {"core_network": {"timeout": "2s", "icmp": [{"target": "10.0.0.2"}]}, "usage": {"allowed_ports": [22]}})],
        devices=[{"kind": "kiosk", "name": "一体机", "icmp": "10.10.5.21"}])
    assert eff.policy == {"core_network": {"timeout": "2s", "count": 3, "icmp": [{"target": "10.0.0.2"}]},
                          "usage": {"allowed_ports": [22]},
                          "devices": [{"kind": "kiosk", "name": "一体机", "icmp": "10.10.5.21"}]}
    assert eff.origin == {"core_network.timeout": COUNTY, "core_network.count": "/",
                          "core_network.icmp": COUNTY, "usage.allowed_ports": COUNTY, "devices": "registry"}


def test_digest_is_the_contracts_canonical_sha256():
    import hashlib
    import json

    policy = {"usage": {"staff_accounts": ["张三"]}, "intervals": {"network": "60s"}}
    canonical = json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    assert documents.digest(policy) == "sha256:" + hashlib.sha256(canonical).hexdigest()


def test_a_village_override_wins_and_show_names_each_level(county):
    service.set_region(county, VILLAGE_B, "core_network:\n  timeout: 3s\n", "village.yaml", ADMIN)
    a, b = service.show_point(county, "P-A"), service.show_point(county, "P-B")
    assert a.policy["core_network"]["timeout"] == "1s" and b.policy["core_network"]["timeout"] == "3s"
    assert b.policy["core_network"]["tcp"] == [{"target": "10.10.1.20:443", "name": "省医保信息平台"}]
    text = documents.annotated_yaml(b)
    assert f"timeout: 3s  # {VILLAGE_B}" in text and "count" not in text
    assert f"allowed_ports: [22]  # {COUNTY}" in text
    issued = policies.issued(county, ["P-A", "P-B"])
    assert issued["P-B"][0].digest == b.digest and issued["P-B"][0].superseded_at is None
    assert issued["P-B"][1].superseded_at is not None  # the county-only digest it had before
    assert [i.digest for i in issued["P-A"]] == [a.digest]  # P-A's policy did not change


def test_every_change_is_versioned_and_audited_with_its_diff(county):
    service.set_region(county, COUNTY, COUNTY_POLICY.replace("allowed_ports: [22]", "allowed_ports: [22, 443]"),
                       "county.yaml", ADMIN)
    rows = policies.history(county, COUNTY)
    assert [(r["key"], r["version"]) for r in rows] == [(COUNTY, 2), (COUNTY, 1)]
    assert rows[0]["by"] == "user:county-admin"
    assert rows[0]["diff"] == [{"path": "usage.allowed_ports", "before": [22], "after": [22, 443]}]
    entry = audit.audit_entries(county, COUNTY, action="policy.set")[0]
    assert entry["actor"] == "user:county-admin" and entry["details"]["diff"] == rows[0]["diff"]
    assert audit.verify_audit(county).ok


def test_a_document_the_agent_would_refuse_is_refused_with_file_line_and_field(county):
    bad = COUNTY_POLICY.replace('"10.10.1.20:443"', '"10.10.1.20:70000"')
    with pytest.raises(PolicyError) as caught:
        service.set_region(county, COUNTY, bad, "county.yaml", ADMIN)
    assert caught.value.field == "core_network.tcp[0].target"
    assert caught.value.line == 5 and str(caught.value).startswith("county.yaml:5: core_network.tcp[0].target:")
    assert "70000" in str(caught.value)
    assert [r["version"] for r in policies.history(county, COUNTY)] == [1]  # nothing changed


@pytest.mark.parametrize("text, field", [("point: {code: x}\n", "point"), ("state_dir: /tmp\n", "state_dir"),
                                         ("usage: [1]\n", "usage"), ("core_network: {timeout: 1s\n", "")])
def test_bootstrap_keys_and_malformed_documents_are_refused(county, text, field):
    with pytest.raises(PolicyError) as caught:
        service.set_region(county, COUNTY, text, "bad.yaml", ADMIN)
    assert caught.value.field == field


@pytest.mark.parametrize("text, field, line", [("&a [*a]\n", "[0]", 1),
                                               ("core_network:\n  &a {timeout: *a}\n", "core_network.timeout", 2),
                                               ("usage: " + "[" * 5000 + "]" * 5000 + "\n", "", None)])
def test_a_self_referencing_alias_or_endless_nesting_is_refused_not_a_crash(county, text, field, line):
    # Such a document never ends when expanded (it raised RecursionError: a 500 on PUT): refused like any other.
    with pytest.raises(PolicyError) as caught:
        service.set_region(county, COUNTY, text, "bad.yaml", ADMIN)
    assert (caught.value.field, caught.value.line) == (field, line)
    assert "alias" in str(caught.value) or "nested too deeply" in str(caught.value)
    assert [r["version"] for r in policies.history(county, COUNTY)] == [1]  # nothing changed


def test_a_change_that_breaks_one_point_beneath_is_refused_naming_it(county):
    # The village's own document sets an allow-list the county's catalogue does not know; the county's
    # document is fine for every other point, and the change that would break P-B names P-B and the field.
    service.set_point(county, "P-B", "usage:\n  allowed_software: [todesk]\n", "p-b.yaml", ADMIN)
    with pytest.raises(PolicyError) as caught:
        service.set_region(county, COUNTY, COUNTY_POLICY.replace("forbidden_software: default",
                                                                 "forbidden_software: none"), "county.yaml", ADMIN)
    assert caught.value.point == "P-B" and caught.value.field == "usage.allowed_software[0]"
    assert "P-B" in str(caught.value)
    with county.session() as s:
        assert s.scalar(select(m.PolicyDocument.version).where(m.PolicyDocument.key == COUNTY)
                        .order_by(m.PolicyDocument.version.desc()).limit(1)) == 1


def test_a_point_document_needs_a_registered_point(county):
    with pytest.raises(PolicyError) as caught:
        service.set_point(county, "NOPE", "intervals: {network: 60s}\n", "x.yaml", ADMIN)
    assert caught.value.code == "no_such_point"


def test_a_point_moved_to_another_village_is_issued_that_villages_policy(county):
    service.set_region(county, VILLAGE_B, "core_network:\n  timeout: 3s\n", "village.yaml", ADMIN)
    before = policies.current_issue(county, "P-A").digest
    points_repo.upsert_point(county, "P-A", "甲村服务点", VILLAGE_B)
    assert service.reissue(county, ["P-A"]) == 1
    after = policies.current_issue(county, "P-A").digest
    assert after != before and after == service.show_point(county, "P-A").digest == policies.current_issue(
        county, "P-B").digest
    assert service.reissue(county, ["P-A"]) == 0  # nothing changed since
