"""net.core.tcp: a TCP handshake to a port of the insurance platform."""

from __future__ import annotations

import errno
import socket
import time
from dataclasses import dataclass

from agent.checks import Outcome
from agent.checks.network.settings import NetSettings
from agent.confignode import Node, optional


@dataclass
class TcpTarget:
    host: str
    port: int
    name: str


def parse_target(item: Node) -> TcpTarget:
    t = item.mapping(("target", "name"), required=("target",))
    host, port = t["target"].host_port()
    return TcpTarget(host, port, optional(t, "name", f"{host}:{port}", Node.str))


def deadline(settings: NetSettings) -> float:
    return settings.timeout + 1


def probe(target: TcpTarget, settings: NetSettings) -> Outcome:
    return tcp_connect(target.host, target.port, settings.timeout)


def tcp_reach(host: str, port: int, timeout: float) -> float | None:
    """Seconds until the host answered a SYN (accept or refusal), or None when it did not."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except ConnectionRefusedError:
        pass
    except OSError:
        return None
    return time.perf_counter() - t0


def tcp_connect(host: str, port: int, timeout: float) -> Outcome:
    t0 = time.perf_counter()
    details = {"host": host, "port": port}
    try:
        with socket.create_connection((host, port), timeout=timeout):
            elapsed = time.perf_counter() - t0
    except TimeoutError:
        return Outcome("fail", f"连接 {host}:{port} 超时（{timeout:g} 秒）", unit="seconds",
                       details={**details, "result": "timeout"})
    except ConnectionRefusedError:
        return Outcome("fail", f"{host}:{port} 拒绝连接（端口未开放）", unit="seconds",
                       details={**details, "result": "connection_refused"})
    except socket.gaierror as exc:
        return Outcome("fail", f"无法解析地址 {host}：{exc.strerror}", unit="seconds",
                       details={**details, "result": "resolve_failed"})
    except OSError as exc:
        reason = errno.errorcode.get(exc.errno or 0, "os_error").lower()
        return Outcome("fail", f"无法连接 {host}:{port}：{exc.strerror or exc}", unit="seconds",
                       details={**details, "result": reason})
    details["connect_s"] = round(elapsed, 6)
    return Outcome("ok", f"{host}:{port} 连接成功，用时 {elapsed * 1000:.1f} ms", value=round(elapsed, 6),
                   unit="seconds", details=details)
