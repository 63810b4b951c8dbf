"""Agent releases on the command line: the offline release key, signing, and ``agent-release add`` holding
only what a configured release key signed, file and all (issue 23). Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from collector.cli import main
from collector.store import Store, releasefiles
from collector.store import releases as rows
from collector.store.releasemodels import AgentReleaseChunk

VERSION, PLATFORM = "0.2.1", "linux-x86_64"


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def keygen(capsys, path: Path) -> dict:
    code, out, _ = cli(capsys, "agent-release", "keygen", "--out", path)
    assert code == 0, out
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture
def kit(tmp_path, db_url, capsys, monkeypatch):
    """An offline release key, a release file signed with it, and a collector config trusting the key."""
    # Settings.open_store exports the store's URL to the environment, where the next test would find it.
    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)
    offline = tmp_path / "offline"
    offline.mkdir()
    key = keygen(capsys, offline / "release.pem")
    build = offline / "pointwatch-agent"
    build.write_bytes(os.urandom(70_000))
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"database_url": db_url, "agent_releases": {"public_keys": [key["public_key"]]}}),
                      encoding="utf-8")
    return {"key": key, "pem": offline / "release.pem", "build": build, "config": config, "data": tmp_path / "data",
            "db_url": db_url, "offline": offline}


def add(capsys, kit, *extra, version=VERSION, platform=PLATFORM, file=None):
    return cli(capsys, "--config", kit["config"], "--data-dir", kit["data"], "agent-release", "add",
               file or kit["build"], "--version", version, "--platform", platform, *extra)


def sign(capsys, kit, version=VERSION, platform=PLATFORM, key=None, file=None, out=None):
    argv = ["agent-release", "sign", file or kit["build"], "--version", version, "--platform", platform,
            "--key", key or kit["pem"]]
    code, text, err = cli(capsys, *argv, *(["--out", out] if out else []))
    assert code == 0, err
    return Path(out or f"{file or kit['build']}.release.json")


def held(kit) -> tuple[list[dict], list[str]]:
    """(the releases listed, the files held: the digests whose chunks are in the database, then any file left
    in the data dir's releases folder, as "left:NAME": the checked copy is always removed)."""
    store = Store(kit["db_url"])
    try:
        store.upgrade()
        listed = rows.list_releases(store)
        with store.session() as s:
            digests = sorted(set(s.scalars(select(AgentReleaseChunk.sha256))))
    finally:
        store.close()
    folder = rows.releases_dir(kit["data"])
    return listed, digests + (sorted(f"left:{p.name}" for p in folder.iterdir()) if folder.exists() else [])


def file_bytes(kit, sha256: str, size: int) -> bytes:
    store = Store(kit["db_url"])
    try:
        return b"".join(bytes(piece) for piece in releasefiles.read(store, sha256, size, 0, size - 1))
    finally:
        store.close()


def test_keygen_sign_add_round_trip(kit, capsys):
    assert stat.S_IMODE(kit["pem"].stat().st_mode) == 0o600
    assert kit["key"]["algorithm"] == "Ed25519" and len(base64.b64decode(kit["key"]["public_key"])) == 32
    manifest = sign(capsys, kit)
    envelope = json.loads(manifest.read_bytes())
    payload = json.loads(base64.b64decode(envelope["payload"]))
    assert payload["version"] == VERSION and payload["platform"] == PLATFORM and payload["size"] == 70_000
    assert envelope["signatures"][0]["key_id"] == kit["key"]["key_id"]

    code, out, err = add(capsys, kit)
    assert code == 0, err
    assert "已添加" in out and payload["sha256"] in out
    listed, files = held(kit)
    assert [(r["version"], r["platform"], r["sha256"], r["size"]) for r in listed] == [
        (VERSION, PLATFORM, payload["sha256"], 70_000)]
    assert files == [payload["sha256"]]
    assert file_bytes(kit, payload["sha256"], 70_000) == kit["build"].read_bytes()
    store = Store(kit["db_url"])
    try:
        assert rows.get(store, VERSION, PLATFORM).manifest == manifest.read_bytes()  # as given, byte for byte
    finally:
        store.close()

    assert add(capsys, kit)[0] == 0  # the same file again changes nothing
    code, out, _ = cli(capsys, "--config", kit["config"], "--data-dir", kit["data"], "agent-release", "list")
    assert code == 0 and VERSION in out and "发布中" in out
    code, out, _ = cli(capsys, "--config", kit["config"], "--data-dir", kit["data"], "agent-release", "pause", VERSION)
    assert code == 0 and "已暂停" in out
    code, out, _ = cli(capsys, "--config", kit["config"], "--data-dir", kit["data"], "agent-release", "list", "--json")
    assert json.loads(out)["releases"][0]["paused_at"] is not None
    assert cli(capsys, "--config", kit["config"], "--data-dir", kit["data"], "agent-release", "resume", VERSION)[0] == 0
    assert cli(capsys, "--config", kit["config"], "--data-dir", kit["data"], "agent-release", "resume", VERSION)[0] == 1


def test_keygen_never_overwrites_a_key(kit, capsys):
    before = kit["pem"].read_bytes()
    code, _, err = cli(capsys, "agent-release", "keygen", "--out", kit["pem"])
    assert code == 2 and "已存在" in err
    assert kit["pem"].read_bytes() == before


def _tamper_file(kit, capsys):
    sign(capsys, kit)
    data = bytearray(kit["build"].read_bytes())
    data[100] ^= 1
    kit["build"].write_bytes(bytes(data))


def _truncate_file(kit, capsys):
    sign(capsys, kit)
    kit["build"].write_bytes(kit["build"].read_bytes()[:-1])


def _other_key(kit, capsys):
    keygen(capsys, kit["offline"] / "other.pem")
    sign(capsys, kit, key=kit["offline"] / "other.pem")


def _unsigned(kit, capsys):
    manifest = sign(capsys, kit)
    envelope = json.loads(manifest.read_bytes())
    envelope["signatures"] = []
    manifest.write_text(json.dumps(envelope))


def _edited_payload(kit, capsys):
    manifest = sign(capsys, kit)
    envelope = json.loads(manifest.read_bytes())
    payload = json.loads(base64.b64decode(envelope["payload"]))
    payload["size"] += 1
    envelope["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    manifest.write_text(json.dumps(envelope))


def _signed_for_another_version(kit, capsys):
    sign(capsys, kit, version="0.2.2")


def _signed_for_another_platform(kit, capsys):
    sign(capsys, kit, platform="windows-amd64")


def _no_manifest(kit, capsys):
    pass


REFUSALS = [
    (_unsigned, "bad_signature", "签名"), (_other_key, "bad_signature", "不受信任"),
    (_edited_payload, "bad_signature", "改动"), (_tamper_file, "digest_mismatch", "sha256"),
    (_truncate_file, "size_mismatch", "大小"), (_signed_for_another_version, "wrong_version", "0.2.2"),
    (_signed_for_another_platform, "wrong_platform", "windows-amd64"), (_no_manifest, "no_manifest", "发布清单"),
]


@pytest.mark.parametrize(("prepare", "reason", "named"), REFUSALS, ids=[r[1] + ":" + r[0].__name__ for r in REFUSALS])
def test_add_refuses_what_the_release_key_did_not_sign_and_stores_nothing(kit, capsys, prepare, reason, named):
    prepare(kit, capsys)
    code, out, err = add(capsys, kit)
    assert code == 2, out
    assert f"（{reason}）" in err and named in err
    assert held(kit) == ([], [])


def test_add_refuses_a_version_or_platform_that_is_no_release_name(kit, capsys):
    sign(capsys, kit)
    code, _, err = add(capsys, kit, version="0.2.1-beta")
    assert code == 2 and "bad_version" in err and "0.2.1-beta" in err
    code, _, err = add(capsys, kit, platform="linux-mips")
    assert code == 2 and "bad_platform" in err and "linux-mips" in err
    assert held(kit) == ([], [])


def test_add_without_configured_release_keys_refuses(kit, capsys):
    sign(capsys, kit)
    kit["config"].write_text(yaml.safe_dump({"database_url": kit["db_url"]}), encoding="utf-8")
    code, _, err = add(capsys, kit)
    assert code == 2 and "no_release_keys" in err and "agent_releases.public_keys" in err
    assert held(kit) == ([], [])


def test_a_second_file_for_a_held_release_needs_replace(kit, capsys):
    sign(capsys, kit)
    assert add(capsys, kit)[0] == 0
    first = held(kit)
    kit["build"].write_bytes(os.urandom(1000))
    sign(capsys, kit)
    code, _, err = add(capsys, kit)
    assert code == 2 and "release_exists" in err and "--replace" in err
    assert held(kit) == first
    code, out, _ = add(capsys, kit, "--replace")
    assert code == 0 and "已替换" in out and "不计入新构建" in out and "手动暂停" not in out
    listed, files = held(kit)
    assert listed[0]["size"] == 1000
    assert files == [listed[0]["sha256"]]  # the replaced build's chunks went with it
    # a replacement keeps an admin's pause, and says so
    assert cli(capsys, "--config", kit["config"], "--data-dir", kit["data"], "agent-release", "pause", VERSION)[0] == 0
    kit["build"].write_bytes(os.urandom(900))
    sign(capsys, kit)
    code, out, _ = add(capsys, kit, "--replace")
    assert code == 0 and "仍处于手动暂停" in out and f"agent-release resume {VERSION}" in out


@pytest.mark.parametrize(("section", "named"), [
    ({"public_keys": ["not base64!"]}, "public_keys[0]: not base64"),
    ({"public_keys": [base64.b64encode(b"x" * 31).decode()]}, "public_keys[0]: not an Ed25519"),
    ({"pause_failed_share": 1.5}, "pause_failed_share"),
    ({"pause_share": 0.1}, "agent_releases: a mapping of"),
    ({"pause_min_failed_points": 0}, "pause_min_failed_points: a whole number from 1"),
    ({"pause_min_failed_points": 2.5}, "pause_min_failed_points: a whole number from 1"),
    ({"pause_min_failed_points": True}, "pause_min_failed_points: a whole number from 1"),
    ({"pause_min_failed_points": "3"}, "pause_min_failed_points: a whole number from 1"),
])
def test_agent_releases_settings_are_checked_at_load(tmp_path, capsys, monkeypatch, section, named):
    monkeypatch.delenv("POINTWATCH_DATABASE_URL", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"agent_releases": section}), encoding="utf-8")
    code, _, err = cli(capsys, "--config", config, "--data-dir", tmp_path / "d", "agent-release", "list")
    assert code == 2 and named in err


