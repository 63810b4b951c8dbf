"""USB devices: a fake sysfs tree written by the test, and Win32_PnPEntity / Win32_Printer JSON in the
shape ``ConvertTo-Json`` prints (hand-written from the WMI class documentation: there is no Windows
machine here to record from)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.checks.devices import DeviceConfig, ProbeContext, combine, localprinter, parse_config, usb
from agent.confignode import ConfigError, parse_yaml
from agent.platform import UsbDevice, wmi
from agent.platform.linux import read_usb_devices


def probe_usb(cfg: usb.UsbConfig, listing):
    """The USB method on a given listing (or the exception a listing raised), through its one signature."""
    return usb.probe(DeviceConfig(kind="scanner", name="扫描仪"), cfg, ProbeContext(usb_devices=lambda: listing))


def write_device(root: Path, name: str, vid: str, pid: str, *, serial: str = "", product: str = "",
                 manufacturer: str = "", classes: tuple[str, ...] = ()) -> None:
    base = root / "sys/bus/usb/devices"
    dev = base / name
    dev.mkdir(parents=True)
    (dev / "idVendor").write_text(vid + "\n")
    (dev / "idProduct").write_text(pid + "\n")
    for fname, value in (("serial", serial), ("product", product), ("manufacturer", manufacturer)):
        if value:
            (dev / fname).write_text(value + "\n")
    for i, cls in enumerate(classes):
        iface = base / f"{name}:1.{i}"
        iface.mkdir()
        (iface / "bInterfaceClass").write_text(cls + "\n")


@pytest.fixture
def sysfs(tmp_path):
    write_device(tmp_path, "usb1", "1d6b", "0002", product="EHCI Host Controller", classes=("09",))
    write_device(tmp_path, "1-1", "04c5", "132b", serial="A12B345678", product="fi-7030",
                 manufacturer="PFU", classes=("ff",))
    write_device(tmp_path, "1-2", "096e", "0304", serial="KEY0001", product="USB KEY", classes=("03",))
    write_device(tmp_path, "1-3", "03f0", "e42a", serial="PHBQ123456", product="HP LaserJet Pro M404",
                 manufacturer="HP", classes=("07",))
    return tmp_path


def test_sysfs_listing(sysfs):
    devs = {d.bus_path: d for d in read_usb_devices(sysfs / "sys/bus/usb/devices")}
    assert set(devs) == {"1-1", "1-2", "1-3"}  # the root hub (usb1) and interfaces (1-1:1.0) are not devices
    scanner = devs["1-1"]
    assert (scanner.vid, scanner.pid, scanner.serial, scanner.product) == ("04c5", "132b", "A12B345678", "fi-7030")
    assert scanner.interface_classes == (0xFF,)


def test_match_by_vid_pid_serial_and_catalogue(sysfs):
    devs = read_usb_devices(sysfs / "sys/bus/usb/devices")
    assert probe_usb(usb.UsbConfig("04c5", "132b"), devs).status == "ok"
    assert probe_usb(usb.UsbConfig("04c5", "132b", "A12B345678"), devs).status == "ok"
    missing = probe_usb(usb.UsbConfig("04c5", "132b", "OTHER"), devs)
    assert missing.status == "fail" and not missing.answered and "未检测到" in missing.message
    cat = usb.UsbConfig(catalogue="scanners", vendor_ids=usb.load_catalogue("scanners"))
    hit = probe_usb(cat, devs)
    assert hit.status == "ok" and [m["product"] for m in hit.details["matched"]] == ["fi-7030"]
    # HP is in the catalogue, but its printer interface (class 07) is not a scanner.
    only_printer = [d for d in devs if d.vid != "04c5"]
    assert probe_usb(cat, only_printer).status == "fail"


def test_catalogue_entries_name_their_source():
    import yaml

    data = yaml.safe_load((Path(usb.__file__).resolve().parents[3] / "configs/scanner_vendors.yaml").read_text())
    assert len(data["vendors"]) >= 10
    for v in data["vendors"]:
        assert len(v["vid"]) == 4 and int(v["vid"], 16) >= 0
        assert v["source"].startswith("usb.ids " + v["vid"])


def test_scanner_device_present_and_unplugged(sysfs, tmp_path):
    """Through the platform layer's own usb_devices() (LinuxPlatform on a fake root)."""
    from agent.checks.devices import run_device
    from agent.platform.linux import LinuxPlatform

    node = parse_yaml('- {kind: scanner, name: OCR扫描仪, usb: {vid: "04c5", pid: "132b"}}\n', "agent.yaml")
    dev = parse_config(node)[0]
    out = run_device(dev, LinuxPlatform(str(sysfs)))
    assert out.status == "ok" and out.value == 1 and "fi-7030" in out.message
    assert out.details["methods"][0]["matched"][0]["where"] == "1-1"
    cat = parse_config(parse_yaml("- {kind: scanner, name: 高拍仪, usb: {catalogue: scanners}}\n", "a.yaml"))[0]
    assert run_device(cat, LinuxPlatform(str(sysfs))).status == "ok"  # classes "ff" from the platform
    unplugged = tmp_path / "unplugged"  # the controller's root hub and nothing plugged in
    write_device(unplugged, "usb1", "1d6b", "0002", product="EHCI Host Controller", classes=("09",))
    out = run_device(dev, LinuxPlatform(str(unplugged)))
    assert out.status == "fail" and out.value == 0 and out.message.startswith("OCR扫描仪未检测到")


