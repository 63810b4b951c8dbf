"""An older signed policy is refused: a replayed envelope (a MITM on plain http) or a restored policy.json.

The agent keeps the newest accepted payload's ``issued_at`` in ``<state_dir>/policy_mark.json`` and refuses a
payload issued before it, fetched or cached (agent/policy.py ``refuse_if_older``).
"""

from __future__ import annotations

import base64
import json
import os
import stat

import pytest
from cryptography.hazmat.primitives import serialization as se
from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto

from agent import policy as pol
from agent.enrol import State, _drop_cache_not_signed_by
from agent.policyfetch import PolicyKeeper
from tests.conftest import free_port
from tests.policy_collector import PolicyCollector, envelope, key_object
from tests.test_agent_policy import POINT, POLICY, local_config, pinned_state

OLD_POLICY = {**POLICY, "core_network": {**POLICY["core_network"], "timeout": "30s"}}


def at(issued: str):
    """Sets the payload's issued_at (the signature is made over the edited payload)."""
    def edit(data: bytes) -> bytes:
        doc = json.loads(data)
        doc["issued_at"] = issued
        return json.dumps(doc, ensure_ascii=False).encode("utf-8")
    return edit


def signed(policy, key, issued: str) -> bytes:
    """``envelope`` signs before ``payload_edit``: sign again over the payload with the wanted time."""
    raw = json.loads(envelope(policy, POINT, [key]))
    payload = at(issued)(base64.b64decode(raw["payload"]))
    pub = key.public_key().public_bytes(se.Encoding.Raw, se.PublicFormat.Raw)
    return json.dumps({"payload": base64.b64encode(payload).decode(),
                       "signatures": [{"key_id": pol.key_id_of(pub),
                                       "signature": base64.b64encode(key.sign(payload)).decode()}]}).encode()


@pytest.fixture
def key():
    return crypto.Ed25519PrivateKey.generate()


def test_a_replayed_older_envelope_is_refused_and_the_newer_policy_keeps_running(tmp_path, key):
    cfg = local_config(tmp_path)
    state = pinned_state(cfg, key)
    keeper = PolicyKeeper(cfg, state)
    assert state.policy_mark() is None, "first enrolment: no mark yet, the first policy is taken"
    new = signed(POLICY, key, "2026-12-01T00:00:00.000Z")
    assert keeper.offer(new)
    assert state.policy_mark() == "2026-12-01T00:00:00.000Z"
    assert stat.S_IMODE(os.stat(state.policy_mark_path).st_mode) == 0o600
    running = keeper.current()
    assert not keeper.offer(signed(OLD_POLICY, key, "2026-01-01T00:00:00.000Z"))
    status, message, details = keeper.describe()
    assert status == "fail" and details["reason"] == pol.OLDER and "旧策略" in message and "2026-01-01" in message
    assert keeper.current() is running and state.policy_cache() == new
    assert state.policy_mark() == "2026-12-01T00:00:00.000Z"
    assert keeper.offer(new), "the same policy again is not older"
    assert keeper.offer(signed(OLD_POLICY, key, "2026-12-01T07:00:00+08:00")) is False, "23:00 UTC the day before"


def test_a_restored_older_cache_is_refused_at_start(tmp_path, key):
    cfg = local_config(tmp_path)
    state = pinned_state(cfg, key)
    old = signed(OLD_POLICY, key, "2026-01-01T00:00:00.000Z")
    assert PolicyKeeper(cfg, state).offer(old)
    assert PolicyKeeper(cfg, state).offer(signed(POLICY, key, "2026-12-01T00:00:00.000Z"))
    state.policy_path.write_bytes(old)  # the PC owner puts the old policy.json back
    keeper = PolicyKeeper(cfg, State(cfg))
    keeper.load_cache()
    status, message, details = keeper.describe()
    assert keeper.current() is cfg and status == "fail" and details["reason"] == pol.OLDER
    assert "本地缓存的策略" in message and "旧策略" in message


def test_a_cache_from_before_the_mark_existed_sets_it(tmp_path, key):
    cfg = local_config(tmp_path)
    state = pinned_state(cfg, key)
    state.save_policy_cache(signed(POLICY, key, "2026-06-01T00:00:00.000Z"))  # an agent from before the mark
    keeper = PolicyKeeper(cfg, state)
    keeper.load_cache()
    assert keeper.describe()[0] == "ok" and state.policy_mark() == "2026-06-01T00:00:00.000Z"


def test_an_unreadable_mark_or_a_payload_without_a_time_is_refused(tmp_path, key):
    cfg = local_config(tmp_path)
    state = pinned_state(cfg, key)
    with pytest.raises(pol.PolicyRefused) as exc:
        pol.verify_envelope(signed(POLICY, key, "yesterday"), state.policy_keys(), POINT)
    assert exc.value.reason == pol.MALFORMED and "issued_at" in str(exc.value)
    state.policy_mark_path.write_text("{not json")
    keeper = PolicyKeeper(cfg, state)
    assert not keeper.offer(signed(POLICY, key, "2026-12-01T00:00:00.000Z"))
    assert keeper.describe()[2]["reason"] == pol.MARK_UNREADABLE


def test_re_enrolment_under_other_keys_drops_the_mark(tmp_path, key):
    cfg = local_config(tmp_path)
    state = pinned_state(cfg, key)
    assert PolicyKeeper(cfg, state).offer(signed(POLICY, key, "2026-12-01T00:00:00.000Z"))
    same = pol.parse_keys(json.loads(state.policy_keys_path.read_text()))
    _drop_cache_not_signed_by(state, same, POINT)
    assert state.policy_mark() is not None, "the same collector's keys: the mark stays"
    other = crypto.Ed25519PrivateKey.generate()
    _drop_cache_not_signed_by(state, pol.parse_keys([key_object(other)]), POINT)
    assert state.policy_cache() is None and state.policy_mark() is None


def test_re_enrolment_keeps_the_mark_under_the_same_keys_and_drops_it_under_others(tmp_path):
    from agent.enrol import enroll
    from agent.platform import current

    collector = PolicyCollector(free_port(), POINT).start()
    try:
        cfg = local_config(tmp_path, collector.url)
        state = State(cfg)
        assert enroll(cfg, collector.url, "ONE-TIME-123", current()) == 0
        state.save_policy_mark("2026-12-01T00:00:00.000Z")  # no cache: only the keys decide
        assert enroll(cfg, collector.url, "ONE-TIME-124", current()) == 0
        assert state.policy_mark() == "2026-12-01T00:00:00.000Z", "the same collector: its times still order"
        collector.enrol_keys = [key_object(crypto.Ed25519PrivateKey.generate())]
        assert enroll(cfg, collector.url, "ONE-TIME-125", current()) == 0
        assert state.policy_mark() is None, "other keys: another collector's clock, the mark starts afresh"
    finally:
        collector.stop()
