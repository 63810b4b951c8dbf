"""Print-queue probe over IPP: the local cupsd's queue, or an IPP printer's own URI.

A small IPP/1.1 Get-Printer-Attributes client on the standard library (RFC 8010 encoding), so the agent
needs neither pycups nor lpstat (whose text is localised). A USB printer's queue says "idle" while the
printer is unplugged, so when the queue's device-uri is ``usb://…`` the attached USB devices are checked
for it as well.
"""

from __future__ import annotations

import struct
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from agent.checks.devices import printermib as pm
from agent.checks.devices.common import DeviceConfig, MethodResult, ProbeContext, absent, broken, ok, warn
from agent.confignode import Node

REQUESTED = ("printer-state", "printer-state-reasons", "printer-is-accepting-jobs", "printer-state-message",
             "printer-make-and-model", "device-uri", "marker-names", "marker-levels", "marker-types",
             "marker-low-levels", "queued-job-count", "printer-supply", "printer-supply-description")
PRINTER_STATE = {3: "idle", 4: "processing", 5: "stopped"}
# printer-state-reasons (RFC 8011 §5.4.12, CUPS) that mean nothing gets printed: fail. Others warn.
FAILING_REASONS = {"media-jam", "toner-empty", "marker-supply-empty", "offline", "shutdown", "paused",
                   "stopped", "spool-area-full"}
REASON_ZH = {"media-jam": "卡纸", "toner-empty": "墨粉耗尽", "marker-supply-empty": "耗材耗尽",
             "offline": "脱机", "shutdown": "已关机", "paused": "队列已暂停", "stopped": "已停止",
             "media-empty": "缺纸", "media-needed": "需要装纸", "media-low": "纸张不足", "toner-low": "墨粉不足",
             "marker-supply-low": "耗材不足", "door-open": "机盖打开", "cover-open": "机盖打开",
             "marker-waste-almost-full": "废粉仓将满", "marker-waste-full": "废粉仓已满",
             "connecting-to-device": "正在连接打印机", "spool-area-full": "假脱机空间已满"}
INFORMATIONAL = {"none", "connecting-to-device", "moving-to-paused", "cups-waiting-for-job-completed"}
CUPS_MARKER_TYPES = {"toner": "toner", "ink": "ink", "ink-cartridge": "inkCartridge", "opc": "opc",
                     "waste-toner": "wasteToner", "waste-ink": "wasteInk", "developer": "developer",
                     "fuser": "fuser", "staples": "staples", "toner-cartridge": "tonerCartridge"}


@dataclass
class CupsConfig:
    uri: str  # ipp://host:port/printers/NAME or the printer's own ipp:// URI


def parse(node: Node, device: DeviceConfig) -> CupsConfig:
    """``cups: QUEUE`` (local cupsd), ``cups: {queue, server}`` or ``cups: {uri: ipp://…}``."""
    if not node.is_mapping():
        return CupsConfig(_queue_uri("localhost:631", _queue(node)))
    m = node.mapping(("queue", "server", "uri"))
    if ("uri" in m) == ("queue" in m):
        node.fail("give either 'queue' (with optional 'server') or 'uri'")
    if "uri" in m:
        uri = m["uri"].str().strip()
        parsed = urllib.parse.urlsplit(uri)
        if parsed.scheme not in ("ipp", "ipps", "http", "https") or not parsed.hostname:
            m["uri"].fail(f"'{uri}' is not an ipp://, ipps:// or http:// printer URI")
        return CupsConfig(uri)
    host, port = m["server"].host_port(631) if "server" in m else ("localhost", 631)
    return CupsConfig(_queue_uri(f"{host}:{port}", _queue(m["queue"])))


def _queue(node: Node) -> str:
    name = node.str().strip()
    if any(c in name for c in "/#? \t"):
        node.fail(f"'{name}' is not a CUPS queue name")
    return name


def _queue_uri(server: str, queue: str) -> str:
    return f"ipp://{server}/printers/{urllib.parse.quote(queue)}"


# -- IPP encoding ---------------------------------------------------------------------------------------


