"""Region paths: a principal of 城关区 sees 城关区 and what lies beneath it, and nothing of a county whose name
merely starts the same way (城关区二). Region paths are names joined by ``/`` (README "People": every principal
is bound to a region node and sees only beneath it).

Guards the planted bug "regions.is_within drops the ``/`` boundary" (``城关区二/…`` counted as inside
``城关区``): every fixture here pairs names that share a prefix, which the rest of the suite never did.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from collector.accounts import users
from collector.app import create_app
from collector.registry.regions import RegionError, ancestors, confine, is_within, normalize_path, split_path
from collector.settings import Settings
from collector.store import points

CITY = "甘肃省/兰州市"
COUNTY = "甘肃省/兰州市/城关区"
TWIN = "甘肃省/兰州市/城关区二"  # shares COUNTY's name as a prefix; a different county
POINT, TWIN_POINT = "620102001001", "620199001001"
TWIN_NAME = "城关区二的服务点"


@pytest.mark.parametrize("path, scope, inside", [
    (COUNTY, COUNTY, True),
    (COUNTY + "/某镇/某村", COUNTY, True),
    (TWIN, COUNTY, False),
    (TWIN + "/某镇", COUNTY, False),
    (COUNTY, TWIN, False),
    (CITY, COUNTY, False),
    (COUNTY, CITY, True),
    (TWIN + "/某镇", CITY, True),
    ("甘肃省/兰州", CITY, False),  # "兰州" is a prefix of "兰州市", not the same node
    (COUNTY, "/", True),
])
def test_is_within_respects_the_slash_boundary(path, scope, inside):
    """Guards: is_within without the ``/`` boundary."""
    assert is_within(path, scope) is inside


def test_confine_never_widens_to_a_prefix_sibling():
    """Guards: is_within without the ``/`` boundary (confine is built on it)."""
    assert confine(TWIN, COUNTY) is None
    assert confine(TWIN + "/某镇", COUNTY) is None
    assert confine(CITY, COUNTY) == COUNTY
    assert confine(COUNTY + "/某镇", COUNTY) == COUNTY + "/某镇"


# The path rules as docs/en/operations.md states them ("Region paths"): at most five names (省/市/县/镇/村),
# each at most 60 characters, no backslash, no control or invisible character, never "." or "..".
FIVE = "甘肃省/兰州市/城关区/某镇/某村"


def test_a_path_is_its_names_joined_by_slashes():
    assert split_path(COUNTY) == ["甘肃省", "兰州市", "城关区"]
    assert split_path(" /甘肃省 / 兰州市/ ") == ["甘肃省", "兰州市"]
    assert split_path("Xian Shi/Xigu Qu") == ["Xian Shi", "Xigu Qu"]  # kept as written, inner spaces too
    assert normalize_path("/Xian/Xigu/") == "Xian/Xigu"
    assert normalize_path(" 甘肃省/兰州市 ") == CITY
    assert normalize_path("") == "/" and normalize_path("/") == "/"
    assert ancestors(COUNTY) == ["甘肃省", CITY, COUNTY]
    assert ancestors("/") == []


def test_a_path_has_at_most_five_names_of_at_most_sixty_characters():
    assert normalize_path(FIVE) == FIVE
    with pytest.raises(RegionError) as deep:
        normalize_path(FIVE + "/某组")
    assert FIVE + "/某组" in str(deep.value)  # the error names the path it refused
    longest = "村" * 60
    assert normalize_path(f"{CITY}/{longest}") == f"{CITY}/{longest}"
    with pytest.raises(RegionError) as long:
        normalize_path(f"{CITY}/{longest}村")
    assert longest + "村" in str(long.value)


@pytest.mark.parametrize("name", ["城关\\区", "城关\x00区", "城关\u202e区", "城\u200b关区", ".", ".."])
def test_a_name_with_a_backslash_an_invisible_character_or_a_dot_path_is_refused(name):
    with pytest.raises(RegionError) as refused:
        normalize_path(f"{CITY}/{name}/某镇")
    assert name in str(refused.value) and CITY in str(refused.value)


def test_names_that_merely_contain_dots_or_sit_beside_a_refused_one_are_fine():
    assert normalize_path(f"{CITY}/城关区.老城") == f"{CITY}/城关区.老城"
    assert normalize_path(f"{CITY}/...") == f"{CITY}/..."


def test_the_store_scope_selects_the_region_and_its_children_only(store):
    """The SQL side of is_within (collector/store/regionscope.py) keeps the same ``/`` boundary."""
    from sqlalchemy import select

    from collector.store import models as m
    from collector.store.regionscope import scoped

    for code, region in ((POINT, COUNTY + "/某镇/某村"), ("620102001000", COUNTY), (TWIN_POINT, TWIN + "/某镇/某村")):
        points.upsert_point(store, code, "服务点", region)
    with store.session() as s:
        def codes(scope):
            return set(s.scalars(scoped(select(m.Point.code), m.Point.region_path, scope)))

        assert codes(COUNTY) == {POINT, "620102001000"}
        assert codes(TWIN) == {TWIN_POINT}
        assert codes("/") == {POINT, "620102001000", TWIN_POINT}


def test_the_store_scope_takes_names_literally_whatever_characters_follow_or_they_hold(store):
    """Beneath 城关区 means beneath that name exactly: not 城关区0, 城关区1 or 城关区A (characters that sort
    right after '/' and before letters), and a name holding ``_`` or ``%`` is no wildcard (on PostgreSQL the
    scope is a LIKE, on SQLite a range: docs/en/operations.md "Region paths")."""
    from sqlalchemy import select

    from collector.store import models as m
    from collector.store.regionscope import scoped

    inside = {"620102001001": COUNTY + "/某镇/某村"}
    beside = {"620102001002": COUNTY + "0/某镇", "620102001003": COUNTY + "1/某镇", "620102001004": COUNTY + "A/某镇",
              "620102001005": COUNTY + "XX0/某镇"}
    for code, region in {**inside, **beside}.items():
        points.upsert_point(store, code, "服务点", region)
    with store.session() as s:
        def codes(scope):
            return set(s.scalars(scoped(select(m.Point.code), m.Point.region_path, scope)))

        assert codes(COUNTY) == set(inside)
        assert codes(COUNTY + "1") == {"620102001003"}
        assert codes(CITY + "/城_区") == set() and codes(CITY + "/城%") == set() and codes(CITY + "/%") == set()
        assert codes(CITY) == set(inside) | set(beside)


def test_a_county_principal_sees_nothing_of_a_county_sharing_its_name_prefix(store, tmp_path):
    """Guards: is_within without the ``/`` boundary, end to end through the API and the pages."""
    points.upsert_point(store, POINT, "城关区某村服务点", COUNTY + "/某镇/某村")
    points.upsert_point(store, TWIN_POINT, TWIN_NAME, TWIN + "/某镇/某村")
    client = TestClient(create_app(Settings(data_dir=tmp_path / "data"), store=store), follow_redirects=False)
    for role in ("viewer", "reviewer", "admin"):
        headers = {"Authorization": "Bearer " + users.create_token(store, role, COUNTY)}
        listed = client.get("/api/v1/points", headers=headers)
        assert listed.status_code == 200
        assert {p["code"] for p in listed.json()["points"]} == {POINT}, role
        for path in (f"/api/v1/points/{TWIN_POINT}", f"/api/v1/points/{TWIN_POINT}/results",
                     f"/api/v1/scores/{TWIN_POINT}"):
            assert client.get(path, headers=headers).status_code == 404, (role, path)
        assert client.get(f"/api/v1/points/{POINT}", headers=headers).status_code == 200
        region = client.get("/api/v1/points", params={"region": TWIN}, headers=headers)
        assert TWIN_POINT not in region.text and TWIN_NAME not in region.text, role
        alerts = client.get("/api/v1/alerts", params={"region": TWIN, "state": "all"}, headers=headers)
        assert alerts.status_code in (200, 403, 404) and TWIN_POINT not in alerts.text
    reviewer = {"Authorization": "Bearer " + users.create_token(store, "reviewer", COUNTY, person="r2")}
    r = client.get(f"/api/v1/evidence/points/{TWIN_POINT}.zip", params={"from": "2026-01-01", "to": "2026-01-02"},
                   headers=reviewer)
    assert r.status_code == 404
    admin = {"Authorization": "Bearer " + users.create_token(store, "admin", COUNTY, person="a2")}
    assert client.post("/api/v1/enroll-codes", json={"point": TWIN_POINT}, headers=admin).status_code in (403, 404)
    assert client.post("/api/v1/tokens", json={"role": "viewer", "region": TWIN},
                       headers=admin).status_code in (403, 404)
