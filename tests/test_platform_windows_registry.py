"""Windows facts when PowerShell/WMI does not answer (a broken WMI repository, a blocking policy, Wine's
stub powershell.exe): what the registry and psutil can tell, fed here from recorded keys through the same
WindowsPlatform and parsers that run on a point's PC, and the source named in the result. Under Wine the
same fallbacks read a real registry (tests/test_windows_agent.py)."""

from __future__ import annotations

import sys

import pytest

from agent.checks.devices import localprinter
from agent.checks.devices.common import ProbeContext
from agent.checks.identity import fingerprint
from agent.checks.isolation import interface_isolation
from agent.platform import winregistry as reg
from agent.platform import wmi
from agent.platform.windows import WindowsPlatform
from agent.platform.winregistry import RecordedRegistry

G1, G2 = "{AAAA0000-0000-0000-0000-000000000001}", "{AAAA0000-0000-0000-0000-000000000002}"
STICK = "USBSTOR#Disk&Ven_WD&Prod_Elements_2621&Rev_1026#575833314142434445464748&0#{53f56307-b6bf-11d0-94f2-00a0c91efb8b}"
KEYS = {
    reg.CRYPTOGRAPHY_KEY: {"MachineGuid": "5b1c7e0e-2f1a-4c1e-9d55-0a1b2c3d4e5f"},
    reg.BIOS_KEY: {"SystemProductName": "OptiPlex 3020", "BIOSVendor": "Dell Inc."},
    # The network class: the driver's own ifType and medium tell Wi-Fi from Ethernet, not the (localized,
    # user-editable) connection name.
    reg.NET_CLASS_KEY + r"\0001": {"NetCfgInstanceId": G1, "DriverDesc": "Realtek PCIe GbE Family Controller",
                                   "DeviceInstanceID": r"PCI\VEN_10EC&DEV_8168\01", "*IfType": 6,
                                   "*PhysicalMediaType": 14, "Characteristics": 0x84},
    reg.NET_CLASS_KEY + r"\0002": {"NetCfgInstanceId": G2, "DriverDesc": "Intel(R) Dual Band Wireless-AC 3168",
                                   "DeviceInstanceID": r"PCI\VEN_8086&DEV_24FB\02", "*IfType": 71,
                                   "*PhysicalMediaType": 9, "Characteristics": 0x84},
    reg.NET_CLASS_KEY + r"\Properties": {},
    reg.NET_CONNECTIONS_KEY + f"\\{G1}\\Connection": {"Name": "以太网"},
    reg.NET_CONNECTIONS_KEY + f"\\{G2}\\Connection": {"Name": "WLAN"},
    reg.TCPIP_INTERFACES_KEY + f"\\{G1}": {"EnableDHCP": 1, "DhcpDefaultGateway": ["10.10.5.1"]},
    reg.TCPIP_INTERFACES_KEY + f"\\{G2}": {"EnableDHCP": 1, "DhcpDefaultGateway": ["192.168.43.1"]},
    # Enum\USB keeps every device ever plugged in; only present ones have the volatile Control key.
    reg.USB_ENUM_KEY + r"\ROOT_HUB30\4&1F2E3D&0&0": {"Service": "USBHUB3"},
    reg.USB_ENUM_KEY + r"\ROOT_HUB30\4&1F2E3D&0&0\Control": {},
    reg.USB_ENUM_KEY + r"\VID_04C5&PID_128D\6&2B3C1D0&0&1": {"DeviceDesc": "@oem12.inf,%fi-7160%;fi-7160",
                                                              "Mfg": "PFU", "Service": "usbscan"},
    reg.USB_ENUM_KEY + r"\VID_04C5&PID_128D\6&2B3C1D0&0&1\Control": {"ActiveService": "usbscan"},
    reg.USB_ENUM_KEY + r"\VID_03F0&PID_2B17\CN12345678": {"DeviceDesc": "HP LaserJet 1020", "Service": "usbprint"},
    reg.USB_ENUM_KEY + r"\VID_03F0&PID_2B17\CN12345678\Control": {},
    reg.USB_ENUM_KEY + r"\VID_0951&PID_1666\60A44C413A8CF0B1A99C0E3B": {"Service": "USBSTOR"},  # unplugged
    reg.PRINTERS_KEY + r"\HP LaserJet 1020": {"Name": "HP LaserJet 1020", "Port": "USB001",
                                              "Printer Driver": "HP LaserJet 1020", "Attributes": 0},
    reg.PRINTERS_KEY + r"\办公室打印机": {"Name": "办公室打印机", "Port": "IP_10.10.5.20", "Attributes": 0},
    reg.MOUNTED_DEVICES_KEY: {r"\DosDevices\C:": b"\x12\x34\x56\x78" + b"\x00" * 8,
                              r"\DosDevices\E:": ("\\??\\" + STICK).encode("utf-16-le")},
}
LINKS = {"以太网": {"up": True, "mac": "30-5A-3A-11-22-33"}, "WLAN": {"up": True, "mac": "D0-C6-37-44-55-66"},
         "Loopback Pseudo-Interface 1": {"up": True, "mac": ""}}
