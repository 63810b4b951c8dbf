"""eSCL (AirScan) probe of a network scanner: GET ``<base>/eSCL/ScannerStatus`` and read ``pwg:State``."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from agent.checks.devices.common import DeviceConfig, MethodResult, ProbeContext, absent, broken, ok, warn
from agent.confignode import Node, optional

PWG = "http://www.pwg.org/schemas/2010/12/sm"
SCAN = "http://schemas.hp.com/imaging/escl/2011/05/03"
STATE_ZH = {"Idle": "空闲", "Processing": "正在扫描", "Testing": "自检中", "Stopped": "已停止", "Down": "故障"}
# ScannerAdfState values (eSCL spec) that stop the feeder: fail; the "loaded/empty" ones are normal.
ADF_FAILING = {"ScannerAdfJam": "进纸器卡纸", "ScannerAdfDoorOpen": "进纸器盖打开",
               "ScannerAdfHatchOpen": "进纸器舱门打开", "ScannerAdfMispick": "进纸器取纸失败",
               "ScannerAdfMultipickDetected": "进纸器重张"}


@dataclass
class EsclConfig:
    url: str  # base URL, e.g. http://10.10.5.40:80 ; the status is at <url>/<root>/ScannerStatus
    root: str = "eSCL"


def parse(node: Node, device: DeviceConfig) -> EsclConfig:
    """``escl: URL`` / ``escl: true`` (the device's host, port 80) / ``escl: {url, root}``."""
    default_host = device.host
    if node.value is True:
        if not default_host:
            node.fail("'escl: true' needs the device's host (give 'host' or 'icmp')")
        return EsclConfig(f"http://{default_host}")
    if not node.is_mapping():
        return EsclConfig(_url(node))
    m = node.mapping(("url", "root"), required=("url",))
    return EsclConfig(_url(m["url"]), optional(m, "root", "eSCL", lambda n: n.str().strip("/")))


def _url(node: Node) -> str:
    url = node.str().strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        node.fail(f"'{url}' is not an http:// or https:// URL")
    return url


def parse_status(xml_bytes: bytes) -> dict:
    """ScannerStatus XML -> {state, adf_state, jobs}; raises ValueError on something that is not one."""
    try:
        root = ET.fromstring(xml_bytes)
    except ET.ParseError as exc:
        raise ValueError(f"not XML: {exc}") from exc
    state = root.findtext(f"{{{PWG}}}State")
    if state is None:
        raise ValueError("no pwg:State in ScannerStatus")
    jobs = [{"uri": j.findtext(f"{{{PWG}}}JobUri"), "state": j.findtext(f"{{{PWG}}}JobState")}
            for j in root.iter(f"{{{SCAN}}}JobInfo")]
    return {"state": state.strip(), "adf_state": (root.findtext(f"{{{SCAN}}}AdfState") or "").strip() or None,
            "jobs": jobs}


def probe(device: DeviceConfig, cfg: EsclConfig, ctx: ProbeContext) -> MethodResult:
    timeout = device.timeout
    url = f"{cfg.url}/{cfg.root}/ScannerStatus"
    ctx = None
    if url.startswith("https://"):  # scanners ship self-signed certificates
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as resp:  # noqa: S310
            body = resp.read(1 << 20)
    except urllib.error.HTTPError as exc:
        return broken("escl", f"扫描仪 eSCL 接口返回 HTTP {exc.code}", url=url, status_code=exc.code)
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return absent("escl", f"扫描仪 {cfg.url} 无响应：{reason}", url=url, error=str(reason))
    try:
        st = parse_status(body)
    except ValueError as exc:
        return broken("escl", f"扫描仪状态无法解析：{exc}", url=url)
    details = {"url": url, **st}
    label = STATE_ZH.get(st["state"], st["state"])
    if st["state"] in ("Stopped", "Down"):
        return broken("escl", f"扫描仪{label}", **details)
    if st["adf_state"] in ADF_FAILING:
        return broken("escl", f"扫描仪{ADF_FAILING[st['adf_state']]}", **details)
    if st["state"] not in STATE_ZH:
        return warn("escl", f"扫描仪状态未知：{st['state']}", **details)
    return ok("escl", f"扫描仪{label}", **details)
