"""The agent as a service: run checks, report to the collector, enrol, show status."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
import uuid
from pathlib import Path

from agent import transport
from agent.platform import current
from agent.report import build_report, host_facts, run_checks
from agent.wire import report_to_dict

log = logging.getLogger("pointwatch.agent")


class State:
    """Small files in the state directory: agent id, token, sequence counter."""

    def __init__(self, cfg):
        self.dir = Path(cfg.state_dir)
        self.token_path = Path(cfg.collector.token_file) if cfg.collector.token_file else self.dir / "token"

    def ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def agent_id(self) -> str:
        path = self.dir / "agent_id"
        if path.exists():
            return path.read_text().strip()
        self.ensure_dir()
        value = str(uuid.uuid4())
        path.write_text(value)
        return value

    def token(self) -> str | None:
        try:
            return self.token_path.read_text().strip() or None
        except OSError:
            return None

    def save_token(self, token: str, agent_id: str) -> None:
        self.ensure_dir()
        fd = os.open(self.token_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        os.chmod(self.token_path, 0o600)
        (self.dir / "agent_id").write_text(agent_id)

    def next_seq(self) -> int:
        path = self.dir / "seq"
        try:
            seq = int(path.read_text()) + 1
        except (OSError, ValueError):
            seq = 1
        path.write_text(str(seq))
        return seq


def _setup_logging(cfg) -> None:
    logging.basicConfig(level=cfg.log_level,
                        format=f"%(asctime)s %(levelname)s point={cfg.point.code} %(name)s %(message)s")


def run_forever(cfg) -> int:
    _setup_logging(cfg)
    if not cfg.collector.url:
        log.error("config_error field=collector.url problem=missing")
        return 2
    state = State(cfg)
    state.ensure_dir()
    if cfg.collector.insecure_skip_verify:
        log.warning("tls_verification_disabled by=collector.insecure_skip_verify")
    ctx = transport.ssl_context(cfg.collector.ca_bundle, cfg.collector.insecure_skip_verify)
    platform = current()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    pending: list[dict] = []
    interval = min(cfg.intervals.values())
    log.info("agent_started collector=%s interval_s=%s", cfg.collector.url, interval)
    while not stop.is_set():
        t0 = time.monotonic()
        results = run_checks(cfg, platform)
        report = build_report(cfg, host_facts(platform), results, state.next_seq(), state.agent_id())
        pending.append(report_to_dict(report))
        token = state.token()
        try:
            ack = transport.send_reports(cfg.collector.url, token or "", pending, cfg.collector.timeout, ctx)
            log.info("reports_sent count=%d accepted=%s duplicates=%s", len(pending), ack.get("accepted"),
                     ack.get("duplicates"))
            pending.clear()
        except transport.SendError as exc:
            log.warning("send_failed pending=%d status=%s error=%s", len(pending), exc.status, exc)
            if not exc.retry:
                pending.clear()
        stop.wait(max(1.0, interval - (time.monotonic() - t0)))
    log.info("agent_stopped")
    return 0


def enroll(cfg, collector_url: str | None, code: str) -> int:
    _setup_logging(cfg)
    if not collector_url:
        print("缺少采集端地址：请用 --collector 指定，或在配置中填写 collector.url")
        return 2
    platform = current()
    fp = platform.fingerprint()
    payload = {"code": code, "point_code": cfg.point.code, "hostname": platform.hostname(),
               "fingerprint": {"machine_id": fp.machine_id, "serial": fp.serial, "macs": fp.macs}}
    ctx = transport.ssl_context(cfg.collector.ca_bundle, cfg.collector.insecure_skip_verify)
    try:
        answer = transport.post_json(f"{collector_url.rstrip('/')}/api/v1/enroll", payload, None,
                                     cfg.collector.timeout, ctx)
    except transport.SendError as exc:
        print(f"注册失败：{exc}")
        return 1
    State(cfg).save_token(answer["token"], answer["agent_id"])
    print(f"注册成功：服务点 {cfg.point.code}，终端编号 {answer['agent_id']}")
    return 0


def status(cfg, as_json: bool) -> int:
    state = State(cfg)
    info = {"state_dir": str(state.dir), "enrolled": state.token() is not None}
    print(json.dumps(info, ensure_ascii=False, indent=2) if as_json else
          "\n".join(f"{k}: {v}" for k, v in info.items()))
    return 0
