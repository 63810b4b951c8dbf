"""Chinese labels for states, checks, devices and profiles, shared by pages, alerts and evidence."""

from __future__ import annotations

STATE_LABEL = {"silent": "失联", "error": "检查出错", "fail": "不合格", "warn": "警告", "ok": "正常"}
STATUS_LABEL = {"ok": "正常", "warn": "警告", "fail": "不合格", "error": "错误"}
ROLE_LABEL = {"viewer": "查看", "reviewer": "评审", "admin": "管理员", "agent": "代理"}
CHECK_LABEL = {
    "net.core.icmp": "核心网络连通（ICMP）", "net.core.tcp": "医保平台端口", "net.core.dns": "域名解析",
    "net.core.https": "网上办理渠道", "isolation.internet": "互联网隔离", "isolation.interfaces": "网卡与路由",
    "identity.fingerprint": "终端硬件标识", "identity.matches_enrolment": "人机信息相符",
    "usage.processes": "禁用软件与必需进程", "usage.removable_media": "移动存储", "usage.listening_ports": "监听端口",
    "usage.accounts": "登录账号", "host.resources": "终端资源", "agent.clock_skew": "终端时钟",
    "agent.outbox": "代理缓存",
}
DEVICE_LABEL = {
    "kiosk": "自助服务一体机", "queue": "自助取号机", "printer": "打印机", "scanner": "扫描仪（OCR）",
    "display": "电子显示屏", "copier": "复印机", "camera": "摄像头", "phone": "电话", "computer": "计算机",
    "other": "其他设备",
}
PROFILE_LABEL = {
    "national-basic": "国家基层示范点标准", "national-window": "国家窗口示范点标准",
    "jiangsu-15min": "江苏15分钟医保服务圈", "lanzhou-basic-2023": "兰州市基层服务点（2023）",
    "xiangyuan-county": "襄垣县医保服务下沉",
}
SUPPLY_STATE = {"some_remaining": "尚有余量", "unknown": "未知", "unlimited": "不限量", "other": "其他"}
FAMILY_OF = (("net.core.", "core"), ("isolation.", "isolation"), ("identity.", "identity"), ("usage.", "usage"),
             ("device.", "device"))
PILLARS = (
    ("isolation", "专网", "终端只接入医保专网，不能访问互联网"),
    ("identity", "专机", "终端是登记的那台机器（人机信息相符）"),
    ("usage", "专用", "终端只用于医保业务：无远程控制、聊天、游戏等软件，无未登记移动存储"),
)


def family_of(check: str) -> str:
    for prefix, family in FAMILY_OF:
        if check.startswith(prefix):
            return family
    return "other"


def duration_cn(seconds: float) -> str:
    """A span as staff say it: "45 秒", "12 分钟", "3 小时 5 分钟", "2 天 4 小时"."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} 秒"
    if seconds < 3600:
        return f"{seconds // 60} 分钟"
    if seconds < 86400:
        return f"{seconds // 3600} 小时 {seconds % 3600 // 60} 分钟"
    return f"{seconds // 86400} 天 {seconds % 86400 // 3600} 小时"
