"""Issue 18, items 10 and 13: what an agent's enrolment and a point list may bring in, and what a terminal
is shown. Enrolment is cleaned like ingest, throttled, audited with its source address and refused with
one answer for every bad code; the CLI never prints a control character; a point import refuses them;
``.``/``..`` are no region names; the SQLite files are the owner's alone."""

from __future__ import annotations

import io
import stat

import pytest
from fastapi.testclient import TestClient

from collector import cli
from collector.accounts.enrolling import enrol_throttle
from collector.app import create_app
from collector.registry.regions import RegionError, normalize_path
from collector.settings import Settings
from collector.store import Store, audit, enrolment, people, points
from collector.store import models as m

POINT, OTHER = "620102001001", "620102001002"
REGION = "甘肃省/兰州市/城关区/某镇/某村"
HOSTILE = "PC\u202egnp.exe\u200b\x07\x1b]0;pwned\x07\x1b[2J-01"


@pytest.fixture
def site(store, tmp_path):
    points.upsert_point(store, POINT, "某村医保服务点", REGION)
    points.upsert_point(store, OTHER, "另一村医保服务点", REGION)
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store)
    return TestClient(app), store


def _enrol(client, code, point=POINT, hostname="pc-01", fp=None):
    return client.post("/api/v1/enroll", json={"code": code, "point_code": point, "hostname": hostname,
                                               "fingerprint": fp or {"machine_id": "m1", "serial": "s1", "macs": []}})


def test_enrolment_input_is_cleaned_like_ingest_and_audited_with_its_source(site):
    client, store = site
    code = enrolment.create_enroll_code(store, POINT)
    r = _enrol(client, code, hostname=HOSTILE, fp={"machine_id": "id\u202e\x1b[31m", "serial": "S\u200bN\x07",
                                                    "macs": ["aa:bb\x1b[0m"]})
    assert r.status_code == 200, r.text
    with store.session() as s:
        agent = s.get(m.Agent, r.json()["agent_id"])
        stored = [agent.hostname, *agent.fingerprint.values()]
    text = repr(stored)
    for bad in ("\u202e", "\u200b", "\x07", "\x1b"):
        assert bad not in text, (bad, stored)
    assert agent.hostname == "PCgnp.exe\ufffd\ufffd]0;pwned\ufffd\ufffd[2J-01"
    entry = audit.audit_entries(store, "/", 5, None, "agent.enroll")[0]
    assert entry["source"] == "testclient" and "\x1b" not in repr(entry["details"])


def test_every_bad_enrolment_code_gets_one_answer_and_is_audited_and_throttled(site):
    client, store = site
    other = enrolment.create_enroll_code(store, OTHER)  # a live code, but another point's
    used = enrolment.create_enroll_code(store, POINT)
    assert _enrol(client, used).status_code == 200
    answers = [_enrol(client, c) for c in (other, used, "AAAAAA-BBBBBB-CCCCCC")]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert len({a.text for a in answers}) == 1  # "belongs to another point" no longer tells the code is valid
    failed = audit.audit_entries(store, "/", 10, None, "agent.enroll_failed")
    assert [e["details"]["reason"] for e in reversed(failed)] == ["other_point", "used", "unknown"]
    assert all(e["source"] == "testclient" and e["target"] == f"point:{POINT}" for e in failed)
    enrol_throttle(store).base_s = 1.0
    for _ in range(2):
        r = _enrol(client, "AAAAAA-BBBBBB-CCCCCC")
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    # while locked even the right code is refused unchecked, and that is on the record too
    assert _enrol(client, other, point=OTHER).status_code == 200  # another point is not locked
    fresh = enrolment.create_enroll_code(store, POINT)
    assert _enrol(client, fresh).status_code == 429
    assert audit.audit_entries(store, "/", 1, None, "agent.enroll_failed")[0]["details"]["reason"] == "locked"


@pytest.fixture
def run_cli(db_url, monkeypatch, capsysbinary):
    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)

    def run(*argv, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(list(argv))
        out = capsysbinary.readouterr()
        return code, out.out, out.err

    return run


def test_the_cli_never_writes_control_characters_to_the_terminal(run_cli, db_url):
    assert run_cli("db", "upgrade")[0] == 0
    store = Store(db_url)
    try:
        points.upsert_point(store, POINT, "某村医保服务点", REGION)
        enrolment.enroll(store, enrolment.create_enroll_code(store, POINT), POINT, HOSTILE, {})  # as stored before
        people.add_user(store, "mallory\x1b[8m", "p\x1b]0;x\x07", "h", "viewer", "/")
    finally:
        store.close()
    for argv in (("tokens", "list"), ("users", "list")):
        code, out, err = run_cli(*argv)
        assert code == 0
        for stream in (out, err):
            assert not any(b < 0x20 and b not in (0x09, 0x0A) or b == 0x7F for b in stream), stream
            assert "\u202e".encode() not in stream and "\u200b".encode() not in stream
    assert "\ufffd".encode() in run_cli("tokens", "list")[1]
    code, _, err = run_cli("points", "add", "--code", "X1", "--name", "村\x1b[2J", "--region", REGION)
    assert code == 1 and b"\x1b" not in err and "不能含控制字符".encode() in err


def test_point_import_refuses_control_and_invisible_characters_in_names(run_cli, tmp_path):
    assert run_cli("db", "upgrade")[0] == 0
    path = tmp_path / "points.csv"
    path.write_text("code,name,region,profile,address\n"
                    f"{POINT},某村\u202e服务点,{REGION},national-basic,\n"
                    f"{OTHER},另一村服务点,{REGION},national-basic,村委会\x1b[31m一楼\n"
                    "620102001003,第三\u200b村,甘肃省/兰州市/城关区/某镇/三村,national-basic,\n", encoding="utf-8")
    code, out, err = run_cli("points", "import", str(path))
    text = err.decode()
    assert code == 1, out
    assert "第 2 行，列 name：含控制字符" in text and "第 3 行，列 address：含控制字符" in text
    assert "第 4 行，列 name" in text and "\x1b" not in text


def test_dot_and_dotdot_are_not_region_names():
    for bad in (".", "..", "甘肃省/../兰州市", "甘肃省/./兰州市"):
        with pytest.raises(RegionError):
            normalize_path(bad)
    assert normalize_path("甘肃省/兰州市") == "甘肃省/兰州市"


def test_sqlite_database_files_are_private_to_their_owner(tmp_path):
    data = tmp_path / "data"
    store = Store.open(data)
    try:
        points.upsert_point(store, POINT, "某村医保服务点", REGION)  # a write, so the WAL exists
        files = [p for p in data.iterdir() if p.name.startswith("pointwatch.db")]
        assert {p.name for p in files} >= {"pointwatch.db", "pointwatch.db-wal"}
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, (p.name, oct(p.stat().st_mode))
    finally:
        store.close()
    (data / "pointwatch.db").chmod(0o644)  # an older store
    Store.open(data).close()
    assert stat.S_IMODE((data / "pointwatch.db").stat().st_mode) == 0o600
