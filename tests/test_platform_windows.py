"""Windows platform: recorded PowerShell output (ConvertTo-Json, or ConvertTo-Csv on PowerShell 2.0)
fed through the same parsers and the same WindowsPlatform methods that run on a point's PC."""

from __future__ import annotations

import base64
import subprocess

import pytest

from agent.checks.isolation import interface_isolation
from agent.checks.usage import removable_media
from agent.platform import wmi
from agent.platform.windows import WindowsPlatform

# Win32_PnPEntity WHERE PNPDeviceID LIKE 'USB\\%' on a Chinese Windows 10 (names are localized data).
USB_JSON = r"""[{"PNPDeviceID":"USB\\VID_0951\u0026PID_1666\\60A44C413A8CF0B1A99C0E3B","Name":"USB 大容量存储设备","Manufacturer":"兼容 USB 存储设备","Service":"USBSTOR","ConfigManagerErrorCode":0},
{"PNPDeviceID":"USB\\VID_04C5\u0026PID_128D\\6\u00262B3C1D0\u00260\u00261","Name":"fi-7160","Manufacturer":"PFU","Service":"usbscan","ConfigManagerErrorCode":0},
{"PNPDeviceID":"USB\\VID_046D\u0026PID_C52B\u0026MI_00\\7\u00261A2B3C\u00260\u00260000","Name":"USB 输入设备","Manufacturer":"(标准系统设备)","Service":"HidUsb","ConfigManagerErrorCode":0},
{"PNPDeviceID":"USB\\VID_03F0\u0026PID_2B17\\CN12345678","Name":"HP LaserJet 1020","Manufacturer":"HP","Service":"usbprint","ConfigManagerErrorCode":28},
{"PNPDeviceID":"USB\\ROOT_HUB30\\4\u00261F2E3D\u00260\u00260","Name":"USB 根集线器(USB 3.0)","Manufacturer":"(标准 USB 集线器)","Service":"USBHUB3","ConfigManagerErrorCode":0}]"""

# A lone object: ConvertTo-Json prints an object, not an array, when there is one row.
PRODUCT_JSON = '{"UUID":"03000200-0400-0500-0006-000700080009","IdentifyingNumber":"To be filled by O.E.M.","Name":"H110M-K","Vendor":"ASUS"}'
BIOS_JSON = '{"SerialNumber":"System Serial Number","Manufacturer":"American Megatrends Inc.","SMBIOSBIOSVersion":"3805"}'
BOARD_JSON = '{"SerialNumber":"180945123400123","Product":"H110M-K","Manufacturer":"ASUSTeK COMPUTER INC."}'

ADAPTERS_JSON = r"""[
{"NetConnectionID":"以太网","Name":"Realtek PCIe GbE Family Controller","AdapterTypeId":0,"NetEnabled":true,"NetConnectionStatus":2,"PhysicalAdapter":true,"MACAddress":"30:5A:3A:11:22:33","PNPDeviceID":"PCI\\VEN_10EC\u0026DEV_8168\u0026SUBSYS_85051043\u0026REV_15\\01000000684CE00000","ServiceName":"rt640x64","GUID":"{AAAA0000-0000-0000-0000-000000000001}","InterfaceIndex":12},
{"NetConnectionID":"WLAN","Name":"Intel(R) Dual Band Wireless-AC 3168","AdapterTypeId":0,"NetEnabled":true,"NetConnectionStatus":2,"PhysicalAdapter":true,"MACAddress":"D0:C6:37:44:55:66","PNPDeviceID":"PCI\\VEN_8086\u0026DEV_24FB\\D0C637FFFF445566","ServiceName":"Netwtw04","GUID":"{AAAA0000-0000-0000-0000-000000000002}","InterfaceIndex":7},
{"NetConnectionID":"以太网 2","Name":"Remote NDIS based Internet Sharing Device","AdapterTypeId":0,"NetEnabled":true,"NetConnectionStatus":2,"PhysicalAdapter":true,"MACAddress":"02:11:22:33:44:55","PNPDeviceID":"USB\\VID_18D1\u0026PID_4EE4\u0026MI_00\\6\u00261234\u00260\u00260000","ServiceName":"usb_rndisx","GUID":"{AAAA0000-0000-0000-0000-000000000003}","InterfaceIndex":21},
{"NetConnectionID":"以太网 3","Name":"TAP-Windows Adapter V9","AdapterTypeId":0,"NetEnabled":false,"NetConnectionStatus":7,"PhysicalAdapter":true,"MACAddress":"00:FF:12:34:56:78","PNPDeviceID":"ROOT\\NET\\0000","ServiceName":"tap0901","GUID":"{AAAA0000-0000-0000-0000-000000000004}","InterfaceIndex":15}
]"""
# MSFT_NetAdapter (Windows 8+): NdisPhysicalMedium 14 = 802.3, 9 = native 802.11.
MSFT_JSON = r"""[{"Name":"以太网","InterfaceGuid":"{AAAA0000-0000-0000-0000-000000000001}","NdisPhysicalMedium":14,"InterfaceType":6,"InterfaceDescription":"Realtek PCIe GbE Family Controller","HardwareInterface":true,"Virtual":false},
{"Name":"WLAN","InterfaceGuid":"{AAAA0000-0000-0000-0000-000000000002}","NdisPhysicalMedium":9,"InterfaceType":71,"InterfaceDescription":"Intel(R) Dual Band Wireless-AC 3168","HardwareInterface":true,"Virtual":false}]"""

