"""The agent's side of the signed policy: what it accepts (agent/policy.py), what it runs and says
(agent/policyfetch.py), what survives a restart and an unreachable collector.

Envelopes the tests craft (bad ones too) are made by tests/policy_collector.py with `cryptography` per the wire
contract; fetching and enrolling go to a real collector process (tests/livecollector.py), or to a closed port;
the one answer a real collector never gives (an enrolment whose key is misnamed) comes from the stand-in in
tests/policy_collector.py. Files are real files in a temporary state directory.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import stat

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto

from agent import config as config_mod
from agent import policy as pol
from agent.confignode import ConfigError
from agent.enrol import State
from agent.policyfetch import PolicyFetcher, PolicyKeeper
from agent.report import build_report
from agent.wire import Fingerprint, Host, report_to_dict
from collector.ingest.accept import parse_reports
from tests.conftest import free_port
from tests.livecollector import start_collector
from tests.policy_collector import TOKEN, PolicyCollector, envelope, key_object

POINT = "620102001001"
NO_POLICY_POINT = "620103001001"  # in a county without a policy
COUNTY = "甘肃省/兰州市/城关区"
POLICY = {"intervals": {"network": "30s"},
          "core_network": {"timeout": "300ms", "tcp": [{"target": "127.0.0.1:9", "name": "县级平台"}]},
          "usage": {"forbidden_software": "none", "allowed_ports": [22]}}


def local_config(tmp_path, collector_url="http://127.0.0.1:9", extra="", point=POINT) -> config_mod.AgentConfig:
    return config_mod.parse(f"""
