"""Issue 18, item 7: the duty split is no longer self-declared. An admin minted a reviewer token for its
own region (no person named) and exported the evidence it is refused as admin; every principal now names
its person, and an admin cannot create for itself — or for nobody — a role it could not hold beside its
own (collector/accounts/duties.py has the exact rules)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.app import create_app
from collector.settings import Settings
from collector.store import StoreError, audit, points

COUNTY = "甘肃省/兰州市/城关区"
POINT = "620102001001"


@pytest.fixture
def site(store, tmp_path):
    points.upsert_point(store, POINT, "某村医保服务点", COUNTY + "/某镇/某村")
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data"), store=store))
    admin = {"Authorization": "Bearer " + users.create_token(store, "admin", COUNTY, person="张三")}
    return client, store, admin


def _zip(client, headers):
    return client.get(f"/api/v1/evidence/points/{POINT}.zip?from=2026-01-01&to=2026-01-02", headers=headers)


def test_an_admin_cannot_mint_itself_a_reviewer_token_for_its_own_region(site):
    client, store, admin = site
    assert _zip(client, admin).status_code == 403  # the admin may not export evidence
    # The attack: a reviewer token for its own region with no person named, then the export.
    r = client.post("/api/v1/tokens", json={"role": "reviewer", "region": COUNTY}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"]["code"] == "person_required", r.text
    r = client.post("/api/v1/tokens", json={"role": "reviewer", "region": COUNTY + "/某镇", "person": "张三"},
                    headers=admin)
    assert r.status_code == 409 and r.json()["detail"]["code"] == "duty_conflict"
    r = client.post("/api/v1/users", json={"username": "zhang-rev", "password": "long-enough-pw",
                                           "role": "reviewer", "region": COUNTY}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"]["code"] == "person_required"
    r = client.post("/api/v1/users", json={"username": "zhang-rev", "password": "long-enough-pw",
                                           "role": "reviewer", "region": COUNTY, "person": "张三"}, headers=admin)
    assert r.status_code == 409
    # For another person it is allowed, and the record names both the admin who made it and the person.
    r = client.post("/api/v1/tokens", json={"role": "reviewer", "region": COUNTY, "person": "李四"}, headers=admin)
    assert r.status_code == 201, r.text
    reviewer = {"Authorization": "Bearer " + r.json()["token"]}
    assert _zip(client, reviewer).status_code == 200
    entry = audit.audit_entries(store, "/", 1, None, "token.create")[0]
    assert entry["details"]["person"] == "李四" and entry["actor"].startswith("token:")
    # Viewers are people too: named, or refused.
    r = client.post("/api/v1/tokens", json={"role": "viewer", "region": COUNTY}, headers=admin)
    assert r.status_code == 422 and r.json()["detail"]["code"] == "person_required"


def test_an_admin_of_unknown_person_cannot_create_reviewers_of_its_region(site):
    client, store, _ = site
    legacy = {"Authorization": "Bearer " + users.create_token(store, "admin", COUNTY)}  # made before persons
    r = client.post("/api/v1/tokens", json={"role": "reviewer", "region": COUNTY, "person": "李四"}, headers=legacy)
    assert r.status_code == 403 and r.json()["detail"]["code"] == "duty_self"
    # A region that does not overlap its own is not its to guard; a viewer is no conflict either.
    points.upsert_point(store, "620103001001", "七里河区某点", "甘肃省/兰州市/七里河区/某镇/某村")
    root = {"Authorization": "Bearer " + users.create_token(store, "admin", "/", person="王五")}
    r = client.post("/api/v1/tokens", json={"role": "reviewer", "region": "甘肃省/兰州市/七里河区", "person": "赵六"},
                    headers=root)
    assert r.status_code == 201
    r = client.post("/api/v1/tokens", json={"role": "viewer", "region": COUNTY, "person": "李四"}, headers=legacy)
    assert r.status_code == 201


def test_the_rule_holds_for_tokens_and_users_alike_from_any_side(store):
    users.create_token(store, "reviewer", COUNTY, person="李四")
    with pytest.raises(StoreError) as e:  # a user after a token
        users.create_user(store, "lisi", "long-enough-pw", "admin", "甘肃省", person="李四")
    assert e.value.code == "duty_conflict"
    users.create_user(store, "wangwu", "long-enough-pw", "admin", "甘肃省/兰州市", person="王五")
    with pytest.raises(StoreError) as e:  # a token after a user
        users.create_token(store, "reviewer", COUNTY + "/某镇", person="王五")
    assert e.value.code == "duty_conflict"


def test_the_command_line_requires_a_person(db_url, monkeypatch, capsys):
    from collector import cli

    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)
    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["tokens", "create", "--role", "reviewer", "--region", COUNTY]) == 1
    assert "须注明" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --person is required for a user
        cli.main(["users", "create", "--username", "x", "--role", "viewer", "--password-stdin"])
    assert cli.main(["tokens", "create", "--role", "reviewer", "--region", COUNTY, "--person", "李四"]) == 0


def test_an_agent_token_names_no_person_and_every_refusal_says_who_where_and_why(site):
    """docs/en/operations.md ("People"): ``--person`` is not needed for an agent's token (a machine's), every
    other principal names its person; a refusal is a clear error naming what was wrong (the house rule) —
    the person and the regions in conflict, and the duty split (操作、管理、监督) it enforces."""
    client, store, admin = site
    r = client.post("/api/v1/tokens", json={"role": "agent", "region": COUNTY + "/某镇/某村", "point": POINT},
                    headers=admin)
    assert r.status_code == 201, r.text
    r = client.post("/api/v1/tokens", json={"role": "viewer", "region": COUNTY}, headers=admin)
    assert r.status_code == 422 and "person" in r.json()["detail"]["message"]
    assert "操作、管理、监督" in r.json()["detail"]["message"]
    # An existing reviewer 王五 of a town beneath the county cannot become admin of the county as well.
    assert client.post("/api/v1/tokens", json={"role": "reviewer", "region": COUNTY + "/某镇", "person": "王五"},
                       headers=admin).status_code == 201
    with pytest.raises(StoreError) as refused:
        users.create_token(store, "admin", COUNTY, person="王五")
    message = str(refused.value)
    assert refused.value.code == "duty_conflict"
    assert "王五" in message and COUNTY + "/某镇" in message and COUNTY in message and "评审员" in message
    assert "管理员" in message and "操作、管理、监督" in message
    # For oneself, through the API: the message names the person and both roles.
    r = client.post("/api/v1/tokens", json={"role": "reviewer", "region": COUNTY, "person": "张三"}, headers=admin)
    detail = r.json()["detail"]
    assert r.status_code == 409 and detail["code"] == "duty_conflict"
    assert "张三" in detail["message"] and "管理员" in detail["message"] and "评审员" in detail["message"]


def test_an_admin_of_unknown_person_is_told_why_it_cannot_create_a_reviewer(site):
    client, store, _ = site
    nameless = {"Authorization": "Bearer " + users.create_token(store, "admin", COUNTY + "/某镇")}
    r = client.post("/api/v1/tokens", json={"role": "reviewer", "region": COUNTY + "/某镇/某村", "person": "李四"},
                    headers=nameless)
    detail = r.json()["detail"]
    assert r.status_code == 403 and detail["code"] == "duty_self"
    assert "管理员" in detail["message"] and "评审员" in detail["message"] and "人员" in detail["message"]


def test_principals_that_name_no_person_are_not_one_person(site):
    """Rule 2 is about one named person: two principals made without a person (the collector's own set-up
    may leave it out) are nobody in particular, so neither blocks the other."""
    _, store, _ = site
    users.create_token(store, "reviewer", COUNTY)
    users.create_token(store, "admin", COUNTY + "/某镇")  # no duty_conflict between two nameless tokens
    users.create_token(store, "viewer", COUNTY, person="王五")
    users.create_token(store, "viewer", COUNTY, person="王五")  # viewers conflict with nobody