ROUTES_JSON = """[{"Destination":"0.0.0.0","Mask":"0.0.0.0","NextHop":"10.10.5.1","InterfaceIndex":12,"Metric1":25},
{"Destination":"0.0.0.0","Mask":"0.0.0.0","NextHop":"192.168.43.1","InterfaceIndex":7,"Metric1":35},
{"Destination":"10.10.5.0","Mask":"255.255.255.0","NextHop":"0.0.0.0","InterfaceIndex":12,"Metric1":281},
{"Destination":"127.0.0.0","Mask":"255.0.0.0","NextHop":"0.0.0.0","InterfaceIndex":1,"Metric1":331}]"""

# A USB hard disk (a *fixed* drive, DriveType 3) and the system SATA disk, as DISK_VOLUMES_SCRIPT prints them.
DISKS_JSON = r"""[{"Disk":"\\\\.\\PHYSICALDRIVE0","InterfaceType":"IDE","PNPDeviceID":"SCSI\\DISK\u0026VEN_\u0026PROD_ST1000DM010-2EP1\\4\u002629C3D7A1\u00260\u0026000000","SerialNumber":"ZN1ABCDE","Model":"ST1000DM010-2EP102","MediaType":"Fixed hard disk media","Size":"1000202273280","Drive":"C:","DriveType":3,"FileSystem":"NTFS"},
{"Disk":"\\\\.\\PHYSICALDRIVE1","InterfaceType":"USB","PNPDeviceID":"USBSTOR\\DISK\u0026VEN_WD\u0026PROD_ELEMENTS_2621\u0026REV_1026\\575833314142434445464748\u00260","SerialNumber":"WX31ABCDEFGH","Model":"WD Elements 2621 USB Device","MediaType":"External hard disk media","Size":"2000363420160","Drive":"E:","DriveType":3,"FileSystem":"NTFS"},
{"Disk":"\\\\.\\PHYSICALDRIVE2","InterfaceType":"USB","PNPDeviceID":"USBSTOR\\DISK\u0026VEN_GENERIC\u0026PROD_FLASH_DISK\u0026REV_8.07\\7\u00262A3B4C5D\u00260","SerialNumber":"","Model":"Generic Flash Disk USB Device","MediaType":"Removable Media","Size":"8053063680","Drive":"F:","DriveType":2,"FileSystem":"FAT32"}]"""

# PowerShell 2.0 (bare Windows 7) has no ConvertTo-Json: the same query comes back as CSV.
PRODUCT_CSV = '"UUID","IdentifyingNumber","Name","Vendor"\r\n"4C4C4544-0042-3510-8052-B4C04F4E4B32","7B5RNK2","OptiPlex 3020","Dell Inc."\r\n'


