"""What the agent checks against right now, and keeping it current: the cached and fetched signed policy.

:class:`PolicyKeeper` holds the config the scheduler's jobs take at the start of every run: the local file's
(bootstrap + fallback) until a verified policy exists, then the bootstrap with the policy's check settings
(agent/config.py ``with_policy``). It loads ``<state_dir>/policy.json`` at start and verifies it again;
:class:`PolicyFetcher` asks ``GET /api/v1/agent/policy`` at start and every ``collector.policy_refresh``
with ``If-None-Match``. A policy is only ever replaced by a verified one: an unreachable collector, a 404 or
a refused envelope keep the last good policy running, for as long as it takes. What happened is the
``agent.policy_fetch`` result in every report (ok / warn / fail, the message in Chinese).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timezone

from agent import transport
from agent.config import with_policy
from agent.confignode import ConfigError
from agent.policy import (
    UNUSABLE,
    Accepted,
    PolicyRefused,
    issued_time,
    merge_keys,
    refuse_if_older,
    verify_envelope,
)
from agent.vocabulary import AGENT_POLICY_FETCH, FAIL, OK, WARN
from agent.wire import Result, utcnow

log = logging.getLogger("pointwatch.policy")

POLICY_PATH = "/api/v1/agent/policy"
RETRY_AFTER_FAILURE = 60.0  # an unreachable collector is asked again this often (or every refresh, if sooner)
TARGET = "检查策略"


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


class PolicyKeeper:
    def __init__(self, cfg, state, on_change=None):
        self.local, self.state, self.on_change = cfg, state, on_change
        self._lock = threading.Lock()
        self._cfg = cfg
        self.accepted: Accepted | None = None
        self.since: float | None = None      # when this agent started running the accepted digest
        self.refused: PolicyRefused | None = None  # sticky until a good policy is accepted
        self.refused_what = ""                # "本地缓存的策略" or "采集端下发的策略"
        self.problem: str | None = None       # why the last fetch did not give a policy (warn)
        self._warned_local = False

    # -- what the jobs read -----------------------------------------------------------------------------
    def current(self):
        with self._lock:
            return self._cfg

    def result(self) -> Result:
        status, message, details = self.describe()
        return Result(check=AGENT_POLICY_FETCH, target=TARGET, status=status, message=message,
                      details=details, observed_at=utcnow())

    def describe(self) -> tuple[str, str, dict]:
        with self._lock:
            acc, since, refused, problem = self.accepted, self.since, self.refused, self.problem
        details: dict = {"source": "policy" if acc else "local"}
        if acc:
            details.update(digest=acc.digest, issued_at=acc.issued_at, running_since=_when(since or time.time()),
                           key_id=acc.key_id)
            running = f"继续使用 {_when(since or time.time())} 起运行的已校验策略 {acc.digest}"
        else:
            running = "按本机配置文件检查"
        if refused:
            details.update(reason=refused.reason, refused=self.refused_what, **({"problem": problem} if problem else {}))
            return FAIL, f"已拒绝{self.refused_what}：{refused.message_cn}；{running}", details
        if problem:
            details["problem"] = problem
            return WARN, f"{problem}；{running}", details
        if acc:
            return OK, (f"运行采集端下发的已校验策略 {acc.digest}（签发于 {acc.issued_at or '未知'}，"
                        f"本机自 {_when(since or time.time())} 起使用）"), details
        return WARN, f"尚未获取过采集端下发的策略；{running}", details

    # -- changing it ------------------------------------------------------------------------------------
    def load_cache(self) -> None:
        """At start: the cached envelope, verified again; a refused one is reported and a fetch follows."""
        raw = self.state.policy_cache()
        if raw is None:
            return
        try:
            self._apply(verify_envelope(raw, self.state.policy_keys(), self.local.point.code), cached=True)
        except PolicyRefused as exc:
            log.error("policy_cache_refused file=%s reason=%s detail=%s", self.state.policy_path, exc.reason,
                      exc.detail)
            with self._lock:
                self.refused, self.refused_what = exc, "本地缓存的策略"

    def offer(self, raw: bytes) -> bool:
        """A fetched envelope: applied and cached when it verifies; else refused and reported."""
        try:
            accepted = verify_envelope(raw, self.state.policy_keys(), self.local.point.code)
            self._apply(accepted, cached=False)
        except PolicyRefused as exc:
            log.error("policy_refused reason=%s detail=%s", exc.reason, exc.detail)
            with self._lock:
                self.refused, self.refused_what, self.problem = exc, "采集端下发的策略", None
            return False
        return True

    def unchanged(self) -> None:
        """304: the collector's policy is the one running (a refusal of another one is over)."""
        with self._lock:
            self.problem, self.refused = None, None

    def failed(self, problem: str) -> None:
        with self._lock:
            self.problem = problem

    def _apply(self, accepted: Accepted, cached: bool) -> None:
        mark = self.state.policy_mark()
        refuse_if_older(accepted, mark)  # a replayed or restored older envelope: refused, the mark kept
        try:
            cfg = with_policy(self.local, accepted.policy, accepted.digest)
        except ConfigError as exc:
            raise PolicyRefused(UNUSABLE, str(exc)) from None
        if accepted.announce:
            keys = self.state.policy_keys()
            merged = merge_keys(keys, accepted.announce)
            if merged != keys:  # pinned before the payload is cached: the cache always verifies
                try:
                    self.state.save_policy_keys(merged)
                    log.info("policy_keys_pinned announced=%s", ",".join(k.key_id for k in accepted.announce))
                except OSError as exc:  # the policy is signed by a pinned key all the same: it runs
                    log.warning("policy_keys_not_saved error=%s", exc)
        if not cached:
            try:
                self.state.save_policy_cache(accepted.raw)
            except OSError as exc:  # runs all the same; the next start fetches again
                log.warning("policy_cache_not_saved error=%s", exc)
        if mark is None or issued_time(accepted.issued_at) > issued_time(mark):
            try:
                self.state.save_policy_mark(accepted.issued_at)
            except OSError as exc:  # runs all the same; the mark stays where it was
                log.warning("policy_mark_not_saved error=%s", exc)
        with self._lock:
            old = self._cfg
            same = self.accepted is not None and self.accepted.digest == accepted.digest
            self.accepted, self.refused, self.problem = accepted, None, None
            if not same:
                self._cfg, self.since = cfg, time.time()
        if same:
            return
        log.info("policy_applied digest=%s issued_at=%s source=%s", accepted.digest, accepted.issued_at,
                 "cache" if cached else "collector")
        if self.local.local_check_keys and not self._warned_local:
            self._warned_local = True
            log.warning("local_check_settings_ignored keys=%s policy=%s", ",".join(self.local.local_check_keys),
                        accepted.digest)
        if self.on_change:
            self.on_change(old, cfg)


