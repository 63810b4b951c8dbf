"""The agent upgrading itself (agent/upgrade/): the signed manifest, the download, the manager's decisions and
what it says in every report.

Releases come from tests/release_collector.py, a real HTTP server speaking the release routes of the contract
(with real Range support), manifests signed with ``cryptography``; the policy the manager follows is a signed
envelope the real PolicyKeeper accepts; the "new binary" is a real executable script answering ``--version``.
"""

from __future__ import annotations

import json
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto

from agent import config as config_mod
from agent import policy as pol
from agent.enrol import State
from agent.outbox import Batch
from agent.policyfetch import PolicyKeeper
from agent.upgrade import WATCHDOG_S, Identity, release_dir, upgrade_path
from agent.upgrade import state as st
from agent.upgrade.download import DownloadError, TokenBucket, bucket_for, download
from agent.upgrade.launch import TRIAL, boot_identity, decide
from agent.upgrade.manager import DIGEST_TRIES, UpgradeManager
from agent.upgrade.manifest import ManifestRefused, verify_manifest
from tests.policy_collector import TOKEN, envelope, key_object
from tests.release_collector import PLATFORM, ReleaseCollector, manifest, stand_in_binary

POINT = "620102001001"
OWN = "0.1.0"
IN_WINDOW, OUT_OF_WINDOW = 150, 600  # 02:30 and 10:00, local minutes


@pytest.fixture
def releases():
    server = ReleaseCollector().start()
    yield server
    server.stop()


def release_keys(*keys):
    return pol.parse_keys([key_object(k) for k in keys], "release_keys")


def setup(tmp_path, releases, agent_section, *, identity=None, minute=IN_WINDOW, pin=True, launch=None,
          clock=None, mono=None):
    """A real keeper running a signed policy with ``agent_section``, the state dir, and the manager."""
    cfg = config_mod.parse(f"""
point: {{code: "{POINT}"}}
collector: {{url: "{releases.url}", timeout: 5s}}
state_dir: {tmp_path / 'state'}
""", "agent.yaml")
    state = State(cfg)
    policy_key = crypto.Ed25519PrivateKey.generate()
    state.save_policy_keys(pol.parse_keys([key_object(policy_key)]))
    state.save(TOKEN, "agent-1")
    if pin:
        state.save_release_keys(release_keys(releases.key))
    keeper = PolicyKeeper(cfg, state)
    assert keeper.offer(envelope({"agent": agent_section} if agent_section else {}, POINT, [policy_key]))
    handed: list[str] = []
    kwargs = {**({"clock": clock} if clock else {}), **({"mono": mono} if mono else {})}
    manager = UpgradeManager(keeper, state, identity or Identity(OWN, "/opt/pointwatch-agent/bin/pointwatch-agent",
                                                                  PLATFORM, True),
                             speedup=1.0, on_handover=handed.append, launch=launch, minute=lambda: minute, **kwargs)
    return manager, state, handed


# -- the manifest ----------------------------------------------------------------------------------------------
def test_a_manifest_signed_by_a_pinned_release_key_names_the_release(releases):
    data = stand_in_binary("0.2.0")
    release = verify_manifest(manifest(data, "0.2.0", [releases.key]), release_keys(releases.key), "0.2.0", PLATFORM)
    assert (release.version, release.size, release.file) == ("0.2.0", len(data), "pointwatch-agent")


def test_a_manifest_signed_under_another_text_of_the_version_is_that_version(releases):
    data = stand_in_binary("0.2.0")
    for signed in ("0.2", "0.2.0.0"):
        release = verify_manifest(manifest(data, signed, [releases.key]), release_keys(releases.key), "0.2.0", PLATFORM)
        assert release.version == "0.2.0"
    with pytest.raises(ManifestRefused, match="version '0.2.1'"):
        verify_manifest(manifest(data, "0.2.1", [releases.key]), release_keys(releases.key), "0.2.0", PLATFORM)


def _tamper(raw: bytes) -> bytes:
    return raw.replace(b'"0.2.0"', b'"0.2.9"')


