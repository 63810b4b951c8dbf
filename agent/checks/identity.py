"""identity.fingerprint (专机): the facts the collector pins at enrolment (人机信息相符)."""

from __future__ import annotations

from agent.checks import Outcome, Probe
from agent.platform import is_placeholder

CHECK_IDS = ("identity.fingerprint",)


def probes(config, platform) -> list[Probe]:
    if not config.enabled("identity.fingerprint"):
        return []
    return [Probe("identity.fingerprint", "本机", lambda: fingerprint(platform), deadline=30)]


def fingerprint(platform) -> Outcome:
    fp = platform.fingerprint()
    ids = platform.hardware_ids()
    placeholders = sorted(k for k, v in ids.items() if k.endswith("serial") and is_placeholder(v))
    details = {"machine_id": fp.machine_id, "serial": fp.serial, "macs": fp.macs,
               "hostname": platform.hostname(), "os": platform.os_description(), **ids}
    if placeholders:
        details["placeholder_fields"] = placeholders
    factors = sum(bool(x) for x in (fp.machine_id, fp.serial, ids.get("system_uuid"), fp.macs))
    details["factors"] = factors
    if not fp.machine_id and not fp.serial and not fp.macs:
        return Outcome("error", "无法读取本机的硬件标识", details=details)
    if factors < 2:
        return Outcome("warn", f"本机可识别的硬件标识不足（仅 {factors} 项），无法可靠核对人机信息", details=details)
    return Outcome("ok", f"本机标识：主机名 {details['hostname']}，{factors} 项硬件标识已采集", details=details)