class PolicyFetcher(threading.Thread):
    def __init__(self, keeper: PolicyKeeper, token_reader, ssl_ctx=None, speedup: float = 1.0):
        super().__init__(name="policy", daemon=True)
        self.keeper, self.token_reader, self.ssl_ctx, self.speedup = keeper, token_reader, ssl_ctx, speedup
        self.cfg = keeper.local
        self.stopping = threading.Event()

    def run(self) -> None:
        delay = self.cfg.collector.policy_refresh / self.speedup  # started after a first fetch_once()
        while not self.stopping.wait(delay):
            try:
                delay = self.fetch_once()
            except Exception:  # never end the thread: the policy in force keeps running
                log.exception("policy_fetch_crashed")
                delay = RETRY_AFTER_FAILURE / self.speedup

    def stop(self) -> None:
        self.stopping.set()

    def fetch_once(self) -> float:
        """One request; returns the wait before the next."""
        refresh = self.cfg.collector.policy_refresh
        retry = min(refresh, RETRY_AFTER_FAILURE) / self.speedup
        url, token = self.cfg.collector.url, self.token_reader()
        if not url or not token:
            self.keeper.failed("尚未注册，无法获取采集端下发的策略（请运行 pointwatch-agent enroll）")
            return retry
        acc = self.keeper.accepted
        try:
            status, _etag, body = transport.get(url + POLICY_PATH, token, self.cfg.collector.timeout,
                                                self.ssl_ctx, etag=acc.digest if acc else None)
        except transport.SendError as exc:
            self.keeper.failed(self._problem(exc))
            log.warning("policy_fetch_failed status=%s error=%s", exc.status, exc)
            return retry
        if status == 304 and acc:
            self.keeper.unchanged()
        elif status == 200:
            self.keeper.offer(body)
        else:
            self.keeper.failed(f"采集端对策略请求的应答无法识别（HTTP {status}）")
        return refresh / self.speedup

    @staticmethod
    def _problem(exc: transport.SendError) -> str:
        if exc.status == 404 and "no_policy" in exc.body:
            return "采集端没有为本服务点下发策略"
        if exc.status in (401, 403):
            return f"采集端拒绝了本机令牌（HTTP {exc.status}），无法获取策略，请重新注册"
        if exc.status is None:
            return f"无法连接采集端获取策略（{exc}）"
        return f"采集端未能提供策略（HTTP {exc.status}）"