@pytest.mark.parametrize("case, reason, words", [
    ("no_keys", st.BAD_SIGNATURE, "no release key is pinned"),
    ("wrong_key", st.BAD_SIGNATURE, "no pinned release key signed"),
    ("tampered_payload", st.BAD_SIGNATURE, "no pinned release key signed"),
    ("wrong_version", st.WRONG_VERSION, "version '0.3.0'"),
    ("wrong_platform", st.WRONG_VERSION, "platform 'windows-amd64'"),
    ("path_in_file_name", st.BAD_SIGNATURE, "not a plain file name"),
    ("not_json", st.BAD_SIGNATURE, "not JSON"),
])
def test_a_manifest_is_refused_naming_why(releases, case, reason, words):
    data, key, other = stand_in_binary("0.2.0"), releases.key, crypto.Ed25519PrivateKey.generate()
    raw = {"no_keys": manifest(data, "0.2.0", [key]), "wrong_key": manifest(data, "0.2.0", [other]),
           "tampered_payload": manifest(data, "0.2.0", [key], payload_edit=_tamper),
           "wrong_version": manifest(data, "0.3.0", [key]),
           "wrong_platform": manifest(data, "0.2.0", [key], platform="windows-amd64"),
           "path_in_file_name": manifest(data, "0.2.0", [key], file="../../bin/sh"),
           "not_json": b"<html>"}[case]
    with pytest.raises(ManifestRefused) as info:
        verify_manifest(raw, [] if case == "no_keys" else release_keys(key), "0.2.0", PLATFORM)
    assert info.value.reason == reason and words in info.value.detail


# -- the download ----------------------------------------------------------------------------------------------
def test_the_token_bucket_computes_the_waits_of_the_cap():
    bucket = TokenBucket(rate=8000, burst=8000, now=100.0)  # 64 kbit/s
    assert bucket.take(4096, 100.0) == 0.0
    assert bucket.take(4096, 100.0) == pytest.approx(192 / 8000)  # 192 bytes over the second of credit
    assert bucket.take(4096, 100.0) == pytest.approx((192 + 4096) / 8000)
    assert bucket.take(4096, 101.0) == pytest.approx((192 + 4096 * 2 - 8000) / 8000)  # a second refilled 8000
    assert bucket_for(64, 0.0).rate == 8000 and bucket_for(8, 0.0).burst == 4096  # never below one chunk


def test_a_capped_download_waits_what_the_cap_says_between_chunks(tmp_path, releases):
    data = os.urandom(64 * 1024)
    releases.add("0.2.0", data)
    now, waits = [0.0], []

    def wait(seconds):  # the download's clock advances by what it waits: no real sleeping, no timing
        waits.append(seconds)
        now[0] += seconds
        return False

    part = tmp_path / "p" / "pointwatch-agent.part"
    assert download(f"{releases.url}/api/v1/agent/releases/0.2.0/{PLATFORM}/file", TOKEN, part, len(data), 64,
                    timeout=5, wait=wait, clock=lambda: now[0])
    assert part.read_bytes() == data
    # 64 kbit/s = 8000 B/s with one second of credit: the rest takes (size - 8000) / 8000 seconds.
    assert sum(waits) == pytest.approx((len(data) - 8000) / 8000)
    assert max(waits) <= 4096 / 8000 + 1e-9


def test_an_interrupted_download_resumes_with_range_and_gives_identical_bytes(tmp_path, releases):
    data = os.urandom(50_000)
    releases.add("0.2.0", data)
    releases.cut_after = 20_000
    url = f"{releases.url}/api/v1/agent/releases/0.2.0/{PLATFORM}/file"
    part = tmp_path / "pointwatch-agent.part"
    with pytest.raises(DownloadError):
        download(url, TOKEN, part, len(data), 100000, timeout=5, wait=lambda s: False)
    assert 0 < part.stat().st_size <= 20_000 and data.startswith(part.read_bytes())
    kept = part.stat().st_size
    assert download(url, TOKEN, part, len(data), 100000, timeout=5, wait=lambda s: False)
    assert releases.file_requests() == [None, f"bytes={kept}-"]
    assert part.read_bytes() == data


