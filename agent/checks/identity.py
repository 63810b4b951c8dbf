"""identity.fingerprint (专机): the facts the collector pins at enrolment (人机信息相符).

No single fact is an identity: MachineGuid and /etc/machine-id are copied by cloned images and change on
reinstall, white-box boards carry placeholder serials, and USB NICs come and go. So the check reports all
of them, flags placeholders, and counts how many usable factors there are; the collector compares the set.
"""

from __future__ import annotations

from agent.checks import Outcome, Probe
from agent.platform import is_placeholder
from agent.vocabulary import CHECKS_BY_FAMILY, IDENTITY_FINGERPRINT

CHECK_IDS = CHECKS_BY_FAMILY["identity"]
# Facts that identify hardware (the rest of hardware_ids, such as the vendor, only describe it).
HARDWARE_KEYS = ("system_uuid", "system_serial", "board_serial", "bios_serial")


def probes(config, platform) -> list[Probe]:
    if not config.enabled(IDENTITY_FINGERPRINT):
        return []
    return [Probe(IDENTITY_FINGERPRINT, "本机", lambda: fingerprint(platform), deadline=60)]


def fingerprint(platform) -> Outcome:
    fp = platform.fingerprint()
    ids = platform.hardware_ids()
    placeholders = sorted(k for k in HARDWARE_KEYS if k in ids and is_placeholder(ids[k]))
    details = {"machine_id": fp.machine_id, "serial": fp.serial, "macs": fp.macs,
               "hostname": platform.hostname(), "os": platform.os_description(), **ids,
               "placeholder_fields": placeholders}
    usable = [k for k in HARDWARE_KEYS if ids.get(k) and k not in placeholders]
    factors = (["machine_id"] if fp.machine_id else []) + usable + (["macs"] if fp.macs else [])
    details["factors"] = factors
    if not factors:
        return Outcome("error", "无法读取本机的任何硬件标识", details=details)
    note = f"；{'、'.join(placeholders)} 为厂商占位值，不作为标识" if placeholders else ""
    if len(factors) < 2:
        # One factor cannot tell this machine from a clone or a replacement: nothing reliable was seen.
        return Outcome("error", f"本机可用的硬件标识不足（仅 {'、'.join(factors)}），无法可靠核对人机信息{note}",
                       value=len(factors), unit="count", details=details)
    return Outcome("ok", f"本机标识已采集：主机名 {details['hostname']}，{len(factors)} 项（{'、'.join(factors)}）{note}",
                   value=len(factors), unit="count", details=details)