def recorded(outputs: dict[str, str], fail: tuple[str, ...] = ()):
    """A stand-in for wmi.run_records: picks the recorded output by the WMI class the script names."""
    def run(script: str) -> list[dict]:
        for key in fail:
            if key in script:
                raise wmi.WmiError("Get-WmiObject : 无效类 (invalid class)")
        for key, text in outputs.items():
            if key in script:
                return wmi.parse_records(text)
        return []
    return run


def platform(**kw) -> WindowsPlatform:
    outputs = {"MSFT_NetAdapter": MSFT_JSON, "Win32_NetworkAdapter": ADAPTERS_JSON, "Win32_PnPEntity": USB_JSON,
               "Win32_ComputerSystemProduct": PRODUCT_JSON, "Win32_BIOS": BIOS_JSON, "Win32_BaseBoard": BOARD_JSON,
               "Win32_IP4RouteTable": ROUTES_JSON, "Win32_DiskDrive": DISKS_JSON}
    outputs.update(kw.pop("outputs", {}))
    addresses = {"以太网": ["10.10.5.8/24"], "WLAN": ["192.168.43.20/24"], "以太网 2": ["192.168.42.7/24"]}
    return WindowsPlatform(run=recorded(outputs, **kw), addresses=addresses)


def test_parse_records_shapes():
    assert wmi.parse_records("") == []
    assert wmi.parse_records(PRODUCT_JSON)[0]["Vendor"] == "ASUS"
    assert wmi.parse_records("\ufeff" + PRODUCT_CSV) == [{"UUID": "4C4C4544-0042-3510-8052-B4C04F4E4B32",
                                                           "IdentifyingNumber": "7B5RNK2", "Name": "OptiPlex 3020",
                                                           "Vendor": "Dell Inc."}]


def test_usb_devices():
    devs = {d.vid + ":" + d.pid: d for d in platform().usb_devices()}
    assert set(devs) == {"0951:1666", "04c5:128d", "03f0:2b17"}  # hub and composite interface left out
    assert devs["0951:1666"].serial == "60A44C413A8CF0B1A99C0E3B" and devs["0951:1666"].interface_classes == (0x08,)
    assert devs["04c5:128d"].serial == ""  # Windows made the instance id up: the scanner has no serial
    assert devs["03f0:2b17"].working is False and devs["03f0:2b17"].interface_classes == (0x07,)
    assert devs["0951:1666"].product == "USB 大容量存储设备"


def test_hardware_ids_flag_placeholders():
    from agent.checks.identity import fingerprint

    p = platform()
    ids = p.hardware_ids()
    assert ids["system_uuid"] == "03000200-0400-0500-0006-000700080009"
    assert ids["board_serial"] == "180945123400123"
    p.machine_id = lambda: "6f1c1c1e-1b2a-4c3d-9e8f-0a1b2c3d4e5f"  # winreg is Windows-only; the value is
    out = fingerprint(p)                                             # what MachineGuid holds
    assert out.details["placeholder_fields"] == ["bios_serial", "system_serial", "system_uuid"]
    assert out.details["factors"] == ["machine_id", "board_serial", "macs"]
    assert out.status == "ok" and "厂商占位值" in out.message
    assert p.fingerprint().serial == "180945123400123"


def test_hardware_ids_from_powershell2_csv():
    ids = platform(outputs={"Win32_ComputerSystemProduct": PRODUCT_CSV}).hardware_ids()
    assert ids["system_serial"] == "7B5RNK2" and ids["system_uuid"].startswith("4C4C4544")


def test_adapter_kinds_and_isolation():
    p = platform()
    kinds = {a.name: (a.kind, a.up) for a in p.adapters()}
    assert kinds == {"以太网": ("ethernet", True), "WLAN": ("wireless", True), "以太网 2": ("cellular", True),
                     "以太网 3": ("tunnel", False)}
    assert p.physical_macs() == ["30:5a:3a:11:22:33", "d0:c6:37:44:55:66"]
    import ipaddress

    out = interface_isolation(p.adapters(), p.routes(), ["以太网"], [ipaddress.ip_network("10.0.0.0/8")])
    assert out.status == "fail"
    assert "无线网卡 WLAN 已启用" in out.message and "移动网络/手机共享网卡 以太网 2" in out.message
    assert "2 条 IPv4 默认路由" in out.message and "192.168.43.1 经 WLAN" in out.message


