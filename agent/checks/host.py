"""host.resources: CPU, memory, disk space and uptime of the terminal itself."""

from __future__ import annotations

import time

import psutil

from agent.checks import Outcome, Probe
from agent.vocabulary import CHECKS_BY_FAMILY, HOST_RESOURCES

CHECK_IDS = CHECKS_BY_FAMILY["host"]

# An old office PC that is this full cannot run the insurance client well; warn before it fails.
MEMORY_WARN = 0.90
DISK_WARN = 0.90
DISK_FAIL = 0.98


def probes(config, platform) -> list[Probe]:
    if not config.enabled(HOST_RESOURCES):
        return []
    return [Probe(HOST_RESOURCES, "本机", lambda: resources(platform.system_disk()), deadline=5)]


def resources(disk_path: str) -> Outcome:
    cpu = psutil.cpu_percent(interval=0.2) / 100
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage(disk_path)
    uptime = max(0.0, time.time() - psutil.boot_time())
    mem_ratio, disk_ratio = mem.percent / 100, disk.percent / 100
    details = {
        "cpu_ratio": round(cpu, 3),
        "cpu_count": psutil.cpu_count(),
        "memory_total_bytes": mem.total,
        "memory_used_ratio": round(mem_ratio, 3),
        "disk_path": disk_path,
        "disk_total_bytes": disk.total,
        "disk_free_bytes": disk.free,
        "disk_used_ratio": round(disk_ratio, 3),
        "uptime_seconds": round(uptime),
    }
    summary = (f"CPU {cpu:.0%}，内存 {mem_ratio:.0%}，磁盘({disk_path}) {disk_ratio:.0%}，"
               f"已运行 {uptime / 86400:.1f} 天")
    if disk_ratio >= DISK_FAIL:
        return Outcome("fail", f"磁盘空间即将耗尽：{summary}", value=disk_ratio, unit="ratio", details=details)
    problems = []
    if disk_ratio >= DISK_WARN:
        problems.append("磁盘空间不足")
    if mem_ratio >= MEMORY_WARN:
        problems.append("内存占用过高")
    if problems:
        return Outcome("warn", f"{'、'.join(problems)}：{summary}", value=disk_ratio, unit="ratio", details=details)
    return Outcome("ok", f"资源正常：{summary}", value=disk_ratio, unit="ratio", details=details)