def test_a_server_that_ignores_range_restarts_the_part(tmp_path, releases):
    data = os.urandom(30_000)
    releases.add("0.2.0", data)
    releases.ignore_range = True
    part = tmp_path / "pointwatch-agent.part"
    part.write_bytes(data[:1000])
    assert download(f"{releases.url}/api/v1/agent/releases/0.2.0/{PLATFORM}/file", TOKEN, part, len(data), 100000,
                    timeout=5, wait=lambda s: False)
    assert part.read_bytes() == data


def test_a_download_pauses_when_told_and_keeps_the_part(tmp_path, releases):
    data = os.urandom(40_000)
    releases.add("0.2.0", data)
    part = tmp_path / "pointwatch-agent.part"
    calls = []
    assert not download(f"{releases.url}/api/v1/agent/releases/0.2.0/{PLATFORM}/file", TOKEN, part, len(data),
                        100000, timeout=5, wait=lambda s: calls.append(s) or len(calls) >= 3)
    assert part.stat().st_size == 3 * 4096


# -- the manager ------------------------------------------------------------------------------------------------
SECTION = {"version": "0.2.0", "window": "02:00-05:00", "max_kbps": 100000}


def test_in_the_window_the_release_is_fetched_verified_started_and_handed_over(tmp_path, releases):
    data = stand_in_binary("0.2.0")
    releases.add("0.2.0", data)
    manager, state, handed = setup(tmp_path, releases, SECTION)
    assert manager.describe()[2]["state"] == "pending"
    manager.step()
    final = release_dir(state.dir, "0.2.0") / "pointwatch-agent"
    assert handed == [str(final)] and final.read_bytes() == data
    assert stat.S_IMODE(final.stat().st_mode) == 0o755 and not final.with_name("pointwatch-agent.part").exists()
    trial = json.loads(upgrade_path(state.dir).read_text())["trial"]
    assert trial["version"] == "0.2.0" and trial["from_version"] == OWN and trial["launches"] == 0
    assert trial["from_path"] == "/opt/pointwatch-agent/bin/pointwatch-agent"
    assert (trial["budget_s"], trial["ran_s"], trial["boots"]) == (WATCHDOG_S, 0, 0)
    assert trial["boot_id"] == boot_identity()
    assert manager.result().status == "warn" and "正在切换" in manager.result().message


@pytest.mark.parametrize("bad, reason", [
    ("tampered_file", st.DIGEST_MISMATCH), ("wrong_key", st.BAD_SIGNATURE), ("prints_other_version", st.DOES_NOT_START),
    ("exits_non_zero", st.DOES_NOT_START),
])
def test_a_bad_release_fails_once_is_reported_and_is_not_tried_again(tmp_path, releases, bad, reason):
    good = stand_in_binary("0.2.0")
    data = {"tampered_file": good.replace(b"import sys", b"import os "),  # same size, other bytes
            "prints_other_version": stand_in_binary("0.1.9"),
            "exits_non_zero": good.replace(b"sys.exit(0)", b"sys.exit(3)")}.get(bad, good)
    signed = manifest(good if bad == "tampered_file" else data, "0.2.0",
                      [crypto.Ed25519PrivateKey.generate() if bad == "wrong_key" else releases.key])
    releases.add("0.2.0", data, envelope=signed)
    manager, state, handed = setup(tmp_path, releases, SECTION)
    for _ in range(DIGEST_TRIES - 1 if bad == "tampered_file" else 0):  # a corrupted transfer is fetched again
        manager.step()
        assert manager.describe()[2]["state"] == "retrying" and not st.load(upgrade_path(state.dir))["failed"]
    manager.step()
    assert handed == []
    status, message, details = manager.describe()
    assert (status, details["reason"], details["state"], details["target"]) == ("fail", reason, "failed", "0.2.0")
    assert message.startswith("升级到版本 0.2.0 失败：") and st.REMEDY_CN[reason] in message
    asked = list(releases.requests)
    manager.step()  # the same release again: the manifest is asked (a new build would be tried), nothing more
    assert [p for p, _ in releases.requests[len(asked):]] == [f"/api/v1/agent/releases/0.2.0/{PLATFORM}"]
    assert manager.describe()[2]["reason"] == reason
    # Another build of 0.2.0 (another sha256) is tried; a policy naming another version ends the ban.
    releases.add("0.2.0", stand_in_binary("0.2.0", "pass  # rebuilt"))
    manager.step()
    assert handed and json.loads(upgrade_path(state.dir).read_text())["trial"]["version"] == "0.2.0"


