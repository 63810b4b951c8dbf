"""Devices belong to the registry: the points spreadsheet's device columns, checked by the agent's own device
validator, become the point's registered devices, appended to its effective policy (a new digest issued)."""

from __future__ import annotations

import pytest

from collector.policy import service
from collector.registry import importing, spreadsheet
from collector.registry.spreadsheet import ImportError_
from collector.store import registry
from collector.store.audit import Actor

COUNTY = "甘肃省/兰州市/城关区"
HEADER = "code,name,region,profile,device_kind,device_name,device_address,device_method\n"
SHEET = HEADER + (
    f"P1,甲村服务点,{COUNTY}/某镇/甲村,national-basic,kiosk,自助服务一体机,10.10.5.21,icmp\n"
    "P1,,,,打印机,前台打印机,10.10.5.30,snmp\n"
    "P1,,,,scanner,OCR扫描仪,04C5:1234,usb\n"
    f"P2,乙村服务点,{COUNTY}/某镇/乙村,national-basic,,,,\n")


def _load(tmp_path, text):
    path = tmp_path / "points.csv"
    path.write_text(text, encoding="utf-8")
    return spreadsheet.load_points(path)


def test_device_rows_become_registered_devices_in_the_effective_policy(store, tmp_path):
    service.set_region(store, COUNTY, "devices: [{kind: queue, name: 取号机, icmp: 10.10.5.22}]\n", "c.yaml",
                       Actor("test"))
    counts = importing.import_points(store, _load(tmp_path, SHEET), Actor("test"), "points.csv")
    assert counts["created"] == 2 and counts["policies_issued"] == 2
    eff = service.show_point(store, "P1")
    assert eff.policy["devices"] == [
        {"kind": "queue", "name": "取号机", "icmp": "10.10.5.22"},
        {"kind": "kiosk", "name": "自助服务一体机", "icmp": "10.10.5.21"},
        {"kind": "printer", "name": "前台打印机", "snmp": {"host": "10.10.5.30"}},
        {"kind": "scanner", "name": "OCR扫描仪", "usb": {"vid": "04c5", "pid": "1234"}}]
    assert eff.origin["devices"] == f"{COUNTY} + registry"
    assert service.show_point(store, "P2").policy["devices"] == [{"kind": "queue", "name": "取号机",
                                                                  "icmp": "10.10.5.22"}]
    # export writes the same columns, one device a row: importing it back changes nothing
    out = tmp_path / "export.xlsx"
    spreadsheet.write_xlsx(registry.export_points(store), out)
    again = spreadsheet.load_points(out)
    assert [p.devices for p in again] == [p.devices for p in _load(tmp_path, SHEET)]


@pytest.mark.parametrize("row, column", [
    ("P1,,,,toaster,x,10.0.0.1,icmp", "device_kind"),
    ("P1,,,,printer,p,10.0.0.1,carrier-pigeon", "device_method"),
    ("P1,,,,printer,p,10.0.0.999,icmp", "device_address"),
    ("P1,,,,printer,p,,icmp", "device_address"),
    ("P1,,,,kiosk,自助服务一体机,10.0.0.2,icmp", "device_name"),
])
def test_a_device_the_agent_would_refuse_is_refused_naming_row_and_column(store, tmp_path, row, column):
    with pytest.raises(ImportError_) as caught:
        _load(tmp_path, SHEET + row + "\n")
    (problem,) = caught.value.problems
    assert (problem.row, problem.column) == (6, column), str(problem)