def test_usb_listing_with_no_root_hub_is_no_answer(tmp_path):
    """Every USB controller lists its root hub: a listing without one was not read, so the scanner is not
    "absent" but unchecked (error), and it earns nothing either way."""
    from agent.checks.devices import run_device
    from agent.platform.linux import LinuxPlatform

    dev = parse_config(parse_yaml('- {kind: scanner, name: OCR扫描仪, usb: {vid: "04c5"}}\n', "agent.yaml"))[0]
    empty = tmp_path / "empty"
    (empty / "sys/bus/usb/devices").mkdir(parents=True)
    out = run_device(dev, LinuxPlatform(str(empty)))
    assert out.status == "error" and out.details["present"] is False and "无法读取 USB 设备列表" in out.message
    out = run_device(dev, LinuxPlatform(str(tmp_path / "no-sysfs")))
    assert out.status == "error"


def test_platform_usb_device_shape_is_understood():
    """The platform's listing is what the USB method reads: classes as USB class codes, the error code."""
    row = {"PNPDeviceID": "USB\\VID_096E&PID_0304\\X", "Service": "HidUsb", "ConfigManagerErrorCode": 28}
    d = wmi.parse_usb_entities([row])[0]
    assert d.interface_classes == (3,) and d.error_code != 0 and d.bus_path.startswith("USB")
    assert not d.working
    unknown = wmi.parse_usb_entities([{k: v for k, v in row.items() if k != "ConfigManagerErrorCode"}])[0]
    assert unknown.error_code is None and not unknown.working, "a code WMI did not give is not a working 0"
    mixed = [unknown, UsbDevice(vid="096e", pid="0304", error_code=28)]
    assert probe_usb(usb.UsbConfig("096e", "0304"), mixed).status == "fail", "the one seen broken decides"


PNP = [
    {"PNPDeviceID": "USB\\VID_04C5&PID_132B\\A12B345678", "Name": "fi-7030", "Manufacturer": "PFU",
     "PNPClass": "Image", "Status": "OK", "ConfigManagerErrorCode": 0},
    {"PNPDeviceID": "USB\\VID_096E&PID_0304\\6&2A0C1B2&0&3", "Name": "USB Input Device",
     "Manufacturer": "(标准系统设备)", "PNPClass": "HIDClass", "Status": "Error", "ConfigManagerErrorCode": 28},
    {"PNPDeviceID": "USB\\VID_03F0&PID_E42A\\PHBQ123456", "Name": "USB Composite Device",
     "Manufacturer": "(标准 USB 主控制器)", "PNPClass": "USB", "Status": "OK", "ConfigManagerErrorCode": 0},
    {"PNPDeviceID": "USB\\VID_03F0&PID_E42A&MI_00\\7&1F3C&0&0000", "Name": "USB 打印支持",
     "Manufacturer": "Microsoft", "PNPClass": "Printer", "Status": "OK", "ConfigManagerErrorCode": 0},
    {"PNPDeviceID": "USB\\ROOT_HUB30\\4&2851D18A&0&0", "Name": "USB 根集线器(USB 3.0)", "PNPClass": "USB",
     "Status": "OK", "ConfigManagerErrorCode": 0},
]


def test_windows_pnp_parsing():
    devs = {d.vid: d for d in wmi.parse_usb_entities(wmi.parse_records(json.dumps(PNP, ensure_ascii=False)))}
    assert set(devs) == {"04c5", "096e", "03f0"}
    assert devs["04c5"].serial == "A12B345678" and devs["04c5"].interface_classes == (0xFF,)
    assert devs["096e"].serial == "" and devs["096e"].error_code == 28  # made-up instance id, broken driver
    assert devs["03f0"].interface_classes == (0x07,)  # from its MI_00 printer interface
    # A single result comes back as a bare object.
    assert len(wmi.parse_usb_entities(wmi.parse_records(json.dumps(PNP[0])))) == 1