def test_a_transfer_corrupted_on_the_way_is_deleted_and_fetched_again_then_runs(tmp_path, releases):
    """A 2G line corrupts a download now and then: the part is deleted and fetched again (counted in
    upgrade.json, so a restart does not reset the count), and a good build is not banned for it."""
    good = stand_in_binary("0.2.0")
    signed = manifest(good, "0.2.0", [releases.key])
    releases.add("0.2.0", good.replace(b"import sys", b"import os "), envelope=signed)  # same size, other bytes
    manager, state, handed = setup(tmp_path, releases, SECTION)
    manager.step()
    status, message, details = manager.describe()
    assert (status, details["state"], handed) == ("warn", "retrying", []) and "第 1 次" in message
    doc = st.load(upgrade_path(state.dir))
    assert doc["failed"] == [] and doc["corrupt"]["count"] == 1
    assert not (release_dir(state.dir, "0.2.0") / "pointwatch-agent.part").exists()
    again, _state, handed = setup(tmp_path, releases, SECTION)  # the agent restarted: the count goes on
    again.step()
    assert st.load(upgrade_path(state.dir))["corrupt"]["count"] == 2
    releases.add("0.2.0", good, envelope=signed)  # the next transfer arrives whole
    again.step()
    assert handed == [str(release_dir(state.dir, "0.2.0") / "pointwatch-agent")]
    doc = st.load(upgrade_path(state.dir))
    assert doc["failed"] == [] and doc["corrupt"] is None and doc["trial"]["version"] == "0.2.0"
    assert releases.file_requests() == [None, None, None]


def test_a_release_whose_signature_fails_is_never_downloaded(tmp_path, releases):
    data = stand_in_binary("0.2.0")
    releases.add("0.2.0", data, envelope=manifest(data, "0.2.0", [releases.key], payload_edit=_tamper))
    manager, state, handed = setup(tmp_path, releases, SECTION)
    manager.step()
    assert releases.file_requests() == [] and handed == []
    assert manager.describe()[2]["reason"] == st.BAD_SIGNATURE


@pytest.mark.parametrize("section, identity, minute, pin, want_state, status", [
    (None, None, IN_WINDOW, True, "no_target", "ok"),
    ({"version": OWN, "window": "02:00-05:00"}, None, IN_WINDOW, True, "current", "ok"),
    (SECTION, None, OUT_OF_WINDOW, True, "waiting_for_window", "warn"),
    ({"version": "0.0.9", "window": "00:00-24:00"}, None, IN_WINDOW, True, "downgrade_refused", "warn"),
    (SECTION, Identity(OWN, "/venv/bin/python", "wheel", False), IN_WINDOW, True, "cannot_self_upgrade", "warn"),
    (SECTION, None, IN_WINDOW, False, "no_release_keys", "fail"),
])
def test_when_the_manager_does_nothing_it_says_why(tmp_path, releases, section, identity, minute, pin, want_state,
                                                     status):
    releases.add("0.2.0", stand_in_binary("0.2.0"))
    releases.add("0.0.9", stand_in_binary("0.0.9"))
    manager, _state, handed = setup(tmp_path, releases, section, identity=identity, minute=minute, pin=pin)
    manager.step()
    assert releases.requests == [] and handed == []
    got_status, message, details = manager.describe()
    assert (got_status, details["state"], details["running"]) == (status, want_state, OWN)
    if want_state == "no_release_keys":
        assert details["reason"] == st.BAD_SIGNATURE and "请重新注册" in message
    if want_state == "cannot_self_upgrade":
        assert "自带运行环境的安装包" in message


def test_an_older_version_runs_only_when_the_policy_allows_a_downgrade(tmp_path, releases):
    releases.add("0.0.9", stand_in_binary("0.0.9"))
    manager, state, handed = setup(tmp_path, releases, {"version": "0.0.9", "window": "00:00-24:00",
                                                         "downgrade": True, "max_kbps": 100000})
    manager.step()
    assert handed == [str(release_dir(state.dir, "0.0.9") / "pointwatch-agent")]


