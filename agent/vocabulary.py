"""The project's words, defined once: check ids by family, device kinds, statuses, roles, profiles.

Standard library only, so the agent ships it; the collector imports it from here. Chinese names of these
words (what county staff read) are here too, so the web pages, the PDF and the XLSX say the same thing.
"""

from __future__ import annotations

# -- statuses ------------------------------------------------------------------------------------------
OK, WARN, FAIL, ERROR = "ok", "warn", "fail", "error"
STATUSES = (OK, WARN, FAIL, ERROR)
# How bad a status is, for "the worst of these": an error (the check could not see the fact) is worse than a
# warning but not as bad as a requirement seen unmet, which is the finding a point must fix first.
STATUS_RANK = {OK: 0, WARN: 1, ERROR: 2, FAIL: 3}
# The status's number in Prometheus series and on the wire's summaries (DESIGN.md: 0 ok … 3 error).
STATUS_CODE = {OK: 0, WARN: 1, FAIL: 2, ERROR: 3}
STATUS_CN = {OK: "正常", WARN: "警告", FAIL: "不合格", ERROR: "错误"}


def worst(statuses) -> str:
    """The worst of some statuses by STATUS_RANK; ``ok`` for none."""
    return max(statuses, key=STATUS_RANK.__getitem__, default=OK)


def zero_counts() -> dict[str, int]:
    return dict.fromkeys(STATUSES, 0)


# A point's state on the dashboard: silent, or its worst latest status. Listed worst first.
SILENT = "silent"
POINT_STATES = (SILENT, FAIL, ERROR, WARN, OK)
POINT_STATE_CN = {SILENT: "失联", ERROR: "检查出错", FAIL: "不合格", WARN: "警告", OK: "正常"}
# A point is silent after this many report intervals without a report, unless the alert rule
# ``point_silent.intervals`` says otherwise (the collector passes that number everywhere it decides).
SILENCE_INTERVALS_DEFAULT = 3

# -- device kinds -----------------------------------------------------------------------------------------
DEVICE_KIND_CN = {
    "kiosk": "自助服务一体机", "queue": "自助取号机", "printer": "打印机", "scanner": "扫描仪（OCR）",
    "display": "电子显示屏", "copier": "复印机", "camera": "摄像头", "phone": "电话", "computer": "计算机",
    "other": "其他设备",
}
DEVICE_KINDS = tuple(DEVICE_KIND_CN)
# A device's name when its config gives none (it is the result's target and starts the agent's messages,
# "扫描仪未检测到…"): the kind's name as staff say it, shorter than the label of the kind.
DEVICE_DEFAULT_NAME = {**DEVICE_KIND_CN, "scanner": "扫描仪", "other": "设备"}
PRINTER_KINDS = ("printer", "copier", "scanner")  # multifunction devices answer the Printer-MIB

# -- check ids, by family -------------------------------------------------------------------------------------
NET_CORE_ICMP, NET_CORE_TCP, NET_CORE_DNS, NET_CORE_HTTPS = (
    "net.core.icmp", "net.core.tcp", "net.core.dns", "net.core.https")
ISOLATION_INTERNET, ISOLATION_INTERFACES = "isolation.internet", "isolation.interfaces"
IDENTITY_FINGERPRINT = "identity.fingerprint"
USAGE_PROCESSES, USAGE_REMOVABLE_MEDIA, USAGE_LISTENING_PORTS, USAGE_ACCOUNTS = (
    "usage.processes", "usage.removable_media", "usage.listening_ports", "usage.accounts")
HOST_RESOURCES = "host.resources"
AGENT_OUTBOX = "agent.outbox"  # the agent's own state: reports dropped from a full outbox
# The agent's own word on the signed policy it runs (fetched, cached, refused); the collector derives
# AGENT_POLICY from each report's policy_digest (the policy issue's wire contract).
AGENT_POLICY_FETCH = "agent.policy_fetch"
# The agent's word on its own release: running what the policy names, upgrading, or why an upgrade failed.
# Not scorable: the standards do not score it (kept out of SCORABLE_CHECK_IDS, like agent.policy_fetch).
AGENT_UPGRADE = "agent.upgrade"
# Results the collector derives from each report (never sent by an agent).
IDENTITY_MATCHES_ENROLMENT = "identity.matches_enrolment"
AGENT_CLOCK_SKEW = "agent.clock_skew"
# 代理策略: whether the report was checked against the policy the collector issued to its point (the
# report's ``policy_digest`` against the digests issued; collector/ingest/derive.py).
AGENT_POLICY = "agent.policy"
# What the alert about a silent point names as its check: the reports themselves, which stopped coming.
AGENT_REPORT = "agent.report"


