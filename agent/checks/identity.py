"""identity.fingerprint (专机): the facts the collector pins at enrolment (人机信息相符).

No single fact is an identity: MachineGuid and /etc/machine-id are copied by cloned images and change on
reinstall, white-box boards carry placeholder serials, and USB NICs come and go. So the check reports all
of them, flags placeholders, and counts how many usable factors there are; the collector compares the set.
"""

from __future__ import annotations

from agent.checks import Outcome, Probe, read_fact, unavailable
from agent.platform import is_placeholder
from agent.vocabulary import CHECKS_BY_FAMILY, IDENTITY_FINGERPRINT
from agent.wire import Fingerprint

CHECK_IDS = CHECKS_BY_FAMILY["identity"]
# Facts that identify hardware (the rest of hardware_ids, such as the vendor, only describe it).
HARDWARE_KEYS = ("system_uuid", "system_serial", "board_serial", "bios_serial")


def probes(config, platform) -> list[Probe]:
    if not config.enabled(IDENTITY_FINGERPRINT):
        return []
    return [Probe(IDENTITY_FINGERPRINT, "本机", lambda: fingerprint(platform), deadline=60)]


def fingerprint(platform) -> Outcome:
    """Every identity fact read on its own: one whose source fails is an error naming it, and so is an empty
    machine id (MachineGuid, /etc/machine-id: every install has one) or no SMBIOS identifier at all."""
    machine_id = read_fact(platform, "machine_id")
    if not machine_id:
        raise unavailable("machine_id", platform.fact_query("machine_id"), "returned an empty machine id")
    ids = read_fact(platform, "hardware_ids")
    if not any(k in ids for k in HARDWARE_KEYS):
        # Every PC's SMBIOS has a UUID or a serial (a placeholder at worst): none at all was not read.
        raise unavailable("hardware_ids", platform.fact_query("hardware_ids"),
                          "returned no SMBIOS identifier (UUID or serial)")
    macs = read_fact(platform, "physical_macs")
    serial = next((ids[k] for k in ("system_serial", "board_serial", "bios_serial")
                   if not is_placeholder(ids.get(k))), "")
    fp = Fingerprint(machine_id=machine_id, serial=serial, macs=macs)
    placeholders = sorted(k for k in HARDWARE_KEYS if k in ids and is_placeholder(ids[k]))
    details = {"machine_id": fp.machine_id, "serial": fp.serial, "macs": fp.macs,
               "hostname": read_fact(platform, "hostname"), "os": read_fact(platform, "os_description"), **ids,
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
