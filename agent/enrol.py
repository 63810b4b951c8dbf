"""Enrolment: trade a one-time code and this machine's fingerprint for the point's token.

The token is a secret: it is written with 0600 permissions (created so, never widened; on Windows with the
SYSTEM/Administrators-only DACL of agent/statedir.py, set before it holds anything), through a temporary file
and a rename so a crash leaves the old token or the new one, and it is never logged.
The enrolment answer's ``policy_keys`` (the collector's Ed25519 signing keys) are pinned the same way in
``policy_keys.json``: the agent accepts a policy only under a key pinned there (agent/policy.py). Its
``release_keys`` (the offline release keys, not the collector's) are pinned in ``release_keys.json``: the agent
runs an agent release only when one of them signed its manifest (agent/upgrade/manifest.py).
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from pathlib import Path

from agent import transport

log = logging.getLogger("pointwatch.enrol")


class State:
    """The small files of the state directory: agent id and token (the outbox has its own file)."""

    def __init__(self, cfg):
        self.dir = Path(cfg.state_dir)
        self.token_path = Path(cfg.collector.token_file) if cfg.collector.token_file else self.dir / "token"
        self.agent_id_path = self.dir / "agent_id"
        self.policy_keys_path = self.dir / "policy_keys.json"
        self.policy_path = self.dir / "policy.json"  # the last accepted envelope, byte for byte
        self.policy_mark_path = self.dir / "policy_mark.json"  # the newest issued_at accepted (no rollback)
        self.release_keys_path = self.dir / "release_keys.json"  # what may sign an agent release
        self._agent_id: str | None = None
        self.acl_problem: str | None = None  # why the directory is not the agent's alone (agent/statedir.py)

    def ensure_dir(self) -> None:
        from agent.statedir import protect

        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.acl_problem = protect(self.dir)  # done once per process; reported, never raised

    def agent_id(self) -> str:
        """The id the collector gave at enrolment, or a local one until then (kept in memory if unwritable)."""
        try:
            value = self.agent_id_path.read_text().strip()
            if value:
                self._agent_id = value
                return value
        except OSError:
            pass
        if self._agent_id is None:
            self._agent_id = str(uuid.uuid4())
            try:
                self.ensure_dir()
                _write_private(self.agent_id_path, self._agent_id, 0o644)
            except OSError as exc:
                log.warning("agent_id_not_saved error=%s", exc)
        return self._agent_id

    def token(self) -> str | None:
        try:
            return self.token_path.read_text().strip() or None
        except OSError:
            return None

    def policy_keys(self) -> list:
        """The pinned keys; none when the file is missing or unreadable (then no policy can be accepted)."""
        from agent.policy import parse_keys

        try:
            return parse_keys(json.loads(self.policy_keys_path.read_text(encoding="utf-8")), str(self.policy_keys_path))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("policy_keys_unreadable file=%s error=%s", self.policy_keys_path, exc)
            return []

    def save_policy_keys(self, keys) -> None:
        self.ensure_dir()
        _write_private(self.policy_keys_path, json.dumps([k.to_json() for k in keys], indent=1), 0o600)
        _give_to_dir_owner(self.dir, (self.policy_keys_path,))

    def release_keys(self) -> list:
        """The pinned release keys; none when the file is missing or unreadable (then no upgrade can run)."""
        from agent.policy import parse_keys

        try:
            return parse_keys(json.loads(self.release_keys_path.read_text(encoding="utf-8")),
                              str(self.release_keys_path))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.error("release_keys_unreadable file=%s error=%s", self.release_keys_path, exc)
            return []

    def save_release_keys(self, keys) -> None:
        """Pin exactly ``keys`` (none: the file goes, and no release is run until a re-enrolment pins some)."""
        self.ensure_dir()
        if not keys:
            self.release_keys_path.unlink(missing_ok=True)
            return
        _write_private(self.release_keys_path, json.dumps([k.to_json() for k in keys], indent=1), 0o600)
        _give_to_dir_owner(self.dir, (self.release_keys_path,))

    def policy_cache(self) -> bytes | None:
        try:
            return self.policy_path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("policy_cache_unreadable file=%s error=%s", self.policy_path, exc)
            return b""  # there, but unreadable: refused like a tampered one, never taken for "none yet"

    def save_policy_cache(self, raw: bytes) -> None:
        self.ensure_dir()
        _write_private(self.policy_path, raw, 0o600)

    def policy_mark(self) -> str | None:
        """The newest accepted payload's ``issued_at``; None before the first one; "" when unreadable."""
        try:
            doc = json.loads(self.policy_mark_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.error("policy_mark_unreadable file=%s error=%s", self.policy_mark_path, exc)
            return ""  # there, but unreadable: no policy is taken for newer than it
        value = doc.get("issued_at") if isinstance(doc, dict) else None
        return value if isinstance(value, str) else ""

    def save_policy_mark(self, issued_at: str) -> None:
        self.ensure_dir()
        _write_private(self.policy_mark_path, json.dumps({"issued_at": issued_at}), 0o600)
        _give_to_dir_owner(self.dir, (self.policy_mark_path,))

    def save(self, token: str, agent_id: str) -> None:
        self.ensure_dir()
        _write_private(self.token_path, token, 0o600)
        _write_private(self.agent_id_path, agent_id, 0o644)
        self._agent_id = agent_id
        _give_to_dir_owner(self.dir, (self.token_path, self.agent_id_path))


def _write_private(path: Path, text: str | bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.unlink()
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        from agent.statedir import protect_new_file

        protect_new_file(tmp)  # Windows: the DACL before the secret is in it
    except OSError:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    with os.fdopen(fd, "wb") as f:
        f.write(text.encode("utf-8") if isinstance(text, str) else text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)  # the umask may have narrowed it; never wider than asked
    os.replace(tmp, path)


def _drop_cache_not_signed_by(state: State, keys, point_code: str) -> None:
    """A re-enrolment pins the collector's keys afresh; a cached policy they do not verify is from before."""
    from agent.policy import PolicyRefused, verify_envelope

    raw = state.policy_cache()
    if raw is None:
        return
    try:
        verify_envelope(raw, keys, point_code)
    except PolicyRefused:
        state.policy_path.unlink(missing_ok=True)
        state.policy_mark_path.unlink(missing_ok=True)
        log.info("policy_cache_dropped reason=not_signed_by_the_enrolment_keys")


def _give_to_dir_owner(directory: Path, paths) -> None:
    """`enroll` is often run as root by the IT person; the service user must still read its token."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    st = directory.stat()
    if st.st_uid == 0:
        return
    for p in paths:
        os.chown(p, st.st_uid, st.st_gid)


def release_keys_to_pin(pinned: list, offered: list, accepted_ids: set[str]) -> tuple[list, str | None]:
    """The release keys to keep after an enrolment answer offering ``offered``, and the warning to print.

    The first enrolment pins what the collector offers (trust on first use). After that the collector may
    not change them by itself: a release key is what lets code run on every PC, and a collector that was
    taken over (or a man in the middle of an http enrolment) would otherwise put its own key in place
    through a re-enrolment the county staff are asked for. Other keys are pinned only when the operator
    names exactly their key ids (``--accept-release-keys``), read off the offline release machine."""
    if not pinned or {k.key_id for k in offered} == {k.key_id for k in pinned}:
        return offered, None
    ids = {k.key_id for k in offered}
    if ids and ids == accepted_ids:
        return offered, None
    shown = "、".join(sorted(ids)) or "无"
    return pinned, (f"注意：采集端提供的代理发布签名公钥（{shown}）与本机已固定的"
                    f"（{'、'.join(sorted(k.key_id for k in pinned))}）不同，已保留原有公钥。确需更换时，请在离线发布"
                    f"机上核对密钥编号，再用 --accept-release-keys {','.join(sorted(ids)) or '编号'} 重新注册")


def enroll(cfg, collector_url: str | None, code: str, platform=None,
           accept_release_keys: set[str] | None = None) -> int:
    """The `enroll` command; prints to the IT person in Chinese, returns the exit code."""
    if not collector_url:
        print("缺少采集端地址：请用 --collector 指定，或在配置中填写 collector.url")
        return 2
    if platform is None:
        from agent.platform import current

        platform = current()
    state = State(cfg)
    try:  # before the one-time code is spent: a token nobody else may read, or no enrolment at all
        state.ensure_dir()
    except OSError as exc:
        print(f"注册失败：无法创建状态目录 {state.dir}：{exc}")
        return 1
    if state.acl_problem:
        print(f"注册失败：无法将状态目录 {state.dir} 设为仅系统和管理员可访问（{state.acl_problem}）；"
              "请以管理员身份运行")
        return 1
    fp = platform.fingerprint()
    payload = {"code": code, "point_code": cfg.point.code, "hostname": platform.hostname(),
               "fingerprint": {"machine_id": fp.machine_id, "serial": fp.serial, "macs": fp.macs}}
    if cfg.collector.insecure_skip_verify:
        log.warning("tls_verification_disabled by=collector.insecure_skip_verify")
        print("警告：已关闭 TLS 证书校验（collector.insecure_skip_verify），仅应在测试环境使用")
    try:
        ctx = transport.ssl_context(cfg.collector.ca_bundle, cfg.collector.insecure_skip_verify)
        answer = transport.post_json(f"{collector_url.rstrip('/')}/api/v1/enroll", payload, None,
                                     cfg.collector.timeout, ctx)
    except transport.SendError as exc:
        hint = ("注册码无效、已使用、已过期或不属于该服务点" if exc.status in (401, 403, 404, 409, 410)
                else "失败次数过多，请稍后再试" if exc.status == 429 else "请检查网络和采集端地址")
        print(f"注册失败（{hint}）：{exc}")
        return 1
    except (OSError, ValueError) as exc:  # e.g. an unreadable CA bundle
        print(f"注册失败：{exc}")
        return 1
    token, agent_id = answer.get("token"), answer.get("agent_id")
    if not token or not agent_id:
        print("注册失败：采集端的应答缺少 token 或 agent_id")
        return 1
    if answer.get("point_code") and answer["point_code"] != cfg.point.code:
        print(f"注册失败：注册码属于服务点 {answer['point_code']}，而本机配置为 {cfg.point.code}")
        return 1
    from agent.policy import parse_keys

    try:
        keys = parse_keys(answer.get("policy_keys") or [])
    except ValueError as exc:
        print(f"注册失败：采集端应答中的策略签名公钥无效（{exc}）")
        return 1
    try:
        release_keys = parse_keys(answer.get("release_keys") or [], "release_keys")
    except ValueError as exc:
        print(f"注册失败：采集端应答中的代理发布签名公钥无效（{exc}）")
        return 1
    try:
        state.save(token, str(agent_id))
        if keys:
            if {k.key_id for k in keys} != {k.key_id for k in state.policy_keys()}:
                # Other keys: another collector (or one set up anew), whose times the mark cannot order.
                state.policy_mark_path.unlink(missing_ok=True)
            state.save_policy_keys(keys)
            _drop_cache_not_signed_by(state, keys, cfg.point.code)
        pinned = state.release_keys()
        if not pinned and state.release_keys_path.exists() and (
                not release_keys or {k.key_id for k in release_keys} != (accept_release_keys or set())):
            # Pinned, but unreadable (a damaged disk, or a hand edit): not "nothing pinned". Taking what the
            # collector offers here would let a collector taken over re-pin its own key through the re-enrolment
            # the staff are told to do; only the operator naming the ids replaces it, as for readable keys.
            offered = ",".join(sorted(k.key_id for k in release_keys)) or "编号"
            keys_warning = ("注意：本机已固定的代理发布签名公钥文件无法读取，未采用采集端提供的公钥；确需重新固定，"
                            f"请在离线发布机上核对密钥编号，再用 --accept-release-keys {offered} 重新注册")
        else:
            release_keys, keys_warning = release_keys_to_pin(pinned, release_keys, accept_release_keys or set())
            state.save_release_keys(release_keys)
    except OSError as exc:
        print(f"注册成功但无法保存令牌或策略公钥：{exc}")
        return 1
    if keys_warning:
        log.warning("release_keys_kept collector=%s offered_differ=true", collector_url)
        print(keys_warning)
    elif not release_keys:
        log.warning("no_release_keys_in_enrolment collector=%s", collector_url)
        print("注意：采集端未提供代理发布签名公钥，本机代理不会自动升级")
    if not keys:
        log.warning("no_policy_keys_in_enrolment collector=%s", collector_url)
        print("注意：采集端未提供策略签名公钥，本机将只按本地配置检查")
    log.info("enrolled point=%s agent_id=%s", cfg.point.code, agent_id)  # the token itself is never logged
    print(f"注册成功：服务点 {cfg.point.code}，终端编号 {agent_id}")
    return 0
