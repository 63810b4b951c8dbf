"""A release's file travels with the database: two real collector processes on one PostgreSQL serve what
either added (whole and ranged), a replacement on one is what the other serves next, and a file an earlier
version kept in one host's data dir is imported by that collector's start, checked against its release.
The import itself is also run on SQLite and PostgreSQL against a store migrated from before the chunks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import httpx
import pytest
import yaml
from sqlalchemy import text

from collector.accounts import users
from collector.policy import service as policy_service
from collector.releases import manifest as mf
from collector.store import Store, StoreError, points, releasefiles
from collector.store import releases as rows
from collector.store.audit import Actor
from tests.conftest import REPO, free_port
from tests.helpers import POINT, REGION
from tests.test_store_two_collectors import pg_store_url, wait_ready  # noqa: F401 - pg_store_url is a fixture

VERSION, PLATFORM, OLD = "0.2.1", "linux-x86_64", "0.1.9"


def _old_style_release(store: Store, data_dir, version: str, data: bytes, on_disk: bytes | None = None) -> str:
    """A release row as a collector before the chunks held it: the row, and its file in the data dir only."""
    sha = hashlib.sha256(data).hexdigest()
    with store.engine.begin() as conn:
        conn.execute(text("INSERT INTO agent_releases (version, platform, file_name, size, sha256, manifest, added_at) "
                          "VALUES (:v, :p, 'pointwatch-agent', :n, :h, :m, :t)"),
                     {"v": version, "p": PLATFORM, "n": len(data), "h": sha, "m": b"{}",
                      "t": "2026-01-01 00:00:00+00:00"})
    folder = data_dir / "releases"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / sha).write_bytes(data if on_disk is None else on_disk)
    return sha


def _read(store: Store, sha: str, size: int) -> bytes:
    releasefiles.check(store, sha, size)
    return b"".join(bytes(p) for p in releasefiles.read(store, sha, size, 0, size - 1))


def test_files_kept_in_the_data_dir_are_imported_checked_and_kept(db_url, tmp_path, caplog):
    store = Store(db_url)
    try:
        store.upgrade("0009")
        data_dir = tmp_path / "data"
        good = os.urandom(2 * releasefiles.CHUNK + 5)
        good_sha = _old_style_release(store, data_dir, OLD, good)
        bad = os.urandom(3000)  # the file on disk is not the release's any more
        bad_sha = _old_style_release(store, data_dir, "0.1.8", bad, on_disk=bad[:-1] + bytes([bad[-1] ^ 1]))
        gone_sha = hashlib.sha256(b"gone").hexdigest()  # a release whose file this host never had
        with store.engine.begin() as conn:
            conn.execute(text("INSERT INTO agent_releases (version, platform, file_name, size, sha256, manifest, "
                              "added_at) VALUES ('0.1.7', :p, 'f', 4, :h, :m, :t)"),
                         {"p": PLATFORM, "h": gone_sha, "m": b"{}", "t": "2026-01-01 00:00:00+00:00"})
        store.upgrade()
        assert releasefiles.import_files(store, data_dir) == {good_sha: "imported", bad_sha: "refused",
                                                              gone_sha: "missing"}
        assert _read(store, good_sha, len(good)) == good
        with store.session() as s:
            assert releasefiles.layout_problem(s, bad_sha, 3000) == (0, "chunk 0 of 1 missing")
        assert "release_file_import_refused" in caplog.text and bad_sha in caplog.text
        assert "release_file_missing" in caplog.text and gone_sha in caplog.text
        # nothing on disk is removed (a collector of the earlier version may still serve from it)
        assert sorted(p.name for p in (data_dir / "releases").iterdir()) == sorted([good_sha, bad_sha])
        # a second start finds the file held and writes nothing
        assert releasefiles.import_files(store, data_dir)[good_sha] == "held"
    finally:
        store.close()


def test_a_file_that_is_not_the_one_checked_stores_nothing(store, tmp_path):
    data = os.urandom(releasefiles.CHUNK + 10)
    source = tmp_path / "copy"
    for written in (data[:-1] + b"!", data + b"more", data[:-1]):  # changed, longer, shorter
        source.write_bytes(written)
        with pytest.raises(StoreError) as exc:
            rows.add(store, VERSION, PLATFORM, "f", len(data), hashlib.sha256(data).hexdigest(), b"{}", Actor("t"),
                     source)
        assert exc.value.code == "release_file_changed"
        assert rows.list_releases(store) == []
        with store.session() as s:
            assert s.scalar(text("SELECT count(*) FROM agent_release_chunks")) == 0
    source.write_bytes(data)
    assert rows.add(store, VERSION, PLATFORM, "f", len(data), hashlib.sha256(data).hexdigest(), b"{}", Actor("t"),
                    source)[0] == "added"
    assert _read(store, hashlib.sha256(data).hexdigest(), len(data)) == data


def _collector(url: str, data, port: int, public_key: str) -> subprocess.Popen:
    (data / "collector.yaml").write_text(yaml.safe_dump({"retention": {"interval_s": 3600},
                                                         "agent_releases": {"public_keys": [public_key]}}),
                                         encoding="utf-8")
    env = {**os.environ, "POINTWATCH_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    log = open(data / "log.txt", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([sys.executable, "-m", "collector.cli", "--config", str(data / "collector.yaml"),
                             "--data-dir", str(data), "serve", "--port", str(port)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))


def _add(url: str, data, build, *extra: str) -> None:
    env = {**os.environ, "POINTWATCH_DATABASE_URL": url, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-m", "collector.cli", "--config", str(data / "collector.yaml"), "--data-dir",
                    str(data), "agent-release", "add", str(build), "--version", VERSION, "--platform", PLATFORM,
                    *extra], check=True, env=env, capture_output=True, timeout=120, cwd=str(REPO))


def _signed_build(tmp_path, private, size: int) -> tuple[bytes, object]:
    build = tmp_path / "offline" / "pointwatch-agent"
    data = os.urandom(size)
    build.write_bytes(data)
    build.with_name("pointwatch-agent.release.json").write_bytes(mf.sign(build, VERSION, PLATFORM,
                                                                         mf.load_private(private)))
    return data, build


@pytest.mark.timeout(300)
def test_two_collectors_serve_the_release_either_added(pg_store_url, tmp_path):  # noqa: F811 - the fixture
    (tmp_path / "offline").mkdir()
    private = tmp_path / "offline" / "release.pem"
    key = mf.keygen(private)
    setup = Store(pg_store_url)
    setup.upgrade("0009")
    dirs = [tmp_path / "a", tmp_path / "b"]
    for d in dirs:
        d.mkdir()
    old = os.urandom(1_500_000)  # kept on B's disk only, by a collector before the chunks
    old_sha = _old_style_release(setup, dirs[1], OLD, old)
    setup.upgrade()
    points.upsert_point(setup, POINT, "某村医保服务点", REGION)
    token = users.create_token(setup, "agent", point_code=POINT)
    policy_service.set_region(setup, REGION, f"agent: {{version: '{VERSION}', window: '00:00-24:00'}}\n", "s.yaml",
                              Actor("test"))
    ports = [free_port(), free_port()]
    procs = [_collector(pg_store_url, d, p, key["public_key"]) for d, p in zip(dirs, ports, strict=True)]
    file_url = [f"http://127.0.0.1:{p}/api/v1/agent/releases/{VERSION}/{PLATFORM}/file" for p in ports]
    headers = {"Authorization": f"Bearer {token}"}
    try:
        for port, proc in zip(ports, procs, strict=True):
            wait_ready(port, proc)
        assert _read(setup, old_sha, len(old)) == old  # B's start imported what only B's disk held

        data, build = _signed_build(tmp_path, private, 5 * releasefiles.CHUNK + 12345)
        _add(pg_store_url, dirs[0], build)  # added on A ...
        assert not [p.name for p in (dirs[0] / "releases").iterdir()]  # ... where no copy stays behind
        with httpx.Client(timeout=60) as client:
            r = client.get(file_url[1], headers=headers)  # ... served by B
            assert r.status_code == 200, r.text
            assert hashlib.sha256(r.content).hexdigest() == hashlib.sha256(data).hexdigest()
            for first, last in ((3_000_000, None), (1_048_570, 1_048_590), (len(data) - 1, None)):
                rng = f"bytes={first}-{'' if last is None else last}"
                r = client.get(file_url[1], headers={**headers, "Range": rng})
                end = len(data) - 1 if last is None else last
                assert r.status_code == 206 and r.content == data[first:end + 1], rng
                assert r.headers["content-range"] == f"bytes {first}-{end}/{len(data)}"
            r = client.get(file_url[1], headers={**headers, "Range": f"bytes={len(data)}-"})
            assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(data)}"

            new, build = _signed_build(tmp_path, private, 2 * releasefiles.CHUNK)
            _add(pg_store_url, dirs[1], build, "--replace")  # replaced on B: what A serves next
            r = client.get(file_url[0], headers=headers)
            assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == hashlib.sha256(new).hexdigest()
            assert r.headers["etag"] == f'"{hashlib.sha256(new).hexdigest()}"'
        assert rows.get(setup, VERSION, PLATFORM).sha256 == hashlib.sha256(new).hexdigest()
        with setup.session() as s:  # the replaced build's chunks went with it
            assert releasefiles.layout_problem(s, hashlib.sha256(data).hexdigest(), len(data)) is not None
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        setup.close()