def test_windows7_without_msft_netadapter_still_classifies():
    p = platform(fail=("MSFT_NetAdapter",))
    kinds = {a.name: a.kind for a in p.adapters()}
    assert kinds["WLAN"] == "wireless"  # from the driver service name / description instead


def test_routes_skip_loopback():
    routes = platform().routes()
    assert [(r.destination, r.gateway, r.interface) for r in routes] == [
        ("0.0.0.0/0", "10.10.5.1", "以太网"), ("0.0.0.0/0", "192.168.43.1", "WLAN"), ("10.10.5.0/24", "", "以太网")]


def test_usb_hard_disk_reported_although_fixed():
    vols = {v.mountpoint: v for v in platform().removable_volumes()}
    assert set(vols) == {"E:\\", "F:\\"}
    assert vols["E:\\"].bus == "usb" and vols["E:\\"].details["drive_type"] == 3
    assert vols["E:\\"].serial == "575833314142434445464748"
    assert vols["F:\\"].serial == ""  # generated instance id: no USB serial
    out = removable_media(list(vols.values()), ["575833314142434445464748"])
    assert out.status == "fail" and "F:\\" in out.message and "E:\\" not in out.message


@pytest.mark.parametrize("pnp, serial", [
    (r"USBSTOR\DISK&VEN_KINGSTON&PROD_DATATRAVELER_3.0&REV_PMAP\60A44C413A8CF0B1A99C0E3B&0", "60A44C413A8CF0B1A99C0E3B"),
    (r"USBSTOR\DISK&VEN_GENERIC&PROD_FLASH_DISK&REV_8.07\7&2A3B4C5D&0", ""),
    (r"USBSTOR\DISK", ""),
])
def test_usb_serial_from_pnp(pnp, serial):
    assert wmi.usb_serial_from_pnp(pnp) == serial


def test_powershell_script_is_encoded_and_selects_properties():
    script = wmi.wmi_query_script("Win32_PnPEntity", wmi.USB_PROPERTIES, wmi.USB_WHERE)
    assert script == ("Out-Data (Get-WmiObject -Class Win32_PnPEntity -Filter \"PNPDeviceID LIKE 'USB\\\\%'\" | "
                      "Select-Object PNPDeviceID,Name,Manufacturer,Service,ConfigManagerErrorCode)")
    assert "root/StandardCimv2" in wmi.MSFT_ADAPTER_QUERY


def test_run_powershell_passes_the_script_as_utf16le_base64_encoded_command(monkeypatch):
    """What run_powershell really hands to powershell.exe: -EncodedCommand takes base64 of UTF-16LE text
    (PowerShell's documented encoding), so the argument is decoded here the documented way, with no help
    from the code under test; a script with Chinese and quotes must survive unchanged."""
    seen = {}

    def fake_run(argv, **kwargs):
        seen["argv"] = argv
        return subprocess.CompletedProcess(argv, 0, stdout='[{"NetConnectionID":"以太网"}]'.encode(), stderr=b"")

    monkeypatch.setattr(wmi.subprocess, "run", fake_run)
    script = "Out-Data (Get-WmiObject -Class Win32_NetworkAdapter -Filter \"NetConnectionID = '以太网'\")"
    out = wmi.run_powershell(script)
    assert out == '[{"NetConnectionID":"以太网"}]'
    argv = seen["argv"]
    assert argv[0] == "powershell.exe" and "-NonInteractive" in argv
    encoded = argv[argv.index("-EncodedCommand") + 1]
    assert argv.index("-EncodedCommand") == len(argv) - 2
    assert encoded.isascii()
    text = base64.b64decode(encoded, validate=True).decode("utf-16-le")
    assert text.endswith(script) and text.startswith(wmi._PRELUDE)
    assert "Out-Data" in wmi._PRELUDE  # the prelude defines the function every script ends in
    # Not UTF-8: UTF-16LE puts a NUL after every ASCII character.
    assert base64.b64decode(encoded)[:2] == wmi._PRELUDE[0].encode("ascii") + b"\x00"