ADDRESSES = {"以太网": ["10.10.5.8/24"], "WLAN": ["192.168.43.20/24"]}


def silent_wmi(script: str) -> list[dict]:
    raise wmi.WmiError(f"{wmi.query_name(script)}: powershell printed nothing (exit 0)")


def platform(keys=KEYS) -> WindowsPlatform:
    return WindowsPlatform(run=silent_wmi, addresses=ADDRESSES, registry=RecordedRegistry(keys), links=LINKS,
                           partitions=[("C:\\", "rw,fixed"), ("E:\\", "rw,fixed")])


def test_adapters_and_routes_from_the_registry_and_psutil():
    p = platform()
    adapters = {a.name: a for a in p.adapters()}
    assert {n: a.kind for n, a in adapters.items()} == {"以太网": "ethernet", "WLAN": "wireless"}
    assert adapters["WLAN"].up and adapters["以太网"].addresses == ("10.10.5.8/24",)
    assert p.fact_source("adapters").startswith("registry network class + psutil (WMI: Win32_NetworkAdapter")
    routes = p.routes()
    assert {(r.destination, r.gateway) for r in routes if r.is_default} == {("0.0.0.0/0", "10.10.5.1"),
                                                                              ("0.0.0.0/0", "192.168.43.1")}
    out = interface_isolation(list(adapters.values()), routes, ["以太网"], [])
    assert out.status == "fail" and "WLAN" in out.message and "2 条 IPv4 默认路由" in out.message
    assert p.physical_macs() == ["30:5a:3a:11:22:33", "d0:c6:37:44:55:66"]


def test_an_adapter_the_registry_cannot_classify_is_an_error_not_a_guess():
    keys = {k: v for k, v in KEYS.items() if not k.endswith(r"\0002")}  # WLAN's class key is gone
    with pytest.raises(wmi.WmiError, match=r"Win32_NetworkAdapter.*fallback.*'WLAN' has no network class key"):
        platform(keys).adapters()


def test_usb_devices_present_now_from_enum_usb():
    p = platform()
    found = {(d.vid, d.pid): d for d in p.usb_devices()}
    assert set(found) == {("04c5", "128d"), ("03f0", "2b17")}  # the unplugged stick is not there
    assert found[("04c5", "128d")].product == "fi-7160" and found[("03f0", "2b17")].interface_classes == (0x07,)
    assert p.fact_source("usb_devices").startswith("registry HKLM\\SYSTEM\\CurrentControlSet\\Enum\\USB")