def test_list_shows_a_stage_pause_and_resume_lifts_one_stage(kit, capsys):
    from collector.releases import rollout
    from collector.store.audit import SYSTEM

    sign(capsys, kit)
    assert add(capsys, kit)[0] == 0
    stage = "甘肃省/兰州市/城关区/某镇"
    store = Store(kit["db_url"])
    try:
        assert rows.pause_stage(store, VERSION, stage, f"阶段 {stage} 中 3/5 个服务点升级失败", SYSTEM, {"by": "collector"},
                                rollout._alert("620102001001", stage, VERSION, stage, "失败", 0.6), stage)
    finally:
        store.close()
    base = ("--config", kit["config"], "--data-dir", kit["data"], "agent-release")
    code, out, _ = cli(capsys, *base, "list")
    assert code == 0 and "1 个阶段已自动暂停" in out and "本阶段已自动暂停" in out and "3/5" in out
    code, out, _ = cli(capsys, *base, "list", "--json")
    assert json.loads(out)["releases"][0]["paused_stages"] == [stage]
    code, _, err = cli(capsys, *base, "resume", VERSION, "--stage", "甘肃省/别处")
    assert code == 1 and "未暂停" in err
    code, out, _ = cli(capsys, *base, "resume", VERSION, "--stage", stage)
    assert code == 0 and f"阶段 {stage}" in out
    code, out, _ = cli(capsys, *base, "list", "--json")
    assert json.loads(out)["releases"][0]["paused_stages"] == []
