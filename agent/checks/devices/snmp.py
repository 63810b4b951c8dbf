"""SNMP probe: the system group of any device, and for printers/MFDs HOST-RESOURCES + Printer-MIB.

SNMP v1/v2c goes over the agent's own BER (:mod:`snmpwire`, standard library only); pysnmp (7.x asyncio
API, :mod:`snmpv3`) is imported only for a device configured with ``version: 3``, so an agent without
SNMPv3 devices never loads it. Costs are bounded the way a village line needs: the first request (the
system group) is sent once, without retries, so a device that is switched off costs exactly one timeout;
only a device that has answered gets its tables walked, with multi-column GETBULKs run concurrently under
one overall deadline.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from agent.checks.devices import printermib as pm
from agent.checks.devices import snmpwire as wire
from agent.checks.devices.common import (
    DeviceConfig,
    MethodResult,
    ProbeContext,
    absent,
    broken,
    cannot,
    ok,
    warn,
)
from agent.checks.devices.snmpwire import PollResult
from agent.confignode import Node, optional
from agent.vocabulary import PRINTER_KINDS

AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "3DES", "AES", "AES128", "AES192", "AES256")
MAX_REPETITIONS = 25


@dataclass
class SnmpConfig:
    host: str
    port: int = 161
    version: str = "2c"
    community: str = "public"
    user: str = ""
    auth_protocol: str = "SHA"
    auth_key: str = ""
    priv_protocol: str = "AES"
    priv_key: str = ""
    context: str = ""
    printer_mib: bool = False
    timeout: float | None = None  # None: the device's timeout


def parse(node: Node, device: DeviceConfig) -> SnmpConfig:
    """``snmp: HOST`` or ``snmp: {host, port, version, community | user/auth/priv, context, printer_mib}``.

    The Printer-MIB is read by default for the kinds that answer it (PRINTER_KINDS)."""
    default_host, printer_kind = device.host, device.kind in PRINTER_KINDS
    if not node.is_mapping():
        return SnmpConfig(host=node.host(), printer_mib=printer_kind)
    keys = ("host", "port", "version", "community", "user", "auth_protocol", "auth_key", "priv_protocol",
            "priv_key", "context", "printer_mib", "timeout")
    m = node.mapping(keys)
    if "host" not in m and not default_host:
        node.fail("missing required key 'host'")
    version = optional(m, "version", "2c", _version)
    cfg = SnmpConfig(
        host=m["host"].host() if "host" in m else default_host, port=optional(m, "port", 161, Node.port),
        version=version, community=optional(m, "community", "public", Node.str),
        context=optional(m, "context", "", lambda n: n.str(allow_empty=True)),
        printer_mib=optional(m, "printer_mib", printer_kind, Node.bool),
        timeout=optional(m, "timeout", None, lambda n: n.duration(0.05, 60)),
    )
    if version == "3":
        if "user" not in m:
            node.fail("SNMP v3 needs 'user'")
        cfg.user = m["user"].str()
        cfg.auth_protocol = optional(m, "auth_protocol", "SHA", lambda n: n.choice(AUTH_PROTOCOLS))
        cfg.priv_protocol = optional(m, "priv_protocol", "AES", lambda n: n.choice(PRIV_PROTOCOLS))
        for key in ("auth_key", "priv_key"):
            if key in m:
                secret = m[key].str()
                if len(secret) < 8:  # RFC 3414 passphrases are at least 8 octets; net-snmp refuses shorter
                    m[key].fail("must be at least 8 characters")
                setattr(cfg, key, secret)
        if cfg.priv_key and not cfg.auth_key:
            node.fail("priv_key needs auth_key too (SNMP v3 has no privacy without authentication)")
    else:
        for key in ("user", "auth_key", "priv_key", "auth_protocol", "priv_protocol"):
            if key in m:
                m[key].fail(f"'{key}' is only for version 3")
    return cfg


def _version(n: Node) -> str:
    # YAML reads `version: 3` as a number and `version: 2c` as text; accept both spellings.
    return Node(str(n.value), n.path, n.line, n.file).choice(("1", "2c", "3"))


# -- I/O ------------------------------------------------------------------------------------------------


def poll(cfg: SnmpConfig, timeout: float, budget: float) -> PollResult:
    """Fetch the system group (and printer tables); ``budget`` caps the whole poll in seconds."""
    t0 = time.perf_counter()
    if cfg.version == "3":
        from agent.checks.devices import snmpv3

        result = snmpv3.poll(cfg, timeout, budget)
    else:
        result = _poll_community(cfg, timeout, budget)
    result.elapsed_s = round(time.perf_counter() - t0, 4)
    return result


def _poll_community(cfg: SnmpConfig, timeout: float, budget: float) -> PollResult:
    """v1/v2c: the system group first, once and without retries (a device that is switched off costs
    exactly one timeout); only a device that answered gets its tables walked, all tables at once, each
    request retried once, inside what is left of the budget."""
    deadline = time.monotonic() + budget
    try:
        session = wire.Session(cfg.host, cfg.port, cfg.version, cfg.community, timeout)
    except OSError as exc:  # the name does not resolve, no route
        return PollResult(False, error=f"{type(exc).__name__}: {exc}")
    with session:
        got = session.exchange({"system": (wire.GET, pm.SYSTEM_OIDS, 0, 0)}, retries=0, deadline=deadline)
        answer = got.get("system", "deadline exceeded")
        if isinstance(answer, str) or answer[0]:
            return PollResult(False, error=answer if isinstance(answer, str) else wire.error_name(answer[0]))
        res = PollResult(True, system={oid: v for oid, v in answer[1] if v is not None})
        if cfg.printer_mib:
            _walk_tables(session, cfg.version, res, max(deadline, time.monotonic() + 0.1))
    return res


def _walk_tables(session: wire.Session, version: str, res: PollResult, deadline: float) -> None:
    pdu, a, b = (wire.GET_NEXT, 0, 0) if version == "1" else (wire.GET_BULK, 0, MAX_REPETITIONS)
    cursors = {name: {c: c for c in cols} for name, cols in pm.PRINTER_TABLES.items()}
    rows: dict[str, dict[str, object]] = {name: {} for name in cursors}
    while cursors:
        got = session.exchange({n: (pdu, list(c.values()), a, b) for n, c in cursors.items()}, retries=1,
                               deadline=deadline)
        for name in list(cursors):
            answer = got.get(name)
            if answer is None or isinstance(answer, str):  # the deadline, or no answer after the retry
                res.incomplete.append(name)
                if answer:
                    res.error = res.error or f"{name}: {answer}"
                del cursors[name]
            elif answer[0]:  # v1 noSuchName at the end of the MIB: the table is done
                del cursors[name]
            else:
                wire.advance(cursors[name], answer[1], rows[name])
                if not cursors[name]:
                    del cursors[name]
    for name in pm.PRINTER_TABLES:
        if name not in res.incomplete:
            res.tables[name] = rows[name]


# -- judgement ------------------------------------------------------------------------------------------


def probe(device: DeviceConfig, cfg: SnmpConfig, ctx: ProbeContext) -> MethodResult:
    t = cfg.timeout or device.timeout
    supply_warn = device.supply_warn
    res = poll(cfg, t, budget=4 * t)
    where = f"{cfg.host}:{cfg.port}"
    base = {"host": cfg.host, "port": cfg.port, "version": cfg.version, "elapsed_s": res.elapsed_s}
    if not res.answered:
        if res.error.startswith("pysnmp unavailable"):
            return cannot("snmp", "无法进行 SNMP 检查：未安装 pysnmp", **base, error=res.error)
        return absent("snmp", f"SNMP {where} 无响应（{t:g} 秒超时）", **base, error=res.error)
    if not cfg.printer_mib:
        state = pm.parse_printer(res.system, {})
        return ok("snmp", f"SNMP 正常：{state.sys_descr[:60]}", **base, **_system_details(state))
    return evaluate(pm.parse_printer(res.system, res.tables), supply_warn, base, res.incomplete)


def evaluate(state: pm.PrinterState, supply_warn: float, base: dict | None = None,
             incomplete: list[str] | None = None) -> MethodResult:
    """Judge a printer: fail when it cannot print, warn on low supplies and lesser conditions."""
    details = {**(base or {}), **_system_details(state),
               "device_status": {i: pm.HR_DEVICE_STATUS_NAMES.get(v, str(v)) for i, v in state.device_status.items()},
               "printer_status": {i: pm.HR_PRINTER_STATUS_NAMES.get(v, str(v)) for i, v in state.printer_status.items()},
               "conditions": state.conditions, "supplies": [s.to_dict() for s in state.supplies],
               "alerts": state.alerts}
    if incomplete:
        details["incomplete_tables"] = incomplete
    problems, warnings = [], []
    failing = [c for c in state.conditions if c in pm.FAILING_CONDITIONS]
    problems += [pm.condition_zh(c) for c in failing]
    if 5 in state.device_status.values():
        problems.append(pm.HR_DEVICE_STATUS_ZH[5])
    warnings += [pm.condition_zh(c) for c in state.conditions if c not in pm.FAILING_CONDITIONS]
    if 3 in state.device_status.values() and not state.conditions:
        warnings.append(pm.HR_DEVICE_STATUS_ZH[3])
    low = [s for s in state.supplies if s.ratio is not None and s.ratio < supply_warn]
    warnings += [f"{supply_label(s)}余量低（{s.ratio:.0%}）" for s in low]
    if incomplete:
        warnings.append("部分信息未在时限内读完")
    details["low_supplies"] = [s.index for s in low]
    summary = supplies_text(state.supplies)
    if problems:
        return broken("snmp", "、".join(problems + warnings) + _tail(summary), **details)
    if warnings:
        return warn("snmp", "、".join(warnings) + _tail(summary), **details)
    return ok("snmp", "运行正常" + _tail(summary), **details)


def supply_label(s: pm.Supply) -> str:
    kind = pm.SUPPLY_TYPES_ZH.get(s.type, "")
    return f"{s.description}（{kind}）" if kind and kind not in s.description else s.description


def supply_value_text(s: pm.Supply) -> str:
    if s.ratio is not None:
        return f"{'剩余空间 ' if s.receptacle else ''}{s.ratio:.0%}"
    return {"some_remaining": "有余量", "unlimited": "不限量", "unknown": "未知", "other": "未知"}[s.state]


def supplies_text(supplies: list[pm.Supply]) -> str:
    return "；".join(f"{supply_label(s)} {supply_value_text(s)}" for s in supplies)


def _tail(summary: str) -> str:
    return f"。耗材：{summary}" if summary else ""


def _system_details(state: pm.PrinterState) -> dict:
    out = {"sys_descr": state.sys_descr, "sys_object_id": state.sys_object_id}
    if state.sys_uptime_s is not None:
        out["sys_uptime_s"] = state.sys_uptime_s
    if state.sys_name:
        out["sys_name"] = state.sys_name
    return out