# -- fail closed: what Wine showed (tests/test_windows_agent.py runs the same paths for real) ----------------

def test_powershell_that_prints_nothing_is_an_error_naming_the_query(monkeypatch):
    """Wine's powershell.exe (and a PC whose WMI repository is broken) exits 0 and prints nothing."""
    import subprocess

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, b"", b""))
    with pytest.raises(wmi.WmiError, match=r"Win32_PnPEntity: powershell printed nothing"):
        wmi.run_records(wmi.USB_QUERY)
    # An honest empty answer is "[]": Out-Data always prints something.
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: subprocess.CompletedProcess(a, 0, b"[]\r\n", b""))
    assert wmi.run_records(wmi.USB_QUERY) == []


def test_local_printer_without_an_answer_is_an_error_not_absent(monkeypatch):
    import sys

    from agent.checks.devices import localprinter
    from agent.checks.devices.common import ProbeContext
    from agent.platform.winregistry import RecordedRegistry

    def broken(script):
        raise wmi.WmiError(f"{wmi.query_name(script)}: powershell printed nothing (exit 0)")

    monkeypatch.setattr(sys, "platform", "win32")
    device = type("D", (), {"timeout": 2.0})()
    want = localprinter.LocalPrinterConfig("HP LaserJet Pro M404")
    nothing = WindowsPlatform(run=broken, registry=RecordedRegistry({}))
    res = localprinter.probe(device, want, ProbeContext(lambda: [], nothing))
    assert res.status == "error" and not res.answered and "Win32_Printer" in res.message
    # No printer at all ("[]") is an answer: the named one is not installed.
    res = localprinter.probe(device, want, ProbeContext(lambda: [], WindowsPlatform(run=lambda script: [])))
    assert res.status == "fail" and "未安装" in res.message
    assert res.details["source"] == "WMI Win32_Printer"


def test_printer_rows_from_the_csv_route_read_their_flags():
    """PowerShell 2.0 gives CSV text: "False" must not read as offline."""
    from agent.checks.devices import localprinter

    row = {"Name": "HP", "PrinterStatus": "3", "WorkOffline": "False", "DetectedErrorState": "2", "PortName": "IP_10"}
    assert localprinter.evaluate_windows(row, "HP", []).status == "ok"
    assert localprinter.evaluate_windows({**row, "WorkOffline": "True"}, "HP", []).status == "fail"


def test_processes_read_field_by_field_with_a_fallback_for_names(monkeypatch):
    """psutil under Wine raises WinError 87 for every exe and name: the OS snapshot gives the names."""
    import psutil

    from agent.checks.usage import process_usage

    class Proc:
        def __init__(self, pid):
            self.pid = pid

        def name(self):
            raise OSError(22, "Invalid parameter")

        exe = name

        def username(self):
            raise psutil.AccessDenied(self.pid)

        def oneshot(self):  # as psutil.Process's: a context manager that caches reads (none to cache here)
            import contextlib

            return contextlib.nullcontext()

    monkeypatch.setattr(psutil, "pids", lambda: [4, 120, 999])
    monkeypatch.setattr(psutil, "Process", Proc)
    plat = WindowsPlatform(run=lambda script: [])
    monkeypatch.setattr(plat, "process_names", lambda: {4: "System", 120: "ToDesk.exe"})
    procs = plat.processes()
    assert [(p.pid, p.name) for p in procs] == [(4, "System"), (120, "ToDesk.exe")]  # 999: nothing readable
    # Nothing readable at all is an error, never "no forbidden software".
    monkeypatch.setattr(plat, "process_names", lambda: {})
    assert plat.processes() == []
    assert process_usage([], [], [], []).status == "error"


def test_console_output_never_escapes_chinese(monkeypatch):
    import io
    import sys

    from agent import cli

    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setattr(sys, "stderr", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    monkeypatch.delenv("PYTHONIOENCODING", raising=False)
    cli.setup_console()
    print("配置错误", file=sys.stdout)
    sys.stdout.flush()
    assert raw.getvalue().decode("utf-8").strip() == "配置错误"
    assert cli.console_encoding() == "utf-8"  # off Windows; on Windows: the console's CJK page or UTF-8