def test_windows_present_but_broken_usb_key():
    devs = wmi.parse_usb_entities(PNP)
    res = probe_usb(usb.UsbConfig("096e", "0304"), devs)
    assert res.answered and res.status == "fail" and "错误代码 28" in res.message


WIN32_PRINTER = [
    {"Name": "HP LaserJet Pro M404", "PrinterStatus": 3, "WorkOffline": False, "DetectedErrorState": 2,
     "ExtendedPrinterStatus": 3, "PortName": "USB001", "DriverName": "HP LaserJet Pro M404-M405 PCL-6 (V3)"},
    {"Name": "Canon LBP2900", "PrinterStatus": 3, "WorkOffline": True, "DetectedErrorState": 9,
     "ExtendedPrinterStatus": 7, "PortName": "USB002", "DriverName": "Canon LBP2900"},
    {"Name": "Microsoft Print to PDF", "PrinterStatus": 3, "WorkOffline": False, "DetectedErrorState": 0,
     "PortName": "PORTPROMPT:", "DriverName": "Microsoft Print To PDF"},
    {"Name": "网络打印机", "PrinterStatus": 1, "WorkOffline": False, "DetectedErrorState": 8,
     "PortName": "10.10.5.30", "DriverName": "Brother"},
    {"Name": "缺纸打印机", "PrinterStatus": 3, "WorkOffline": False, "DetectedErrorState": 4,
     "PortName": "10.10.5.31", "DriverName": "Brother"},
]


def test_windows_printer_states():
    devs = wmi.parse_usb_entities(PNP)
    ev = localprinter.evaluate_windows
    assert ev(localprinter.find_printer(WIN32_PRINTER, "hp laserjet pro m404"), "HP LaserJet Pro M404", devs).status == "ok"
    # Idle in the spooler, but its USB printer is not attached: absent.
    gone = ev(localprinter.find_printer(WIN32_PRINTER, "HP LaserJet Pro M404"), "HP LaserJet Pro M404", [])
    assert gone.status == "fail" and not gone.answered and "USB" in gone.message
    off = ev(localprinter.find_printer(WIN32_PRINTER, "Canon LBP2900"), "Canon LBP2900", devs)
    assert off.status == "fail" and "脱机" in off.message
    jam = ev(localprinter.find_printer(WIN32_PRINTER, "网络打印机"), "网络打印机", devs)
    assert jam.status == "fail" and "卡纸" in jam.message
    paper = ev(localprinter.find_printer(WIN32_PRINTER, "缺纸打印机"), "缺纸打印机", devs)
    assert paper.status == "warn" and "缺纸" in paper.message
    none = ev(localprinter.find_printer(WIN32_PRINTER, "不存在"), "不存在", devs)
    assert none.status == "fail" and "未安装" in none.message
    # A single printer comes back as a bare object.
    assert localprinter.find_printer(WIN32_PRINTER[0], "HP LaserJet Pro M404") is WIN32_PRINTER[0]


def test_usb_config_forms_and_errors():
    devs = parse_config(parse_yaml("""
- {kind: scanner, name: A, usb: "04c5"}
- {kind: scanner, name: B, usb: "04C5:132B"}
- {kind: other, name: USB KEY, usb: {vid: "096e", pid: "0304", serial: KEY0001}}
- {kind: scanner, name: D, usb: {catalogue: scanners}}
""", "a.yaml"))
    assert (devs[0].methods["usb"].vid, devs[0].methods["usb"].pid) == ("04c5", None)
    assert devs[1].methods["usb"].pid == "132b"
    assert devs[2].methods["usb"].serial == "KEY0001"
    assert "04c5" in devs[3].methods["usb"].vendor_ids
    with pytest.raises(ConfigError, match=r"a.yaml:1: \[0\].usb.vid: 'xyz' is not a USB id"):
        parse_config(parse_yaml("- {kind: scanner, usb: {vid: xyz}}\n", "a.yaml"))


def test_usb_listing_unavailable_is_error_not_pass():
    dev = DeviceConfig(kind="scanner", name="扫描仪", methods={"usb": usb.UsbConfig("04c5")})
    out = combine(dev, [probe_usb(dev.methods["usb"], usb.UsbUnavailable("no sysfs"))])
    assert out.status == "error" and out.value is None