def encode_get_printer_attributes(printer_uri: str, request_id: int = 1) -> bytes:
    def attr(tag: int, name: str, value: str) -> bytes:
        n, v = name.encode(), value.encode()
        return struct.pack(">BH", tag, len(n)) + n + struct.pack(">H", len(v)) + v

    body = struct.pack(">BBHI", 1, 1, 0x000B, request_id) + b"\x01"
    body += attr(0x47, "attributes-charset", "utf-8") + attr(0x48, "attributes-natural-language", "en")
    body += attr(0x45, "printer-uri", printer_uri)
    for i, name in enumerate(REQUESTED):
        body += attr(0x44, "requested-attributes" if i == 0 else "", name)
    return body + b"\x03"


def decode_response(data: bytes) -> tuple[int, dict[str, list]]:
    """(status-code, {name: [values]}) from an IPP response; printer and operation groups merged."""
    if len(data) < 9:
        raise ValueError("IPP response too short")
    status = struct.unpack(">H", data[2:4])[0]
    attrs: dict[str, list] = {}
    pos, name = 8, ""
    while pos < len(data):
        tag = data[pos]
        pos += 1
        if tag == 0x03:
            break
        if tag < 0x10:  # a group delimiter
            continue
        nlen = struct.unpack(">H", data[pos:pos + 2])[0]
        name = data[pos + 2:pos + 2 + nlen].decode("utf-8", "replace") or name
        pos += 2 + nlen
        vlen = struct.unpack(">H", data[pos:pos + 2])[0]
        raw = data[pos + 2:pos + 2 + vlen]
        pos += 2 + vlen
        attrs.setdefault(name, []).append(_value(tag, raw))
    return status, attrs


def _value(tag: int, raw: bytes):
    if tag in (0x21, 0x23) and len(raw) == 4:  # integer, enum
        return struct.unpack(">i", raw)[0]
    if tag == 0x22:
        return raw != b"\x00"
    if tag < 0x20:  # out-of-band: unsupported, unknown, no-value
        return None
    if 0x40 <= tag <= 0x4F:
        return raw.decode("utf-8", "replace")
    return raw


