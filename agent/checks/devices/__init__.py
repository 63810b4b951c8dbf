"""device.<kind>: the devices the standards require at a point, each present and working.

One result per configured device (target = its name, value 1 when present and working, else 0). A device
has one or more probe methods, each in its own module here (netprobe: icmp/tcp/http, snmp, usb, cups,
local_printer, escl) and each listed once in :data:`METHODS` with its config parser and its probe, which
all share one signature (see :mod:`agent.checks.devices.common`). The methods of one device run
concurrently, as the runner runs devices concurrently, so a switched-off device costs about one timeout.
Present = any method got an answer; working = every method's requirement holds.

Status contract: ``ok``/``warn`` only for a device that answered (``warn``: present, a supply low, or an
optional device present but not working); an absent device is ``fail`` whether required or not (an optional
one says so in its message); ``error`` when no method could look. ``details.present`` agrees with it.
"""

from __future__ import annotations

import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.checks import FactUnavailable, Outcome, Probe, _reading
from agent.checks.devices import cups, escl, localprinter, netprobe, snmp, usb
from agent.checks.devices.common import (
    DEFAULT_SUPPLY_WARN,
    DEFAULT_TIMEOUT,
    DeviceConfig,
    Method,
    MethodResult,
    ProbeContext,
)
from agent.confignode import Node, optional
from agent.vocabulary import (
    CHECKS_BY_FAMILY,
    DEVICE_DEFAULT_NAME,
    DEVICE_KINDS,
    device_check,
    worst,
)

CHECK_IDS = CHECKS_BY_FAMILY["devices"]

# Probe method name (the device's config key) -> how its config is read and how the device is probed.
METHODS: dict[str, Method] = {
    "icmp": Method(netprobe.parse_icmp, netprobe.probe_icmp),
    "tcp": Method(netprobe.parse_tcp, netprobe.probe_tcp),
    "http": Method(netprobe.parse_http, netprobe.probe_http),
    "snmp": Method(snmp.parse, snmp.probe),
    "usb": Method(usb.parse, usb.probe),
    "cups": Method(cups.parse, cups.probe),
    "escl": Method(escl.parse, escl.probe),
    "local_printer": Method(localprinter.parse, localprinter.probe),
}
PROBE_METHODS = tuple(METHODS)


def parse_config(node: Node | None) -> list[DeviceConfig]:
    devices: list[DeviceConfig] = []
    seen: dict[str, Node] = {}
    for item in (node.items() if node is not None else []):
        dev = parse_device(item)
        if dev.name in seen:
            item.fail(f"device name '{dev.name}' is used twice (names are the result targets)")
        seen[dev.name] = item
        devices.append(dev)
    return devices


def parse_device(item: Node) -> DeviceConfig:
    m = item.mapping(("kind", "name", "required", "host", "timeout", "supply_warn", *PROBE_METHODS),
                     required=("kind",))
    kind = m["kind"].choice(DEVICE_KINDS)
    if not any(k in m for k in PROBE_METHODS):
        item.fail(f"device has no probe method (give one of: {', '.join(PROBE_METHODS)})")
    host = optional(m, "host", None, Node.host) or _implied_host(m)
    dev = DeviceConfig(kind=kind, name=optional(m, "name", DEVICE_DEFAULT_NAME[kind], Node.str),
                       required=optional(m, "required", True, Node.bool), host=host,
                       timeout=optional(m, "timeout", DEFAULT_TIMEOUT, lambda n: n.duration(0.05, 60)),
                       supply_warn=optional(m, "supply_warn", DEFAULT_SUPPLY_WARN, _ratio))
    for name, method in METHODS.items():
        if name in m and m[name].value is not None:
            dev.methods[name] = method.parse(m[name], dev)
    return dev


def _implied_host(m: dict[str, Node]) -> str | None:
    """The device's address when not given as ``host``: that of its ICMP or SNMP probe."""
    for key in ("icmp", "snmp"):
        node = m.get(key)
        if node is None or node.value is None:
            continue
        if not node.is_mapping():
            return node.host()
        if "host" in node.value:
            return node.mapping(node.value.keys())["host"].host()
    return None


def _ratio(node: Node) -> float:
    """``0.1`` or ``"10%"``."""
    if isinstance(node.value, str) and node.value.strip().endswith("%"):
        text = node.value.strip()[:-1]
        try:
            value = float(text) / 100
        except ValueError:
            node.fail(f"'{node.value}' is not a percentage")
        return Node(value, node.path, node.line, node.file).float(0, 1)
    return node.float(0, 1)


# -- running --------------------------------------------------------------------------------------------