def device_check(kind: str) -> str:
    return f"device.{kind}"


CHECKS_BY_FAMILY: dict[str, tuple[str, ...]] = {
    "network": (NET_CORE_ICMP, NET_CORE_TCP, NET_CORE_DNS, NET_CORE_HTTPS),
    "isolation": (ISOLATION_INTERNET, ISOLATION_INTERFACES),
    "identity": (IDENTITY_FINGERPRINT,),
    "usage": (USAGE_PROCESSES, USAGE_REMOVABLE_MEDIA, USAGE_LISTENING_PORTS, USAGE_ACCOUNTS),
    "host": (HOST_RESOURCES,),
    "devices": tuple(device_check(k) for k in DEVICE_KINDS),
}
AGENT_CHECK_IDS = frozenset(c for ids in CHECKS_BY_FAMILY.values() for c in ids)
COLLECTOR_CHECK_IDS = frozenset({IDENTITY_MATCHES_ENROLMENT, AGENT_CLOCK_SKEW, AGENT_POLICY})  # AGENT_REPORT is no result
# What a standards profile may name in a rule: every agent check plus the collector's 人机信息相符.
SCORABLE_CHECK_IDS = AGENT_CHECK_IDS | {IDENTITY_MATCHES_ENROLMENT}

CHECK_CN = {
    NET_CORE_ICMP: "核心网络连通（ICMP）", NET_CORE_TCP: "医保平台端口", NET_CORE_DNS: "域名解析",
    NET_CORE_HTTPS: "网上办理渠道", ISOLATION_INTERNET: "互联网隔离", ISOLATION_INTERFACES: "网卡与路由",
    IDENTITY_FINGERPRINT: "终端硬件标识", IDENTITY_MATCHES_ENROLMENT: "人机信息相符",
    USAGE_PROCESSES: "禁用软件与必需进程", USAGE_REMOVABLE_MEDIA: "移动存储", USAGE_LISTENING_PORTS: "监听端口",
    USAGE_ACCOUNTS: "登录账号", HOST_RESOURCES: "终端资源", AGENT_CLOCK_SKEW: "终端时钟",
    AGENT_OUTBOX: "代理缓存", AGENT_POLICY_FETCH: "策略获取", AGENT_POLICY: "代理策略",
    AGENT_UPGRADE: "代理升级",
}

# -- agent releases ------------------------------------------------------------------------------------------
# What an agent release is built for: the self-contained Linux builds, the Windows exe, and a wheel (pip).
RELEASE_PLATFORMS = ("linux-x86_64", "linux-aarch64", "windows-amd64", "wheel")

# The dashboard's families of checks (prefix -> family), and the three pillars of 专网专机专用.
FAMILY_PREFIXES = (("net.core.", "core"), ("isolation.", "isolation"), ("identity.", "identity"),
                   ("usage.", "usage"), ("device.", "device"))


def family_of(check: str) -> str:
    for prefix, family in FAMILY_PREFIXES:
        if check.startswith(prefix):
            return family
    return "other"


# The three pillars of 专网专机专用, by the family of checks that proves each.
PILLAR_CN = {"isolation": "专网", "identity": "专机", "usage": "专用"}


# -- roles and profiles -------------------------------------------------------------------------------------
ROLES = ("agent", "viewer", "reviewer", "admin")
READ_ROLES = ("viewer", "reviewer", "admin")
ROLE_CN = {"viewer": "查看", "reviewer": "评审", "admin": "管理员", "agent": "代理"}

PROFILE_CN = {
    "national-basic": "国家基层示范点标准", "national-window": "国家窗口示范点标准",
    "jiangsu-15min": "江苏15分钟医保服务圈", "lanzhou-basic-2023": "兰州市基层服务点（2023）",
    "xiangyuan-county": "襄垣县医保服务下沉",
}
PROFILE_NAMES = tuple(PROFILE_CN)
DEFAULT_PROFILE = "national-basic"