def get_printer_attributes(uri: str, timeout: float) -> dict[str, list]:
    parts = urllib.parse.urlsplit(uri)
    scheme = "https" if parts.scheme in ("ipps", "https") else "http"
    port = parts.port or {"ipp": 631, "ipps": 631, "http": 80, "https": 443}[parts.scheme]
    url = f"{scheme}://{parts.hostname}:{port}{parts.path or '/'}"
    req = urllib.request.Request(url, data=encode_get_printer_attributes(uri), method="POST",
                                 headers={"Content-Type": "application/ipp"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (configured URI)
        status, attrs = decode_response(resp.read())
    if status >= 0x0400:
        raise LookupError(f"IPP status 0x{status:04x}")
    return attrs


# -- judgement ------------------------------------------------------------------------------------------


def supplies_from_printer_supply(attrs: dict[str, list]) -> list[pm.Supply]:
    """IPP ``printer-supply`` (PWG 5100.13: the Printer-MIB supply row as ``key=value;`` text) with
    ``printer-supply-description``; the same level/capacity rules as over SNMP."""
    descs = attrs.get("printer-supply-description") or []
    out = []
    for i, raw in enumerate(attrs.get("printer-supply") or []):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        kv = dict(p.split("=", 1) for p in text.split(";") if "=" in p)
        level, cap = _int(kv.get("level")), _int(kv.get("maxcapacity"))
        ratio, state, assumed = pm.supply_ratio(level, cap, pm.SUPPLY_UNIT_PERCENT if kv.get("unit") == "percent" else None)
        desc = str(descs[i]) if i < len(descs) and descs[i] else kv.get("type", "")
        out.append(pm.Supply(index=kv.get("index", str(i + 1)), description=desc, type=kv.get("type", "unknown"),
                             level=level, max_capacity=cap, ratio=None if ratio is None else round(ratio, 4),
                             state=state, receptacle=kv.get("class") == "receptacleThatIsFilled",
                             assumed_percent=assumed))
    return out


def _int(text) -> int | None:
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def supplies_from_markers(attrs: dict[str, list]) -> list[pm.Supply]:
    """marker-* attributes (CUPS) as Printer-MIB supplies; levels are percentages, -1/-2/-3 as in RFC 3805."""
    names, levels = attrs.get("marker-names") or [], attrs.get("marker-levels") or []
    types = attrs.get("marker-types") or []
    out = []
    for i, (name, level) in enumerate(zip(names, levels, strict=False)):
        if not isinstance(level, int):
            continue
        ratio, state, _ = pm.supply_ratio(level, 100)
        mtype = CUPS_MARKER_TYPES.get(str(types[i]) if i < len(types) else "", "other")
        out.append(pm.Supply(index=str(i + 1), description=str(name), type=mtype, level=level,
                             max_capacity=100, ratio=ratio, state=state,
                             receptacle=mtype in ("wasteToner", "wasteInk")))
    return out


def evaluate(attrs: dict[str, list], supply_warn: float) -> MethodResult:
    from agent.checks.devices.snmp import supplies_text, supply_label

    state = PRINTER_STATE.get((attrs.get("printer-state") or [0])[0], "unknown")
    reasons = [str(r) for r in attrs.get("printer-state-reasons") or [] if r]
    accepting = (attrs.get("printer-is-accepting-jobs") or [True])[0]
    # A printer's own printer-supply is the fuller record; a CUPS queue has marker-* instead.
    supplies = supplies_from_printer_supply(attrs) or supplies_from_markers(attrs)
    details = {"state": state, "reasons": reasons, "accepting_jobs": accepting,
               "make_and_model": (attrs.get("printer-make-and-model") or [""])[0],
               "device_uri": (attrs.get("device-uri") or [""])[0],
               "supplies": [s.to_dict() for s in supplies]}
    problems, warnings = [], []
    for r in reasons:
        base = _base_reason(r)
        if base in INFORMATIONAL or base.startswith("cups-"):
            continue
        (problems if base in FAILING_REASONS else warnings).append(REASON_ZH.get(base, base))
    if state == "stopped" and not problems:
        problems.append("队列已停止")
    if accepting is False:
        problems.append("队列不接受新任务")
    warnings += [f"{supply_label(s)}余量低（{s.ratio:.0%}）" for s in supplies
                 if s.ratio is not None and s.ratio < supply_warn]
    summary = supplies_text(supplies)
    tail = f"。耗材：{summary}" if summary else ""
    state_zh = {"idle": "空闲", "processing": "正在打印", "stopped": "已停止"}.get(state, state)
    if problems:
        return broken("cups", "打印队列故障：" + "、".join(dict.fromkeys(problems + warnings)) + tail, **details)
    if warnings:
        return warn("cups", f"打印队列{state_zh}，需要注意：" + "、".join(dict.fromkeys(warnings)) + tail, **details)
    return ok("cups", f"打印队列{state_zh}" + tail, **details)


def _base_reason(reason: str) -> str:
    for suffix in ("-report", "-warning", "-error"):
        if reason.endswith(suffix):
            return reason[: -len(suffix)]
    return reason


def usb_uri_matches(device_uri: str, devices) -> bool | None:
    """Whether the USB printer named by a CUPS ``usb://Make/Model?serial=S`` URI is attached; None when the
    URI is not a USB one."""
    if not device_uri.startswith("usb://"):
        return None
    parts = urllib.parse.urlsplit(device_uri)
    serial = (urllib.parse.parse_qs(parts.query).get("serial") or [""])[0]
    make = urllib.parse.unquote(parts.netloc).lower()
    model = urllib.parse.unquote(parts.path.strip("/")).lower()
    for d in devices:
        if serial and d.serial == serial:
            return True
        if not serial and make and make in d.manufacturer.lower() and (not model or model in d.product.lower()):
            return True
    return False


def probe(device: DeviceConfig, cfg: CupsConfig, ctx: ProbeContext) -> MethodResult:
    try:
        attrs = get_printer_attributes(cfg.uri, device.timeout)
    except LookupError as exc:
        # The print service answered but has no such queue: the printer is not set up on it.
        return absent("cups", f"打印服务中没有这个打印队列（{cfg.uri}）", uri=cfg.uri, error=str(exc))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return absent("cups", f"无法连接打印服务 {cfg.uri}：{reason}", uri=cfg.uri, error=str(reason))
    result = evaluate(attrs, device.supply_warn)
    result.details["uri"] = cfg.uri
    uri = result.details.get("device_uri") or ""
    if uri.startswith("usb://"):
        devices = ctx.usb_devices()
        if isinstance(devices, Exception):
            result.details["usb_check"] = f"unavailable: {devices}"
        elif not usb_uri_matches(uri, devices):
            result.details["usb_check"] = "missing"
            return MethodResult("cups", False, "fail",
                                "打印机 USB 未连接或未通电（队列本身显示" + result.message + "）", result.details)
        else:
            result.details["usb_check"] = "present"
    return result
