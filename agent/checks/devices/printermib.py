"""Printer facts from SNMP tables (HOST-RESOURCES-MIB, Printer-MIB RFC 3805), decoded without any SNMP I/O.

Everything here is pure: it takes ``{oid: value}`` rows as walked and returns plain data, so tests and the
benchmark can check the decoding apart from the network. Where LibreNMS (whose recordings the tests replay)
reads a value differently, the reason for our reading is written beside the code.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

# -- OIDs ----------------------------------------------------------------------------------------------
SYS_DESCR = "1.3.6.1.2.1.1.1.0"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
SYS_NAME = "1.3.6.1.2.1.1.5.0"
SYSTEM_OIDS = (SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME)

HR_DEVICE_TYPE = "1.3.6.1.2.1.25.3.2.1.2"
HR_DEVICE_STATUS = "1.3.6.1.2.1.25.3.2.1.5"
HR_PRINTER_STATUS = "1.3.6.1.2.1.25.3.5.1.1"
HR_PRINTER_ERROR_STATE = "1.3.6.1.2.1.25.3.5.1.2"
HR_DEVICE_PRINTER = "1.3.6.1.2.1.25.3.1.5"

SUPPLY_CLASS = "1.3.6.1.2.1.43.11.1.1.4"
SUPPLY_TYPE = "1.3.6.1.2.1.43.11.1.1.5"
SUPPLY_DESCR = "1.3.6.1.2.1.43.11.1.1.6"
SUPPLY_UNIT = "1.3.6.1.2.1.43.11.1.1.7"
SUPPLY_MAX = "1.3.6.1.2.1.43.11.1.1.8"
SUPPLY_LEVEL = "1.3.6.1.2.1.43.11.1.1.9"

ALERT_SEVERITY = "1.3.6.1.2.1.43.18.1.1.2"
ALERT_GROUP = "1.3.6.1.2.1.43.18.1.1.4"
ALERT_CODE = "1.3.6.1.2.1.43.18.1.1.7"
ALERT_DESCR = "1.3.6.1.2.1.43.18.1.1.8"

# The walks a printer poll makes; columns of one table go into one GETBULK together.
PRINTER_TABLES = {
    "hr_device": (HR_DEVICE_TYPE, HR_DEVICE_STATUS),
    "hr_printer": (HR_PRINTER_STATUS, HR_PRINTER_ERROR_STATE),
    "supplies": (SUPPLY_CLASS, SUPPLY_TYPE, SUPPLY_DESCR, SUPPLY_UNIT, SUPPLY_MAX, SUPPLY_LEVEL),
    "alerts": (ALERT_SEVERITY, ALERT_GROUP, ALERT_CODE, ALERT_DESCR),
}

# -- value tables (names from the MIBs; Chinese for people) --------------------------------------------
HR_DEVICE_STATUS_NAMES = {1: "unknown", 2: "running", 3: "warning", 4: "testing", 5: "down"}
HR_DEVICE_STATUS_ZH = {1: "状态未知", 2: "运行正常", 3: "设备告警", 4: "自检中", 5: "设备停机"}
HR_PRINTER_STATUS_NAMES = {1: "other", 2: "unknown", 3: "idle", 4: "printing", 5: "warmup"}

# hrPrinterDetectedErrorState (HOST-RESOURCES-MIB, extended by RFC 3805): bit 0 is the most significant
# bit of the first octet.
ERROR_BITS = (
    ("lowPaper", "纸张不足"), ("noPaper", "缺纸"), ("lowToner", "墨粉不足"), ("noToner", "墨粉耗尽"),
    ("doorOpen", "机盖打开"), ("jammed", "卡纸"), ("offline", "脱机"), ("serviceRequested", "需要维修"),
    ("inputTrayMissing", "进纸盒缺失"), ("outputTrayMissing", "出纸盒缺失"),
    ("markerSupplyMissing", "耗材缺失"), ("outputNearFull", "出纸盒将满"), ("outputFull", "出纸盒已满"),
    ("inputTrayEmpty", "进纸盒空"), ("overduePreventMaint", "保养逾期"),
)
# Conditions that stop the printer from printing at all: the device is not working (fail). The rest
# (low paper, service requested …) leave it printing and are warnings.
FAILING_CONDITIONS = {"noToner", "jammed", "offline"}

SUPPLY_TYPES = {
    1: "other", 2: "unknown", 3: "toner", 4: "wasteToner", 5: "ink", 6: "inkCartridge", 7: "inkRibbon",
    8: "wasteInk", 9: "opc", 10: "developer", 11: "fuserOil", 12: "solidWax", 13: "ribbonWax",
    14: "wasteWax", 15: "fuser", 16: "coronaWire", 17: "fuserOilWick", 18: "cleanerUnit",
    19: "fuserCleaningPad", 20: "transferUnit", 21: "tonerCartridge", 22: "fuserOiler", 23: "water",
    24: "wasteWater", 25: "glueWaterAdditive", 26: "wastePaper", 27: "bindingSupply", 28: "bandingSupply",
    29: "stitchingWire", 30: "shrinkWrap", 31: "paperWrap", 32: "staples", 33: "inserts", 34: "covers",
}
SUPPLY_TYPES_ZH = {
    "toner": "墨粉", "wasteToner": "废粉盒", "ink": "墨水", "inkCartridge": "墨盒", "inkRibbon": "色带",
    "wasteInk": "废墨仓", "opc": "硒鼓", "developer": "显影剂", "fuser": "定影器", "transferUnit": "转印组件",
    "tonerCartridge": "墨粉盒", "staples": "订书钉", "cleanerUnit": "清洁组件", "other": "其他耗材",
    "unknown": "耗材",
}
SUPPLY_CLASS_RECEPTACLE = 4  # receptacleThatIsFilled: the level is the space left, e.g. a waste-toner box
SUPPLY_UNIT_PERCENT = 19

ALERT_SEVERITY_NAMES = {1: "other", 3: "critical", 4: "warning", 5: "warningBinaryChangeEvent"}


@dataclass
class Supply:
    index: str
    description: str
    type: str
    level: int | None
    max_capacity: int | None
    ratio: float | None  # fraction left (space left for a receptacle); None when the printer cannot say
    state: str  # "measured", "some_remaining", "unknown", "unlimited", "other"
    receptacle: bool = False
    assumed_percent: bool = False  # capacity unknown and the level read as a percentage

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None and v is not False}


@dataclass
class PrinterState:
    sys_descr: str = ""
    sys_object_id: str = ""
    sys_uptime_s: float | None = None
    sys_name: str = ""
    device_status: dict[str, int] = field(default_factory=dict)  # hrDeviceIndex -> hrDeviceStatus
    printer_status: dict[str, int] = field(default_factory=dict)  # hrDeviceIndex -> hrPrinterStatus
    conditions: list[str] = field(default_factory=list)
    supplies: list[Supply] = field(default_factory=list)
    alerts: list[dict] = field(default_factory=list)


# -- text -----------------------------------------------------------------------------------------------


def decode_text(raw) -> str:
    """An OCTET STRING as text. Printers sold in China often localise descriptions in GB18030 rather than
    UTF-8 (prtMarkerSuppliesDescription is a LocalizedDescription), so try both before Latin-1."""
    if isinstance(raw, str):
        text = raw
    else:
        data = bytes(raw)
        for codec in ("utf-8", "gb18030", "latin-1"):
            try:
                text = data.decode(codec)
                break
            except UnicodeDecodeError:
                continue
    return text.replace("\x00", "").strip()


_HEX_LINE = re.compile(r"^(?:[0-9A-Fa-f]{2} ?)+$")


def reassemble_hex_dump(text: str) -> str:
    """Repair a description that arrives as "first 16 characters" + newline + a hex dump of the rest.

    Some HP JetDirect firmware (jetdirect_m880 in the recordings) serves the value this way. We decode the
    hex lines and append them to the first line exactly, keeping the space at which the line was cut
    ("Black Drum 828A " + "HP CF358A" -> "Black Drum 828A HP CF358A"). LibreNMS trims each line before
    joining, so it reports "Black Drum 828AHP CF358A"; we keep the device's own text instead.
    """
    lines = text.split("\n")
    if len(lines) < 2 or not all(_HEX_LINE.match(x.strip()) for x in lines[1:] if x.strip()):
        return text
    data = bytes.fromhex("".join(x.strip().replace(" ", "") for x in lines[1:]))
    return lines[0] + decode_text(data)


# -- supplies -------------------------------------------------------------------------------------------


def supply_ratio(level: int | None, capacity: int | None, unit: int | None = None) -> tuple[float | None, str, bool]:
    """(ratio, state, assumed_percent) for one supply, following RFC 3805's special values.

    prtMarkerSuppliesLevel: -1 other, -2 unknown, -3 "at least one unit remains" (someRemaining).
    prtMarkerSuppliesMaxCapacity: -1 unlimited, -2 unknown.
    """
    if level is None:
        return None, "unknown", False
    if level == -3:
        # The printer only says "not empty". LibreNMS reports 50 %; a number the printer never gave would
        # look like a measurement on the dashboard and in the evidence, so we report no ratio, state
        # some_remaining, and never warn on it.
        return None, "some_remaining", False
    if level == -2:
        return None, "unknown", False
    if level < 0:
        return None, "other", False
    if capacity == -1:
        return None, "unlimited", False
    if capacity is not None and capacity > 0:
        return min(level / capacity, 1.0), "measured", False
    if unit == SUPPLY_UNIT_PERCENT or 0 <= level <= 100:
        # Capacity unknown (-2) or missing: devices that do this (Sharp, Brother) put a percentage in the
        # level, which is also LibreNMS's rule ("capacity <= 0 is 100"). We flag the assumption.
        # Brother HL-5370DW index 1.1 (level 0, capacity -2) thus reads 0 %, as LibreNMS's poller reads
        # it; LibreNMS's discovery reads 100 % there through a Brother-specific fallback we do not copy.
        return min(level / 100, 1.0), "measured", True
    return None, "unknown", False


def parse_supplies(rows: dict[str, object]) -> list[Supply]:
    """Rows of prtMarkerSuppliesTable -> one Supply per prtMarkerSuppliesLevel index, in index order."""
    cols = _columns(rows, SUPPLY_CLASS, SUPPLY_TYPE, SUPPLY_DESCR, SUPPLY_UNIT, SUPPLY_MAX, SUPPLY_LEVEL)
    cls, typ, descr, unit, cap, level = cols
    out = []
    for idx in sorted(level, key=_index_key):
        lv, mx = _int(level.get(idx)), _int(cap.get(idx))
        ratio, state, assumed = supply_ratio(lv, mx, _int(unit.get(idx)))
        tname = SUPPLY_TYPES.get(_int(typ.get(idx)) or 0, "unknown") if idx in typ else "unknown"
        text = reassemble_hex_dump(decode_text(descr.get(idx, b""))) if idx in descr else ""
        out.append(Supply(index=idx, description=text or SUPPLY_TYPES_ZH.get(tname, "耗材"), type=tname,
                          level=lv, max_capacity=mx, ratio=None if ratio is None else round(ratio, 4),
                          state=state, receptacle=_int(cls.get(idx)) == SUPPLY_CLASS_RECEPTACLE,
                          assumed_percent=assumed))
    return out


# -- status ---------------------------------------------------------------------------------------------


def decode_error_state(raw) -> list[str]:
    """hrPrinterDetectedErrorState (BITS as OCTET STRING) -> condition names, bit 0 = 0x80 of octet 0."""
    data = raw if isinstance(raw, (bytes, bytearray)) else bytes(raw or b"")
    names = []
    for bit, (name, _zh) in enumerate(ERROR_BITS):
        octet, mask = divmod(bit, 8)
        if octet < len(data) and data[octet] & (0x80 >> mask):
            names.append(name)
    return names


def condition_zh(name: str) -> str:
    return dict(ERROR_BITS).get(name, name)


def parse_printer(system: dict[str, object], tables: dict[str, dict[str, object]]) -> PrinterState:
    st = PrinterState(sys_descr=decode_text(system.get(SYS_DESCR, b"")),
                      sys_object_id=str(system.get(SYS_OBJECT_ID, "") or ""),
                      sys_name=decode_text(system.get(SYS_NAME, b"")))
    uptime = _int(system.get(SYS_UPTIME))
    st.sys_uptime_s = None if uptime is None else uptime / 100
    dev_type, dev_status = _columns(tables.get("hr_device", {}), HR_DEVICE_TYPE, HR_DEVICE_STATUS)
    pr_status, pr_error = _columns(tables.get("hr_printer", {}), HR_PRINTER_STATUS, HR_PRINTER_ERROR_STATE)
    # The printer's own rows: hrDevice entries of type hrDevicePrinter, else those in hrPrinterTable, else 1.
    printers = [i for i, t in dev_type.items() if str(t) == HR_DEVICE_PRINTER] or sorted(
        set(pr_status) | set(pr_error)) or (["1"] if "1" in dev_status else [])
    st.device_status = {i: _int(dev_status[i]) for i in printers if i in dev_status}
    st.printer_status = {i: _int(pr_status[i]) for i in printers if i in pr_status}
    for i in printers:
        for name in decode_error_state(pr_error.get(i, b"")):
            if name not in st.conditions:
                st.conditions.append(name)
    st.supplies = parse_supplies(tables.get("supplies", {}))
    st.alerts = parse_alerts(tables.get("alerts", {}))
    return st


def parse_alerts(rows: dict[str, object]) -> list[dict]:
    sev, group, code, descr = _columns(rows, ALERT_SEVERITY, ALERT_GROUP, ALERT_CODE, ALERT_DESCR)
    out = []
    for idx in sorted(set(sev) | set(descr), key=_index_key):
        out.append({"index": idx, "severity": ALERT_SEVERITY_NAMES.get(_int(sev.get(idx)) or 0, "other"),
                    "group": _int(group.get(idx)), "code": _int(code.get(idx)),
                    "description": decode_text(descr.get(idx, b""))})
    return out


# -- helpers --------------------------------------------------------------------------------------------


def _columns(rows: dict[str, object], *prefixes: str) -> list[dict[str, object]]:
    """Split walked rows into one {index: value} dict per column."""
    out: list[dict[str, object]] = [{} for _ in prefixes]
    for oid, value in rows.items():
        for n, prefix in enumerate(prefixes):
            if oid.startswith(prefix + "."):
                out[n][oid[len(prefix) + 1:]] = value
                break
    return out


def _int(value) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _index_key(index: str) -> tuple[int, ...]:
    return tuple(int(p) for p in index.split(".") if p.isdigit())
