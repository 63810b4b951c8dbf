"""SNMP probe: the system group of any device, and for printers/MFDs HOST-RESOURCES + Printer-MIB.

pysnmp (7.x asyncio API) is imported inside :func:`poll` only, so an agent without SNMP devices never
loads it. Costs are bounded the way a village line needs: the first request (the system group) is sent
once, without retries, so a device that is switched off costs exactly one timeout; only a device that has
answered gets its tables walked, with multi-column GETBULKs run concurrently under one overall deadline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field

from agent.checks.devices import printermib as pm
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


@dataclass
class PollResult:
    answered: bool
    system: dict[str, object] = field(default_factory=dict)
    tables: dict[str, dict[str, object]] = field(default_factory=dict)
    error: str = ""
    incomplete: list[str] = field(default_factory=list)  # tables the deadline cut short
    elapsed_s: float = 0.0


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
    try:
        loop, engine = _shared_engine()
        future = asyncio.run_coroutine_threadsafe(_poll(engine, cfg, timeout, budget), loop)
        result = future.result(timeout=budget + timeout + 1)
    except ImportError as exc:
        result = PollResult(False, error=f"pysnmp unavailable: {exc}")
    except concurrent.futures.TimeoutError:
        future.cancel()
        result = PollResult(False, error="deadline exceeded")
    result.elapsed_s = round(time.perf_counter() - t0, 4)
    return result


_engine_lock = threading.Lock()
_engine: tuple[asyncio.AbstractEventLoop, object] | None = None


def _shared_engine():
    """One SnmpEngine on one event-loop thread for the whole agent.

    Every device's poll is a coroutine on it, so all devices are polled concurrently without a loop and
    an engine per device: building an engine (its MIB view, and with pysmi installed a MIB compiler)
    costs far more than a printer poll itself.
    """
    global _engine
    with _engine_lock:
        if _engine is None:
            from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="snmp", daemon=True).start()
            engine = asyncio.run_coroutine_threadsafe(_new_engine(SnmpEngine), loop).result(30)
            _engine = (loop, engine)
        return _engine


async def _new_engine(factory):
    return factory()


async def _poll(engine, cfg: SnmpConfig, timeout: float, budget: float) -> PollResult:
    from pysnmp.hlapi.v3arch.asyncio import ContextData, UdpTransportTarget, get_cmd

    start = time.monotonic()
    auth = _auth(cfg)
    ctx = ContextData(contextName=cfg.context.encode())
    first = await UdpTransportTarget.create((cfg.host, cfg.port), timeout=timeout, retries=0)
    err, status, _idx, vbs = await get_cmd(engine, auth, first, ctx, *_oids(pm.SYSTEM_OIDS), lookupMib=False)
    if err or status:
        return PollResult(False, error=str(err or status))
    res = PollResult(True, system={str(n): v for n, v in ((n, _plain(v)) for n, v in vbs) if v is not None})
    if not cfg.printer_mib:
        return res
    # The device is up: allow one retry per request from here on, inside what is left of the budget.
    walker = await UdpTransportTarget.create((cfg.host, cfg.port), timeout=timeout, retries=1)
    names = list(pm.PRINTER_TABLES)
    tasks = [asyncio.ensure_future(_walk(engine, auth, walker, ctx, pm.PRINTER_TABLES[n], cfg.version))
             for n in names]
    remaining = max(0.1, budget - (time.monotonic() - start))
    _done, pending = await asyncio.wait(tasks, timeout=remaining)
    for name, task in zip(names, tasks, strict=True):
        if task in pending:
            task.cancel()
            res.incomplete.append(name)
        elif task.exception() is not None:
            res.incomplete.append(name)
            res.error = res.error or f"{name}: {task.exception()}"
        else:
            res.tables[name] = task.result()
    return res


def _auth(cfg: SnmpConfig):
    from pysnmp.hlapi.v3arch.asyncio import CommunityData, UsmUserData
    from pysnmp.hlapi.v3arch.asyncio import auth as a

    if cfg.version in ("1", "2c"):
        return CommunityData(cfg.community, mpModel=0 if cfg.version == "1" else 1)
    auth_proto = {"MD5": a.USM_AUTH_HMAC96_MD5, "SHA": a.USM_AUTH_HMAC96_SHA,
                  "SHA224": a.USM_AUTH_HMAC128_SHA224, "SHA256": a.USM_AUTH_HMAC192_SHA256,
                  "SHA384": a.USM_AUTH_HMAC256_SHA384, "SHA512": a.USM_AUTH_HMAC384_SHA512}
    priv_proto = {"DES": a.USM_PRIV_CBC56_DES, "3DES": a.USM_PRIV_CBC168_3DES, "AES": a.USM_PRIV_CFB128_AES,
                  "AES128": a.USM_PRIV_CFB128_AES, "AES192": a.USM_PRIV_CFB192_AES,
                  "AES256": a.USM_PRIV_CFB256_AES}
    return UsmUserData(
        cfg.user, authKey=cfg.auth_key or None, privKey=cfg.priv_key or None,
        authProtocol=auth_proto[cfg.auth_protocol] if cfg.auth_key else a.USM_AUTH_NONE,
        privProtocol=priv_proto[cfg.priv_protocol] if cfg.priv_key else a.USM_PRIV_NONE)


def _oids(oids):
    from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType

    return [ObjectType(ObjectIdentity(o)) for o in oids]


async def _walk(engine, auth, target, ctx, columns: tuple[str, ...], version: str) -> dict[str, object]:
    """Walk several columns of one table at once (GETBULK, or GETNEXT for v1); rows as {oid: value}."""
    from pysnmp.hlapi.v3arch.asyncio import bulk_cmd, next_cmd

    rows: dict[str, object] = {}
    cursor = {c: c for c in columns}
    while cursor:
        cols = list(cursor)
        if version == "1":
            err, status, _i, vbs = await next_cmd(engine, auth, target, ctx, *_oids(cursor.values()),
                                                  lookupMib=False)
        else:
            err, status, _i, vbs = await bulk_cmd(engine, auth, target, ctx, 0, MAX_REPETITIONS,
                                                  *_oids(cursor.values()), lookupMib=False)
        if err:
            raise RuntimeError(str(err))
        if status:  # v1 noSuchName at the end of the MIB
            break
        last: dict[str, str] = {}
        ended: set[str] = set()
        for i, (name, value) in enumerate(vbs):
            col = cols[i % len(cols)]
            oid = str(name)
            if col in ended:
                continue
            plain = _plain(value)
            if plain is None or not oid.startswith(col + "."):
                ended.add(col)
                continue
            rows[oid] = plain
            last[col] = oid
        for col in cols:
            # Stop a column that ended, or made no progress (guards against agents that loop).
            if col in ended or col not in last or last[col] == cursor[col]:
                del cursor[col]
            else:
                cursor[col] = last[col]
    return rows


def _plain(value):
    from pyasn1.type import univ
    from pysnmp.proto import rfc1905

    if isinstance(value, (rfc1905.NoSuchObject, rfc1905.NoSuchInstance, rfc1905.EndOfMibView)):
        return None
    if isinstance(value, univ.OctetString):
        return value.asOctets()
    if isinstance(value, univ.Integer):
        return int(value)
    return str(value)


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