def test_a_usb_device_seen_only_in_the_registry_is_present_with_its_state_unknown():
    """Enum\\USB says attached, not working: a scanner whose driver failed must not read as healthy."""
    from agent.checks.devices import usb
    from agent.checks.devices.common import DeviceConfig

    p = platform()
    found = {(d.vid, d.pid): d for d in p.usb_devices()}
    assert found[("04c5", "128d")].error_code is None and not found[("04c5", "128d")].working
    out = usb.probe(DeviceConfig(kind="scanner", name="扫描仪"), usb.UsbConfig("04c5", "128d"),
                    ProbeContext(usb_devices=p.usb_devices, platform=p))
    assert out.status == "warn" and out.answered and "已连接" in out.message and "未能读取其工作状态" in out.message


def test_printer_queues_from_the_registry_never_pass_on_the_queue_alone(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    p = platform()
    device = type("D", (), {"timeout": 2.0})()
    ctx = ProbeContext(usb_devices=p.usb_devices, platform=p)
    usb = localprinter.probe(device, localprinter.LocalPrinterConfig("HP LaserJet 1020"), ctx)
    # Seen: the USB printer is attached. Not seen: its state (the registry has none): warn, not ok.
    assert usb.status == "warn" and usb.answered and "WMI 未应答" in usb.message
    assert usb.details["source"].startswith("registry HKLM\\SYSTEM\\CurrentControlSet\\Control\\Print\\Printers")
    network = localprinter.probe(device, localprinter.LocalPrinterConfig("办公室打印机"), ctx)
    assert network.status == "error" and not network.answered
    gone = localprinter.probe(device, localprinter.LocalPrinterConfig("不存在"), ctx)
    assert gone.status == "fail" and "未安装" in gone.message


def test_removable_volumes_from_mounted_devices():
    (vol,) = platform().removable_volumes()
    assert vol.mountpoint == "E:\\" and vol.bus == "usb" and vol.serial == "575833314142434445464748"
    # A fixed D: known only by its disk signature may be a USB hard disk: not readable, not "none".
    p = platform()
    p._partitions = [("C:\\", "rw,fixed"), ("D:\\", "rw,fixed")]
    with pytest.raises(wmi.WmiError, match="drive D: is not placed by MountedDevices"):
        p.removable_volumes()


def test_identity_without_wmi_has_the_machine_guid_but_no_smbios_identifier():
    p = platform()
    assert p.machine_id() == "5b1c7e0e-2f1a-4c1e-9d55-0a1b2c3d4e5f"
    assert p.hardware_ids() == {"product_name": "OptiPlex 3020", "bios_vendor": "Dell Inc."}
    from agent.checks import FactUnavailable

    with pytest.raises(FactUnavailable, match="Win32_ComputerSystemProduct.*no SMBIOS identifier"):
        fingerprint(p)


@pytest.mark.parametrize("fact", ["adapters", "routes", "usb_devices", "removable_volumes", "printers",
                                  "hardware_ids", "physical_macs", "machine_id"])
def test_no_wmi_and_no_registry_is_an_error_naming_both(fact):
    p = WindowsPlatform(run=silent_wmi, addresses={}, registry=RecordedRegistry({}), links={}, partitions=[])
    with pytest.raises((wmi.WmiError, OSError)) as info:
        getattr(p, fact)()
    text = str(info.value)
    if fact == "machine_id":  # the registry is its only source
        assert "Cryptography" in text
    else:
        assert "powershell printed nothing" in text and "fallback" in text


def test_enrolment_fingerprint_carries_what_could_be_read():
    """enroll and every report send the fingerprint: a failed source leaves its field empty (the collector
    compares), identity.fingerprint is where the failure is an error."""
    p = WindowsPlatform(run=silent_wmi, addresses={}, registry=RecordedRegistry({}), links={}, partitions=[])
    fp = p.fingerprint()
    assert (fp.machine_id, fp.serial, fp.macs) == ("", "", [])
    fp = platform().fingerprint()
    assert fp.machine_id == "5b1c7e0e-2f1a-4c1e-9d55-0a1b2c3d4e5f" and fp.macs == ["30:5a:3a:11:22:33",
                                                                                 "d0:c6:37:44:55:66"]