@pytest.mark.parametrize("code, words", [(404, "没有版本 0.2.0"), (409, "已暂停"), (403, "策略未指定")])
def test_what_the_collector_refuses_is_a_warning_and_retried(tmp_path, releases, code, words):
    releases.status = code
    manager, _state, handed = setup(tmp_path, releases, SECTION)
    manager.step()
    status, message, details = manager.describe()
    assert (status, details["state"]) == ("warn", "retrying") and words in message and handed == []


def _base_binary(tmp_path) -> str:
    """The recorded base binary a rollback goes back to: a real file only its owner may write."""
    path = tmp_path / "opt" / "a"
    if not path.exists():
        path.parent.mkdir(mode=0o755)
        path.write_bytes(b"#!/bin/sh\n")
        path.chmod(0o755)
    return str(path)


def _trial_manager(tmp_path, releases, now, mono=None, ran_s=0, write=True):
    """The manager of a trial process (0.2.0 exec'd by 0.1.0, the recorded base), after its launch decision.
    ``now`` is the wall clock, ``mono`` the monotonic one (default: the same list)."""
    mono = mono or now
    sdir = tmp_path / "state"
    base = _base_binary(tmp_path)
    path = str(release_dir(sdir, "0.2.0") / "pointwatch-agent")
    trial = {"version": "0.2.0", "path": path, "sha256": "ab" * 32, "from_version": OWN, "from_path": base,
             "started_at": now[0], "budget_s": 600, "ran_s": ran_s, "launches": 0, "boots": 0, "boot_id": "boot-1"}
    if write:
        st.save(upgrade_path(sdir), {**st.empty(), "base": {"version": OWN, "path": base}, "trial": trial})
    launch = decide(st.load(upgrade_path(sdir)), "0.2.0", path, now[0], "boot-1")
    assert launch.action == TRIAL
    st.save(upgrade_path(sdir), launch.state)
    return setup(tmp_path, releases, SECTION, identity=Identity("0.2.0", path, PLATFORM, True), launch=launch,
                 clock=lambda: now[0], mono=lambda: mono[0])


def _batch(*versions):
    return Batch(db_ids=list(range(len(versions))), bodies=[json.dumps({"agent_version": v}) for v in versions])


def test_the_trial_commits_on_the_first_acknowledged_report_of_its_own_version(tmp_path, releases):
    now = [1_000_000.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now)
    for old in ("0.0.5", OWN, "0.2.0"):  # releases on disk: an older one, the one it came from, itself
        release_dir(state.dir, old).mkdir(parents=True, exist_ok=True)
    assert manager.describe()[2]["state"] == "trial"
    manager.on_ack(_batch(OWN, OWN))  # reports the old version queued before the hand-over: no commit
    assert json.loads(upgrade_path(state.dir).read_text())["trial"] is not None
    manager.on_ack(_batch(OWN, "0.2.0"))
    doc = json.loads(upgrade_path(state.dir).read_text())
    assert doc["trial"] is None and doc["active"]["version"] == "0.2.0" and doc["previous"]["path"] == _base_binary(tmp_path)
    assert doc["last"]["event"] == "committed"
    assert sorted(p.name for p in (state.dir / "releases").iterdir()) == [OWN, "0.2.0"]
    now[0] += 10_000
    manager.step()  # the watchdog is over: no rollback after the commit
    assert handed == [] and manager.describe()[:2] == ("ok", "按策略运行版本 0.2.0")


