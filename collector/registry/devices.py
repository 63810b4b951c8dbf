"""A point's registered devices as spreadsheet cells (kind, name, address or USB id, method) and as the agent
config's device entries, which the effective policy appends (collector/policy/). Each device is checked with
the agent's own device validator, so a device the agent would refuse is refused at import, naming the row."""

from __future__ import annotations

from agent.confignode import ConfigError, parse_yaml
from agent.vocabulary import DEVICE_KIND_CN, DEVICE_KINDS

DEVICE_COLUMNS = ("device_kind", "device_name", "device_address", "device_method")
DEVICE_ALIASES = {"设备类型": "device_kind", "设备名称": "device_name", "设备地址": "device_address",
                  "检测方式": "device_method"}
# How the address reads for each method: icmp/snmp a host, tcp host:port, http/escl a URL, usb VID:PID,
# cups a print queue name.
METHODS = ("icmp", "tcp", "http", "snmp", "usb", "cups", "escl")
_CN_KIND = {name: kind for kind, cn in DEVICE_KIND_CN.items() for name in (cn, cn.split("（")[0])}


def device_entry(kind: str, name: str, address: str, method: str) -> dict:
    """The agent-config device entry of one row's cells (not yet validated)."""
    kind = _CN_KIND.get(kind, kind.lower())
    method = (method or "icmp").lower()
    entry: dict = {"kind": kind}
    if name:
        entry["name"] = name
    if method == "usb":
        vid, _, pid = address.partition(":")
        entry["usb"] = {"vid": vid.lower(), **({"pid": pid.lower()} if pid else {})}
    elif method == "tcp":
        entry["tcp"] = [address]
    elif method == "http":
        entry["http"] = {"url": address}
    elif method == "snmp":
        entry["snmp"] = {"host": address}
    elif method == "cups":
        entry["cups"] = {"queue": address}
    elif method == "escl":
        entry["escl"] = {"url": address}
    else:
        entry[method] = address
    return entry


def check_device(cells: dict[str, str]) -> tuple[dict | None, str | None, str | None]:
    """(entry, None, None), or (None, column at fault, problem in Chinese)."""
    kind = _CN_KIND.get(cells.get("device_kind", ""), cells.get("device_kind", "").lower())
    if kind not in DEVICE_KINDS:
        return None, "device_kind", f"未知设备类型“{cells.get('device_kind', '')}”（可用：{'、'.join(DEVICE_KINDS)}）"
    method = (cells.get("device_method") or "icmp").lower()
    if method not in METHODS:
        return None, "device_method", f"未知检测方式“{method}”（可用：{'、'.join(METHODS)}）"
    address = cells.get("device_address", "")
    if not address:
        return None, "device_address", "不能为空（IP 地址、host:port、URL、USB 的 VID:PID 或打印队列名）"
    entry = device_entry(kind, cells.get("device_name", ""), address, method)
    problem = agent_problem([entry])
    if problem:
        return None, "device_address", problem
    return entry, None, None


def agent_problem(devices: list[dict]) -> str | None:
    """What the agent's validator says of these devices (None: it takes them)."""
    import yaml

    from agent.checks import devices as agent_devices

    try:
        agent_devices.parse_config(parse_yaml(yaml.safe_dump(devices, allow_unicode=True), "设备"))
    except ConfigError as exc:
        return f"代理不接受该设备：{exc.field}: {exc.problem}"
    return None


def cells_of(entry: dict) -> tuple[str, str, str, str]:
    """(kind, name, address, method) of a registered device, for export."""
    for method in METHODS:
        if method not in entry:
            continue
        value = entry[method]
        if method == "usb":
            address = value.get("vid", "") + (f":{value['pid']}" if value.get("pid") else "")
        elif isinstance(value, dict):
            address = value.get("host") or value.get("url") or value.get("queue") or ""
        elif isinstance(value, list):
            address = str(value[0]) if value else ""
        else:
            address = str(value)
        return entry.get("kind", ""), entry.get("name", ""), address, method
    return entry.get("kind", ""), entry.get("name", ""), "", ""
