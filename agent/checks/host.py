"""host.resources: CPU, memory, disk space and uptime of the terminal itself."""

from __future__ import annotations

import time

from agent.checks import Outcome, Probe, read_fact, unavailable
from agent.vocabulary import CHECKS_BY_FAMILY, HOST_RESOURCES

CHECK_IDS = CHECKS_BY_FAMILY["host"]

# An old office PC that is this full cannot run the insurance client well; warn before it fails.
MEMORY_WARN = 0.90
DISK_WARN = 0.90
DISK_FAIL = 0.98


def probes(config, platform) -> list[Probe]:
    if not config.enabled(HOST_RESOURCES):
        return []
    return [Probe(HOST_RESOURCES, "本机", lambda: resources(platform), deadline=5)]


def resources(platform) -> Outcome:
    disk_path = platform.system_disk()
    cpu = read_fact(platform, "cpu_ratio")
    mem = read_fact(platform, "memory")
    disk = read_fact(platform, "disk_usage", disk_path)
    # A PC has memory and a system disk: a zero total is a read that failed, never "0% used".
    if not getattr(mem, "total", 0):
        raise unavailable("memory", platform.fact_query("memory"), "reported no memory")
    if not getattr(disk, "total", 0):
        raise unavailable("disk_usage", platform.fact_query("disk_usage"), f"reported no disk at {disk_path}")
    uptime = max(0.0, time.time() - read_fact(platform, "boot_time"))
    mem_ratio, disk_ratio = mem.percent / 100, disk.percent / 100
    details = {
        "cpu_ratio": round(cpu, 3),
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