def test_no_acknowledged_report_by_the_deadline_rolls_back_and_the_old_version_says_so(tmp_path, releases):
    now = [1_000_000.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now)
    assert manager.step() == pytest.approx(60.0)
    assert handed == []
    now[0] += 601
    manager.step()
    assert handed == [_base_binary(tmp_path)]
    doc = json.loads(upgrade_path(state.dir).read_text())
    assert doc["trial"] is None and doc["active"] is None and doc["last"]["event"] == "rolled_back"
    assert [(f["version"], f["reason"]) for f in doc["failed"]] == [("0.2.0", st.ROLLED_BACK)]
    # The old version starting again: it reports the failure and does not try 0.2.0 (same sha256) again.
    releases.add("0.2.0", b"", envelope=manifest(b"x" * 10, "0.2.0", [releases.key], sha256="ab" * 32))
    old, _state, old_handed = setup(tmp_path, releases, SECTION)
    status, message, details = old.describe()
    assert (status, details["reason"]) == ("fail", st.ROLLED_BACK) and "已自动回退" in message
    old.step()
    assert old_handed == [] and releases.file_requests() == []


def test_the_watchdog_deadline_is_divided_by_the_test_speedup(tmp_path, releases):
    releases.add("0.2.0", stand_in_binary("0.2.0"))
    manager, state, handed = setup(tmp_path, releases, SECTION)
    manager.speedup = 60.0
    manager.step()
    trial = json.loads(upgrade_path(state.dir).read_text())["trial"]
    assert trial["budget_s"] == pytest.approx(WATCHDOG_S / 60)


def test_the_watchdog_counts_the_time_the_trial_ran_not_the_wall_clock(tmp_path, releases):
    """A power cut mid-trial (the village's usual) resumes the count written so far; a wall clock that jumps
    (NTP, a PC off all night) counts nothing."""
    now, mono = [1_000_000.0], [50.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now, mono)
    mono[0] += 250
    now[0] += 86_400  # the wall clock jumps a day: no matter
    assert manager.step() == pytest.approx(60.0) and handed == []
    assert st.load(upgrade_path(state.dir))["trial"]["ran_s"] == pytest.approx(250)
    # The power goes off; after the reboot the trial starts again (its launch decision gives another launch
    # in another boot) with a fresh monotonic clock, and its count goes on from 250 s.
    doc = st.load(upgrade_path(state.dir))
    st.save(upgrade_path(state.dir), {**doc, "trial": {**doc["trial"], "launches": 0}})
    mono = [3.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now, mono, write=False)
    mono[0] += 349
    assert manager.step() == pytest.approx(1.0) and handed == []
    mono[0] += 1
    manager.step()
    assert handed == [_base_binary(tmp_path)]
    doc = st.load(upgrade_path(state.dir))
    assert doc["trial"] is None and "600 s of running" in doc["failed"][0]["detail"]


def test_the_watchdog_does_not_hand_over_to_a_program_the_file_names_from_elsewhere(tmp_path, releases):
    now = [1_000_000.0]
    manager, state, handed = _trial_manager(tmp_path, releases, now)
    doc = st.load(upgrade_path(state.dir))
    st.save(upgrade_path(state.dir), {**doc, "base": {"version": OWN, "path": "/opt/other"}})
    now[0] += 601
    manager.step()
    assert handed == []
    status, message, details = manager.describe()
    assert status == "fail" and _base_binary(tmp_path) in details["detail"] and "recorded base binary" in details["detail"]


