"""SNMPv3 through pysnmp: USM authentication and privacy, which :mod:`snmpwire` does not speak.

The agent loads it only for a device configured with ``version: 3``: pysnmp, pyasn1, cryptography (and
pysmi's MIB compiler when installed) cost about 30 MB resident, which an agent polling community SNMP, or
none, does not pay. It polls v1/v2c too, which is how the tests hold :mod:`snmpwire` to pysnmp's reading
of every recording.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

from agent.checks.devices import printermib as pm
from agent.checks.devices.snmpwire import PollResult, advance

MAX_REPETITIONS = 25


def poll(cfg, timeout: float, budget: float) -> PollResult:
    """The system group (and printer tables) through pysnmp; ``budget`` caps the whole poll in seconds."""
    try:
        loop, engine = _shared_engine()
        future = asyncio.run_coroutine_threadsafe(_poll(engine, cfg, timeout, budget), loop)
        return future.result(timeout=budget + timeout + 1)
    except ImportError as exc:
        return PollResult(False, error=f"pysnmp unavailable: {exc}")
    except concurrent.futures.TimeoutError:
        future.cancel()
        return PollResult(False, error="deadline exceeded")


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


async def _poll(engine, cfg, timeout: float, budget: float) -> PollResult:
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


def _auth(cfg):
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
        advance(cursor, [(str(name), _plain(value)) for name, value in vbs], rows)
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