def probes(config, platform) -> list[Probe]:
    out = []
    for dev in config.devices or []:
        check = device_check(dev.kind)
        if not config.enabled(check):
            continue
        # SNMP may use up to 4 timeouts on a device that answered (see snmp.run); others about one.
        deadline = dev.timeout * (4 if "snmp" in dev.methods else 2) + 3
        out.append(Probe(check, dev.name, lambda dev=dev: run_device(dev, platform), deadline=deadline))
    return out


def run_device(dev: DeviceConfig, platform=None) -> Outcome:
    ctx = ProbeContext(usb_devices=_usb_lister(platform), platform=platform)
    tasks = []
    for method, cfg in dev.methods.items():
        items = cfg if isinstance(cfg, list) else [cfg]
        for c in items:
            tasks.append((method, c))
    # The methods' threads share the probe's record of what it reads (a deadline names the query it hung in).
    state = getattr(_reading, "state", None)
    if len(tasks) == 1:  # a printer with only SNMP, say: nothing to overlap, no thread to start
        return combine(dev, [_run_method(*tasks[0], dev, ctx, state)])
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="devprobe") as pool:
        futures = [pool.submit(_run_method, method, c, dev, ctx, state) for method, c in tasks]
        results = [f.result() for f in futures]
    return combine(dev, results)


def _run_method(method: str, cfg, dev: DeviceConfig, ctx: ProbeContext, state: dict | None = None) -> MethodResult:
    probe = METHODS[method].probe
    _reading.state = state
    try:
        return probe(dev, cfg, ctx)
    except FactUnavailable as exc:
        return MethodResult(method, False, "error", f"{method} 无法读取系统信息（{exc.query}）：{exc.reason}",
                            {"reason": "fact_unavailable", "fact": exc.fact, "query": exc.query, "error": exc.reason})
    except Exception as exc:  # one broken method must not hide what the others found
        return MethodResult(method, False, "error", f"{method} 检查无法运行：{type(exc).__name__}: {exc}",
                            {"exception": type(exc).__name__})


_usb_cache: dict[int, tuple[float, object, object]] = {}
_usb_lock = threading.Lock()
USB_CACHE_S = 10.0  # one listing serves every device of a cycle (PowerShell takes seconds on old PCs)


def _usb_lister(platform):
    try:
        ref = weakref.ref(platform)
    except TypeError:  # None or a builtin: no identity to cache on
        ref = None

    def listing():
        state = getattr(_reading, "state", None)
        if state is not None and platform is not None:
            # Waiting for another device's listing is waiting on the same query.
            state["reading"] = ("usb_devices", platform.fact_query("usb_devices"))
        with _usb_lock:
            hit = _usb_cache.get(id(platform))
            # The weak reference makes sure a new platform that reuses a dead one's id() is not served
            # the old listing.
            if hit and ref is not None and hit[2] is ref() and time.monotonic() - hit[0] < USB_CACHE_S:
                value: object = hit[1]
            else:
                try:
                    value = usb.list_devices(platform)
                except FactUnavailable as exc:
                    value = exc
                if ref is not None:
                    _usb_cache[id(platform)] = (time.monotonic(), value, platform)
        if state is not None:
            state.pop("reading", None)
        return value

    return listing


def combine(dev: DeviceConfig, results: list[MethodResult]) -> Outcome:
    """Present = any method answered; working = every method's requirement holds."""
    present = any(r.answered for r in results)
    working = present and all(r.status in ("ok", "warn") for r in results)
    details: dict[str, Any] = {"kind": dev.kind, "required": dev.required, "present": present,
                               "working": working, "methods": [r.to_dict() for r in results]}
    supplies = [s for r in results for s in r.details.get("supplies", [])]
    if supplies:
        details["supplies"] = supplies
    value = 1.0 if working else 0.0
    failed = [r for r in results if r.status == "fail"]
    errored = [r for r in results if r.status == "error"]
    if not present and not failed:
        return Outcome("error", f"{dev.name}无法检查：" + "；".join(r.message for r in errored), None, None, details)
    if not present:
        # Absent is what was seen, required or not: ``fail``. The status alone says whether the device was
        # there (ok/warn = it answered), so no rule counts an absent optional device as present.
        note = "" if dev.required else "（非必备设备，未在位）"
        return Outcome("fail", f"{dev.name}未检测到{note}：" + "；".join(r.message for r in results),
                       value, None, details)
    if failed:
        status = "fail" if dev.required else "warn"
        return Outcome(status, f"{dev.name}在线但工作不正常：" + "；".join(r.message for r in failed),
                       value, None, details)
    if errored:
        return Outcome("error", f"{dev.name}部分检查无法运行：" + "；".join(r.message for r in errored),
                       value, None, details)
    status = worst([r.status for r in results])
    prefix = "需要注意" if status == "warn" else "正常"
    shown = [r for r in results if r.status == "warn"] or results
    return Outcome(status, f"{dev.name}{prefix}：" + "；".join(r.message for r in shown), value, None, details)