# -- enrolment pins the release keys ------------------------------------------------------------------------------
def test_enrolment_pins_the_first_release_keys_and_only_the_operator_replaces_them(tmp_path, capsys):
    from agent.enrol import enroll
    from agent.platform import current
    from tests.conftest import free_port
    from tests.policy_collector import PolicyCollector

    collector = PolicyCollector(free_port(), POINT).start()
    release_key = crypto.Ed25519PrivateKey.generate()
    try:
        cfg = config_mod.parse(f'point: {{code: "{POINT}"}}\nstate_dir: {tmp_path / "state"}\n', "agent.yaml")
        state = State(cfg)
        collector.enrol_release_keys = [key_object(release_key)]
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        assert [k.key_id for k in state.release_keys()] == [key_object(release_key)["key_id"]]
        assert stat.S_IMODE(state.release_keys_path.stat().st_mode) == 0o600
        collector.enrol_release_keys = [{**key_object(release_key), "key_id": "0123456789abcdef"}]
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 1
        assert "代理发布签名公钥无效" in capsys.readouterr().out
        assert len(state.release_keys()) == 1  # a refused answer pins nothing new and drops nothing
        # A re-enrolment may not change the pinned key by itself (a collector taken over, or a man in the
        # middle of an http enrolment, would put its own in place): kept, and the operator told how.
        other = crypto.Ed25519PrivateKey.generate()
        collector.enrol_release_keys = [key_object(other)]
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        assert [k.key_id for k in state.release_keys()] == [key_object(release_key)["key_id"]]
        out = capsys.readouterr().out
        assert "已保留原有公钥" in out and key_object(other)["key_id"] in out and "--accept-release-keys" in out
        collector.enrol_release_keys = None  # a collector that lists none does not unpin either
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        assert [k.key_id for k in state.release_keys()] == [key_object(release_key)["key_id"]]
        # Only the operator naming exactly the new key ids replaces them.
        collector.enrol_release_keys = [key_object(other)]
        assert enroll(cfg, collector.url, "ONE-TIME-123", current(), accept_release_keys={"0" * 16}) == 0
        assert [k.key_id for k in state.release_keys()] == [key_object(release_key)["key_id"]]
        assert enroll(cfg, collector.url, "ONE-TIME-123", current(),
                      accept_release_keys={key_object(other)["key_id"]}) == 0
        assert [k.key_id for k in state.release_keys()] == [key_object(other)["key_id"]]
    finally:
        collector.stop()


def test_a_first_enrolment_without_release_keys_pins_none_and_says_no_upgrade(tmp_path, capsys):
    from agent.enrol import enroll
    from agent.platform import current
    from tests.conftest import free_port
    from tests.policy_collector import PolicyCollector

    collector = PolicyCollector(free_port(), POINT).start()
    try:
        cfg = config_mod.parse(f'point: {{code: "{POINT}"}}\nstate_dir: {tmp_path / "state"}\n', "agent.yaml")
        collector.enrol_release_keys = None
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        assert State(cfg).release_keys() == [] and not State(cfg).release_keys_path.exists()
        assert "不会自动升级" in capsys.readouterr().out
    finally:
        collector.stop()


def test_a_part_of_another_build_of_the_version_is_not_resumed(tmp_path, releases):
    new = stand_in_binary("0.2.0", "pass  # the new build")
    releases.add("0.2.0", new)
    manager, state, handed = setup(tmp_path, releases, SECTION)
    part = release_dir(state.dir, "0.2.0") / "pointwatch-agent.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(stand_in_binary("0.2.0")[:100])  # left by a download of the old build
    part.with_name("pointwatch-agent.part.sha256").write_text("ab" * 32)
    manager.step()
    assert releases.file_requests() == [None] and handed  # asked from the start, and it verified
    assert (release_dir(state.dir, "0.2.0") / "pointwatch-agent").read_bytes() == new


def test_a_download_the_window_ends_resumes_in_the_next_window_and_says_so(tmp_path, releases):
    data = stand_in_binary("0.2.0", "pass  # " + "x" * 30_000)
    releases.add("0.2.0", data)
    looks = []

    def minute():  # the clock of the window: it ends while the fourth chunk is being fetched
        looks.append(1)
        return IN_WINDOW if len(looks) <= 4 or len(looks) > 100 else OUT_OF_WINDOW

    manager, state, handed = setup(tmp_path, releases, SECTION)
    manager.minute = minute
    manager.step()
    status, message, details = manager.describe()
    assert (status, details["state"]) == ("warn", "waiting_for_window") and "已下载" in message and handed == []
    part = release_dir(state.dir, "0.2.0") / "pointwatch-agent.part"
    kept = part.stat().st_size
    assert 0 < kept < len(data)
    looks.extend([1] * 100)  # the next window
    manager.step()
    assert releases.file_requests() == [None, f"bytes={kept}-"] and handed
    assert (release_dir(state.dir, "0.2.0") / "pointwatch-agent").read_bytes() == data


