"""The demo county's central policy: one county document and a few village overrides, so a newcomer sees
where each point's exam comes from (the point's policy page, ``policy show``), set once like an admin would."""

from __future__ import annotations

from collector.policy import service
from collector.store import policies
from collector.store.audit import Actor

ACTOR = Actor("system:demo")
COUNTY_POLICY = """\
# 榆中县医保服务点统一检查策略（演示）
intervals: {network: 60s, devices: 5m, compliance: 5m, identity: 1h}
core_network:
  timeout: 1s
  count: 3
  icmp: [{target: 10.62.0.1, name: 县医保核心网关}]
  tcp: [{target: "10.62.1.20:443", name: 省医保信息平台}]
  https: [{url: "https://10.62.1.20/health", name: 网上办理渠道}]
isolation:
  internet_canaries: [{target: "223.5.5.5:53"}, {target: 114.114.114.114, method: icmp}]
  allowed_subnets: [10.0.0.0/8]
usage:
  forbidden_software: default
  allowed_ports: []
  allowed_usb_serials: []
"""
# Village overrides: a slower line, a mandated remote-maintenance tool, a registered USB key.
OVERRIDES = {  # beneath the county
    "高崖镇/水岔沟村": "core_network: {timeout: 3s}\n",
    "青城镇": "usage: {allowed_software: [todesk]}\n",
    "城关镇/东关村": "usage: {allowed_usb_serials: [YB-UKEY-0001]}\n",
}


def apply(store, county: str) -> None:
    """Set the county policy and its overrides unless the county has one already (later starts keep edits)."""
    if policies.document(store, policies.REGION, county) is not None:
        return
    service.set_region(store, county, COUNTY_POLICY, "demo-county-policy.yaml", ACTOR)
    for path, text in OVERRIDES.items():
        service.set_region(store, f"{county}/{path}", text, "demo-village-policy.yaml", ACTOR)


def current_digest(store, code: str) -> str | None:
    issued = policies.current_issue(store, code)
    return issued.digest if issued is not None else None