point: {{code: "{point}"}}
collector: {{url: "{collector_url}", timeout: 2s}}
state_dir: {tmp_path / 'state'}
fallback:
  checks: {{disabled: [usage.processes, isolation.internet]}}
  usage: {{forbidden_software: none}}
  core_network:
    tcp: [{{target: "127.0.0.1:8", name: 本地目标}}]
{extra}""", "agent.yaml")


def pinned_state(cfg, *keys) -> State:
    state = State(cfg)
    state.save_policy_keys(pol.parse_keys([key_object(k) for k in keys]))
    state.save(TOKEN, "agent-1")
    return state


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """A real collector: POINT's county has POLICY, NO_POLICY_POINT's county none."""
    work = tmp_path_factory.mktemp("agent-policy")
    c = start_collector(work)
    try:
        c.cli("points", "add", "--code", POINT, "--name", "甲村", "--region", COUNTY + "/某镇/甲村")
        c.cli("points", "add", "--code", NO_POLICY_POINT, "--name", "乙村", "--region", "甘肃省/兰州市/七里河区/某镇/乙村")
        doc = work / "county.json"
        doc.write_text(json.dumps(POLICY, ensure_ascii=False), encoding="utf-8")
        c.cli("policy", "set", "--region", COUNTY, str(doc))
        yield c
    finally:
        c.stop()


def enrolled(live, tmp_path, point=POINT):
    """A config for ``point`` and its state, enrolled at the real collector (its keys pinned, its token)."""
    from agent.enrol import enroll
    from agent.platform import current

    cfg = local_config(tmp_path, live.base, point=point)
    assert enroll(cfg, live.base, live.cli("enroll-code", "create", "--point", point), current()) == 0
    return cfg, State(cfg)


@pytest.fixture
def key():
    return crypto.Ed25519PrivateKey.generate()


# -- accepting an envelope ----------------------------------------------------------------------------------
def test_a_good_envelope_is_accepted_with_its_digest(key):
    keys = pol.parse_keys([key_object(key)])
    accepted = pol.verify_envelope(envelope(POLICY, POINT, [key]), keys, POINT)
    assert accepted.policy == POLICY and accepted.digest == pol.canonical_digest(POLICY)
    assert accepted.digest.startswith("sha256:") and len(accepted.digest) == 71


def _edit_target(data: bytes) -> bytes:
    return data.replace(b"127.0.0.1:9", b"127.0.0.1:7")


@pytest.mark.parametrize("case,reason", [
    ("edited payload", pol.BAD_SIGNATURE),
    ("signed by another key", pol.BAD_SIGNATURE),
    ("another key under the pinned key's id", pol.BAD_SIGNATURE),
    ("unsigned", pol.BAD_SIGNATURE),
    ("other point", pol.OTHER_POINT),
    ("digest mismatch", pol.DIGEST_MISMATCH),
    ("not json", pol.MALFORMED),
])
def test_bad_envelopes_are_refused_naming_why(key, case, reason):
    keys = pol.parse_keys([key_object(key)])
    other = crypto.Ed25519PrivateKey.generate()
    raw = {
        "edited payload": lambda: envelope(POLICY, POINT, [key], payload_edit=_edit_target),
        "signed by another key": lambda: envelope(POLICY, POINT, [other]),
        "another key under the pinned key's id": lambda: _relabel(envelope(POLICY, POINT, [other]), keys[0].key_id),
        "unsigned": lambda: envelope(POLICY, POINT, []),
        "other point": lambda: envelope(POLICY, "620102001999", [key]),
        "digest mismatch": lambda: envelope(POLICY, POINT, [key], digest="sha256:" + "0" * 64),
        "not json": lambda: b"{not json",
    }[case]()
    with pytest.raises(pol.PolicyRefused) as info:
        pol.verify_envelope(raw, keys, POINT)
    assert info.value.reason == reason and info.value.message_cn


def _relabel(raw: bytes, key_id: str) -> bytes:
    doc = json.loads(raw)
    doc["signatures"][0]["key_id"] = key_id
    return json.dumps(doc).encode()


def test_without_pinned_keys_nothing_is_accepted(key):
    with pytest.raises(pol.PolicyRefused) as info:
        pol.verify_envelope(envelope(POLICY, POINT, [key]), [], POINT)
    assert info.value.reason == pol.NO_KEYS


def test_key_objects_are_checked_before_they_are_pinned(key):
    good = key_object(key)
    assert pol.parse_keys([good])[0].key_id == good["key_id"]
    for bad, field in (({**good, "key_id": "0" * 16}, "key_id"), ({**good, "algorithm": "RSA"}, "algorithm"),
                       ({**good, "public_key": base64.b64encode(b"x" * 31).decode()}, "public_key"),
                       ({**good, "public_key": base64.b64encode((1).to_bytes(32, "little")).decode()}, "public_key")):
        with pytest.raises(ValueError, match=field):
            pol.parse_keys([bad])


# -- the keeper: what runs, what is said --------------------------------------------------------------------
def test_a_verified_policy_replaces_every_local_check_setting_with_one_warning(tmp_path, key, caplog):
    cfg = local_config(tmp_path)
    assert cfg.local_check_keys == ("fallback.core_network", "fallback.usage", "fallback.checks")
    keeper = PolicyKeeper(cfg, pinned_state(cfg, key))
    assert keeper.current() is cfg and keeper.describe()[0] == "warn"  # never fetched: the local file runs
    with caplog.at_level(logging.WARNING, logger="pointwatch.policy"):
        assert keeper.offer(envelope(POLICY, POINT, [key]))
        assert keeper.offer(envelope({**POLICY, "intervals": {"network": "40s"}}, POINT, [key]))
    run = keeper.current()
    assert run.policy_digest == pol.canonical_digest({**POLICY, "intervals": {"network": "40s"}})
    assert [t.name for t in run.core_network.tcp] == ["县级平台"]
    assert run.disabled_checks == set(), "the local file's checks.disabled does not survive a policy"
    assert run.isolation.internet_canaries == [] and run.intervals["network"] == 40.0
    assert run.point.code == POINT and run.collector.url == cfg.collector.url and run.state_dir == cfg.state_dir
    warnings = [r.getMessage() for r in caplog.records if "local_check_settings_ignored" in r.getMessage()]
    assert len(warnings) == 1 and "fallback.usage" in warnings[0] and "fallback.checks" in warnings[0]
    status, message, details = keeper.describe()
    assert status == "ok" and run.policy_digest in message and details["digest"] == run.policy_digest


def test_the_cache_is_the_envelope_byte_for_byte_and_private(tmp_path, key):
    cfg = local_config(tmp_path)
    state = pinned_state(cfg, key)
    raw = envelope(POLICY, POINT, [key])
    assert PolicyKeeper(cfg, state).offer(raw)
    assert state.policy_path.read_bytes() == raw
    assert stat.S_IMODE(os.stat(state.policy_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state.policy_keys_path).st_mode) == 0o600


def test_a_refused_fetch_keeps_the_last_good_policy_and_says_fail(tmp_path, key):
    cfg = local_config(tmp_path)
    keeper = PolicyKeeper(cfg, pinned_state(cfg, key))
    assert keeper.offer(envelope(POLICY, POINT, [key]))
    good = keeper.current()
    assert not keeper.offer(envelope({"usage": {"forbidden_software": "none"}}, "620102001999", [key]))
    assert keeper.current() is good
    status, message, details = keeper.describe()
    assert status == "fail" and "其他服务点" in message and details["reason"] == pol.OTHER_POINT
    assert pol.verify_envelope(keeper.state.policy_cache(), keeper.state.policy_keys(), POINT).digest == good.policy_digest


def test_a_policy_this_agent_cannot_run_is_refused_naming_the_field(tmp_path, key):
    cfg = local_config(tmp_path)
    keeper = PolicyKeeper(cfg, pinned_state(cfg, key))
    assert not keeper.offer(envelope({"core_network": {"tcp": [{"target": "127.0.0.1:70000"}]}}, POINT, [key]))
    status, message, details = keeper.describe()
    assert status == "fail" and details["reason"] == pol.UNUSABLE and "core_network.tcp[0].target" in message
    assert keeper.current() is cfg and keeper.state.policy_cache() is None
    assert not keeper.offer(envelope({"point": {"code": "X"}}, POINT, [key]))  # never a bootstrap key
    assert "unknown key 'point'" in keeper.describe()[1]


def test_rotation_through_announce_keys(tmp_path, key):
    cfg = local_config(tmp_path)
    state = pinned_state(cfg, key)
    new = crypto.Ed25519PrivateKey.generate()
    keeper = PolicyKeeper(cfg, state)
    assert not keeper.offer(envelope(POLICY, POINT, [new])), "the new key is not trusted before it is announced"
    assert keeper.offer(envelope(POLICY, POINT, [key], announce=[new]))
    assert [k.key_id for k in state.policy_keys()] == [key_object(key)["key_id"], key_object(new)["key_id"]]
    later = {**POLICY, "intervals": {"network": "45s"}}
    assert keeper.offer(envelope(later, POINT, [new]))  # signed by the new key alone
    assert keeper.current().policy_digest == pol.canonical_digest(later)
    restarted = PolicyKeeper(cfg, State(cfg))
    restarted.load_cache()
    assert restarted.current().policy_digest == pol.canonical_digest(later)
    # An announcement signed by a key that is not pinned pins nothing.
    rogue, rogue2 = crypto.Ed25519PrivateKey.generate(), crypto.Ed25519PrivateKey.generate()
    assert not keeper.offer(envelope(POLICY, POINT, [rogue], announce=[rogue2]))
    assert len(state.policy_keys()) == 2


def test_a_tampered_cache_is_refused_at_start_then_a_fetch_replaces_it(tmp_path, live):
    cfg, state = enrolled(live, tmp_path)
    PolicyFetcher(PolicyKeeper(cfg, state), state.token).fetch_once()
    issued = state.policy_cache()
    assert pol.verify_envelope(issued, state.policy_keys(), POINT).digest == pol.canonical_digest(POLICY)
    # Someone at the PC widens the exam: the forbidden-software check off, the payload re-encoded.
    doc = json.loads(state.policy_path.read_bytes())
    payload = json.loads(base64.b64decode(doc["payload"]))
    payload["policy"]["usage"]["forbidden_software"] = "default"
    payload["policy"]["core_network"]["tcp"] = []
    payload["digest"] = pol.canonical_digest(payload["policy"])
    doc["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    state.policy_path.write_text(json.dumps(doc))

    keeper = PolicyKeeper(cfg, State(cfg))
    keeper.load_cache()
    assert keeper.current() is cfg, "the tampered policy is not run"
    status, message, details = keeper.describe()
    assert status == "fail" and "本地缓存的策略" in message and "签名" in message
    assert details["reason"] == pol.BAD_SIGNATURE
    fetcher = PolicyFetcher(keeper, State(cfg).token)
    fetcher.fetch_once()  # nothing trusted to compare with: the whole envelope again
    assert keeper.describe()[0] == "ok" and keeper.current().policy_digest == pol.canonical_digest(POLICY)
    assert state.policy_cache() == issued, "the collector's envelope, byte for byte"
    inode = state.policy_path.stat().st_ino
    fetcher.fetch_once()  # 304 now: nothing rewritten (a 200 is cached through a new file)
    assert keeper.describe()[0] == "ok" and state.policy_path.stat().st_ino == inode


def test_an_unreachable_collector_keeps_the_cached_policy_across_a_restart(tmp_path, key):
    cfg = local_config(tmp_path, f"http://127.0.0.1:{free_port()}")  # nothing listens there
    state = pinned_state(cfg, key)
    assert PolicyKeeper(cfg, state).offer(envelope(POLICY, POINT, [key]))
    for _restart in range(2):
        keeper = PolicyKeeper(cfg, State(cfg))
        keeper.load_cache()
        PolicyFetcher(keeper, State(cfg).token).fetch_once()
        status, message, details = keeper.describe()
        assert status == "warn" and "无法连接采集端" in message and pol.canonical_digest(POLICY) in message
        assert keeper.current().policy_digest == pol.canonical_digest(POLICY)
        assert [t.name for t in keeper.current().core_network.tcp] == ["县级平台"]


def test_no_policy_at_the_collector_runs_the_local_file_and_says_so(tmp_path, live):
    cfg, state = enrolled(live, tmp_path, NO_POLICY_POINT)
    keeper = PolicyKeeper(cfg, state)
    PolicyFetcher(keeper, state.token).fetch_once()
    status, message, _ = keeper.describe()
    assert status == "warn" and "没有为本服务点下发策略" in message and keeper.current() is cfg


# -- config and wire ----------------------------------------------------------------------------------------
def test_check_settings_both_at_the_top_and_under_fallback_are_an_error(tmp_path):
    with pytest.raises(ConfigError, match="usage.*fallback"):
        local_config(tmp_path, extra="usage: {allowed_ports: [22]}\n")


def test_policy_refresh_is_validated_like_the_other_durations(tmp_path):
    cfg = config_mod.parse(f'point: {{code: "{POINT}"}}\ncollector: {{policy_refresh: 2m}}\n')
    assert cfg.collector.policy_refresh == 120.0
    with pytest.raises(ConfigError, match="collector.policy_refresh.*below the minimum 30s"):
        config_mod.parse(f'point: {{code: "{POINT}"}}\ncollector: {{policy_refresh: 5s}}\n')


def test_a_report_carries_the_policy_digest_only_when_checked_against_a_policy(tmp_path, key):
    cfg = local_config(tmp_path)
    host = Host(hostname="pc", os="Linux", fingerprint=Fingerprint(machine_id="m"))
    local = report_to_dict(build_report(cfg, host, [], 1, "agent-1"))
    assert "policy_digest" not in local
    under = config_mod.with_policy(cfg, POLICY, pol.canonical_digest(POLICY))
    checked = report_to_dict(build_report(under, host, [], 2, "agent-1"))
    assert checked["policy_digest"] == pol.canonical_digest(POLICY)
    stored = parse_reports(json.dumps({"reports": [local, checked]}).encode())  # the collector's parser
    assert [r.policy_digest for r in stored] == [None, pol.canonical_digest(POLICY)]


def test_a_policy_with_other_intervals_reschedules_the_jobs_in_place():
    from datetime import timedelta

    from agent.scheduler import make_scheduler, reschedule

    class Runner:
        def run(self, job):
            return 0

    jobs = tuple(config_mod.DEFAULT_INTERVALS)
    sched = make_scheduler(Runner(), dict(config_mod.DEFAULT_INTERVALS), jobs)
    try:
        sched.start(paused=True)
        new = {**config_mod.DEFAULT_INTERVALS, "network": 30.0, "identity": 600.0}
        reschedule(sched, dict(config_mod.DEFAULT_INTERVALS), new, jobs)
        assert {j: sched.get_job(j).trigger.interval for j in jobs} == {j: timedelta(seconds=new[j]) for j in jobs}
    finally:
        sched.shutdown(wait=False)


def test_enrolment_pins_the_answers_keys_and_drops_a_cache_they_do_not_sign(tmp_path, key, live):
    cfg = local_config(tmp_path, live.base)
    state = State(cfg)
    state.ensure_dir()
    state.save_policy_cache(envelope(POLICY, POINT, [key]))  # from before, under another collector's key
    cfg, state = enrolled(live, tmp_path)
    listed = [line.split("\t") for line in live.cli("policy", "keys", "list").splitlines() if "\t" in line]
    assert [k.to_json() for k in state.policy_keys()] == [
        {"algorithm": alg, "key_id": kid, "public_key": pub} for kid, alg, pub in listed]
    assert state.policy_cache() is None, "a cache the pinned keys do not verify is dropped"
    PolicyFetcher(PolicyKeeper(cfg, state), state.token).fetch_once()
    assert state.policy_cache() is not None
    cfg, state = enrolled(live, tmp_path)
    assert state.policy_cache() is not None, "a cache the pinned keys verify is kept"


def test_an_enrolment_answer_with_a_misnamed_key_pins_nothing(tmp_path, capsys):
    from agent.enrol import enroll
    from agent.platform import current

    collector = PolicyCollector(free_port(), POINT).start()  # what a real collector never answers
    try:
        cfg = local_config(tmp_path, collector.url)
        state = State(cfg)
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        collector.enrol_keys = [{**key_object(collector.key), "key_id": "0123456789abcdef"}]
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 1
        out = capsys.readouterr().out
        assert "策略签名公钥无效" in out and "policy_keys[0].key_id" in out
        assert [k.key_id for k in state.policy_keys()] == [key_object(collector.key)["key_id"]]
    finally:
        collector.stop()


def test_a_refusal_ends_when_the_collector_says_the_running_policy_is_current(tmp_path, live):
    cfg, state = enrolled(live, tmp_path)
    keeper = PolicyKeeper(cfg, state)
    fetcher = PolicyFetcher(keeper, state.token)
    fetcher.fetch_once()
    assert keeper.describe()[0] == "ok"
    doc = json.loads(state.policy_cache())
    doc["payload"] = base64.b64encode(_edit_target(base64.b64decode(doc["payload"]))).decode()
    edited = json.dumps(doc).encode()  # a fetched envelope, its target changed on the way
    assert not keeper.offer(edited)
    assert keeper.describe()[2]["reason"] == pol.BAD_SIGNATURE
    inode = state.policy_path.stat().st_ino
    fetcher.fetch_once()  # 304: the running policy is the collector's current one
    assert keeper.describe()[0] == "ok" and state.policy_path.stat().st_ino == inode