def test_a_rollout_paused_during_the_download_is_not_switched_to(tmp_path, releases):
    """The download may take an hour on a 2G line; a pause meanwhile (the county's, or the collector's own
    after failures elsewhere) is asked right before the switch: no trial, a warning, the part kept."""
    data = stand_in_binary("0.2.0") + b"#" + b"x" * 200_000
    releases.add("0.2.0", data)
    manager, state, handed = setup(tmp_path, releases, {"version": "0.2.0", "window": "02:00-05:00",
                                                         "max_kbps": 100000})
    calls = []

    def minute():
        calls.append(1)
        if len(calls) == 3:  # mid-download: the collector answers 409 rollout_paused from now on
            releases.status = 409
        return IN_WINDOW

    manager.minute = minute
    manager.step()
    assert handed == [] and not upgrade_path(state.dir).exists()  # no trial was ever recorded
    assert manager.problem and "0.2.0" in manager.problem  # a warning, retried: the pause may end


def test_a_failure_recorded_under_another_text_of_the_version_still_bans_that_build(tmp_path, releases):
    import hashlib

    data = stand_in_binary("0.2.0")
    releases.add("0.2.0", data)
    # an older agent recorded the failure under the policy's text as written
    st.save(upgrade_path(tmp_path / "state"), {**st.empty(), "failed": [
        {"version": "0.2", "sha256": hashlib.sha256(data).hexdigest(), "reason": st.DOES_NOT_START, "detail": "",
         "at": 1.0}]})
    manager, state, handed = setup(tmp_path, releases, {"version": "0.2", "window": "00:00-24:00"})
    manager.step()
    assert handed == [] and releases.file_requests() == []
    status, _, details = manager.describe()
    assert (status, details["target"], details["reason"]) == ("fail", "0.2.0", st.DOES_NOT_START)
    assert details["sha256"] == hashlib.sha256(data).hexdigest()  # the collector tells this build from a rebuild
    assert json.loads(upgrade_path(state.dir).read_text())["failed"][0]["version"] == "0.2.0"


def test_a_proxys_page_instead_of_the_manifest_is_retried_not_a_failed_release(tmp_path, releases):
    # A captive portal answering the manifest request with its own page: before, a bad_signature failure was
    # recorded (a fail result for as long as the policy named the version), one per distinct page.
    data = stand_in_binary("0.2.0")
    releases.add("0.2.0", data, envelope=b"<html><body>\xe8\xaf\xb7\xe5\x85\x88\xe7\x99\xbb\xe5\xbd\x95</body></html>")
    manager, state, handed = setup(tmp_path, releases, SECTION)
    manager.step()
    status, message, details = manager.describe()
    assert (status, details["state"], handed) == ("warn", "retrying", []) and "不是发布清单" in message
    assert st.load(upgrade_path(state.dir))["failed"] == [] and releases.file_requests() == []
    releases.add("0.2.0", data)  # the line is straight again
    manager.step()
    assert handed == [str(release_dir(state.dir, "0.2.0") / "pointwatch-agent")]


def test_an_unreadable_pinned_release_key_file_is_not_replaced_by_the_collectors_keys(tmp_path, capsys):
    # Before, an unreadable release_keys.json read as "nothing pinned", so the next enrolment (which the
    # agent's own message asks for) pinned whatever the collector offered: a collector taken over got its key in.
    from agent.enrol import enroll
    from agent.platform import current
    from tests.conftest import free_port
    from tests.policy_collector import PolicyCollector

    collector = PolicyCollector(free_port(), POINT).start()
    try:
        cfg = config_mod.parse(f'point: {{code: "{POINT}"}}\nstate_dir: {tmp_path / "state"}\n', "agent.yaml")
        state = State(cfg)
        collector.enrol_release_keys = [key_object(crypto.Ed25519PrivateKey.generate())]
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        state.release_keys_path.write_text("[{\"key_id\": ", encoding="utf-8")  # damaged
        other = key_object(crypto.Ed25519PrivateKey.generate())
        collector.enrol_release_keys = [other]
        capsys.readouterr()
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        assert state.release_keys_path.read_text(encoding="utf-8") == "[{\"key_id\": "
        out = capsys.readouterr().out
        assert "无法读取" in out and f"--accept-release-keys {other['key_id']}" in out
        assert enroll(cfg, collector.url, "ONE-TIME-123", current(), accept_release_keys={other["key_id"]}) == 0
        assert [k.key_id for k in state.release_keys()] == [other["key_id"]]
    finally:
        collector.stop()
