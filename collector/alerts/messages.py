"""Alert messages in Chinese: point, region, what is wrong, since when, and a link to the point's page.

The message is composed once, when the notification is queued, and stored with it (the payload), so a
retry after a restart sends exactly what was decided then.
"""

from __future__ import annotations

from datetime import datetime, timezone

from agent.wire import rfc3339
from collector.alerts.rules import TITLES
from collector.timeutil import china_time
from collector.web.labels import duration_cn

SEVERITY_CN = {"critical": "严重", "warning": "警告", "info": "提示"}


def local_time(ts: datetime | None) -> str:
    return china_time(ts)


def compose(alert, point_name: str, event: str, public_url: str, now: datetime) -> dict:
    """The payload every notifier renders from; ``alert`` is an alerts row."""
    since = _aware(alert.pending_since)
    resolved_at = _aware(alert.resolved_at) if alert.resolved_at else None
    link = f"{public_url.rstrip('/')}/points/{alert.point_code}"
    title = TITLES.get(alert.rule, alert.rule)
    severity = SEVERITY_CN.get(alert.severity, alert.severity)
    if event == "resolved":
        subject = f"【已恢复】{point_name}：{title}"
        status_line = f"已于 {local_time(resolved_at)} 恢复，持续 {duration_cn((resolved_at - since).total_seconds())}"
    else:
        subject = f"【{severity}】{point_name}：{title}"
        status_line = f"自 {local_time(since)} 起（已持续 {duration_cn((now - since).total_seconds())}）"
    lines = [
        f"服务点：{point_name}（{alert.point_code}）",
        f"所属地区：{alert.region_path}",
        f"问题：{title}" + (f" — {alert.target}" if alert.target and alert.target not in ("终端", "时钟") else ""),
        f"详情：{alert.summary}",
        f"时间：{status_line}（北京时间）",
        f"级别：{severity}",
    ]
    return {
        "version": 1, "event": event, "alert_id": alert.id, "fingerprint": alert.fingerprint,
        "rule": alert.rule, "title": title, "severity": alert.severity, "severity_cn": severity,
        "point_code": alert.point_code, "point_name": point_name, "region": alert.region_path,
        "check": alert.check, "target": alert.target, "summary": alert.summary, "value": alert.value,
        "since": rfc3339(since), "since_local": local_time(since),
        "resolved_at": rfc3339(resolved_at) if resolved_at else None,
        "link": link, "subject": subject, "lines": lines,
        "text": "\n".join(lines) + f"\n查看服务点：{link}",
        "markdown": f"### {subject}\n\n" + "\n\n".join(f"- {x}" for x in lines) + f"\n\n[查看服务点]({link})",
    }


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=timezone.utc)
