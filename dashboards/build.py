"""Writes the Grafana dashboards (``*.json`` beside this file) from the panel lists below.

The JSON files are what Grafana imports and what the tests read; edit this script and run it
(``python dashboards/build.py``) rather than editing the JSON by hand. tests/test_metrics_dashboards.py
checks the files are up to date. Every panel's PromQL is also run against a real Prometheus in
tests/test_prometheus_stack.py, with the variables substituted.
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${datasource}"}
# A region chosen in the picker is a path prefix: the county 甘肃省/兰州市/城关区 selects its towns and villages.
R = 'region=~"${region}(/.*)?"'
CORE = 'check=~"net\\\\.core\\\\..+"'
DEDICATED = 'check=~"isolation\\\\..+|identity\\\\..+|usage\\\\..+"'
STATUS_MAPPING = [{"type": "value", "options": {
    "0": {"text": "正常", "color": "green", "index": 0}, "1": {"text": "警告", "color": "yellow", "index": 1},
    "2": {"text": "不合格", "color": "red", "index": 2}, "3": {"text": "无法检查", "color": "purple", "index": 3}}}]
UP_MAPPING = [{"type": "value", "options": {"0": {"text": "离线/故障", "color": "red", "index": 0},
                                            "1": {"text": "正常", "color": "green", "index": 1}}}]


def var_datasource():
    return {"name": "datasource", "label": "数据源", "type": "datasource", "query": "prometheus",
            "current": {}, "hide": 0, "refresh": 1}


def var_query(name, label, query, regex="", include_all=True, multi=True):
    v = {"name": name, "label": label, "type": "query", "datasource": DS, "definition": query,
         "query": {"query": query, "refId": f"var-{name}"}, "refresh": 2, "regex": regex, "sort": 1,
         "includeAll": include_all, "multi": multi, "current": {}, "hide": 0}
    if include_all:
        v["allValue"] = ".*"
    return v


# Region options are cut to the county level (省/市/县); a county selects everything beneath it.
REGION_VAR = var_query("region", "地区（县）", "label_values(pointwatch_point_up, region)",
                       regex="/^((?:[^/]+/){0,2}[^/]+)/")


def panel(kind, title, targets, x, y, w, h, unit=None, mappings=None, extra=None):
    p = {"type": kind, "title": title, "datasource": DS, "gridPos": {"x": x, "y": y, "w": w, "h": h},
         "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend,
                      **({"instant": True, "format": "table"} if kind == "table" else {})}
                     for i, (expr, legend) in enumerate(targets)],
         "fieldConfig": {"defaults": {}, "overrides": []}, "options": {}}
    if unit:
        p["fieldConfig"]["defaults"]["unit"] = unit
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = mappings
    if extra:
        p.update(extra)
    return p


def dashboard(uid, title, variables, panels, tags):
    for i, p in enumerate(panels, start=1):
        p["id"] = i
    return {"uid": uid, "title": title, "tags": ["pointwatch", *tags], "timezone": "browser",
            "schemaVersion": 39, "version": 1, "editable": True, "refresh": "1m",
            "time": {"from": "now-6h", "to": "now"}, "templating": {"list": variables},
            "annotations": {"list": []}, "panels": panels}


def overview():
    return dashboard("pointwatch-overview", "医保服务点运行总览", [var_datasource(), REGION_VAR], [
        panel("stat", "在线服务点", [(f"sum(pointwatch_point_up{{{R}}})", "在线")], 0, 0, 4, 4),
        panel("stat", "服务点总数", [(f"count(pointwatch_point_up{{{R}}})", "总数")], 4, 0, 4, 4),
        panel("stat", "失联服务点", [(f"count(pointwatch_point_up{{{R}}} == 0)", "失联")], 8, 0, 4, 4),
        panel("stat", "核心网络不可达", [(f"count(min by (point) (pointwatch_check_status{{{CORE},{R}}}) >= 2)",
                                   "不可达")], 12, 0, 4, 4),
        panel("stat", "缺失或故障设备", [(f"count(pointwatch_device_up{{{R}}} == 0)", "设备")], 16, 0, 4, 4),
        panel("stat", "正在告警", [(f"sum(pointwatch_alerts_firing{{{R}}})", "告警")], 20, 0, 4, 4),
        panel("timeseries", "在线率", [(f"sum(pointwatch_point_up{{{R}}}) / count(pointwatch_point_up{{{R}}})",
                                     "在线率")], 0, 4, 12, 8, unit="percentunit"),
        panel("histogram", "合规得分分布", [(f"pointwatch_compliance_score{{{R}}}", "{{point}}")], 12, 4, 12, 8,
              extra={"options": {"bucketSize": 10}}),
        panel("timeseries", "核心网络平均时延", [
            (f"avg by (target) (pointwatch_core_rtt_seconds{{{R}}})", "{{target}} 平均"),
            (f"quantile by (target) (0.95, pointwatch_core_rtt_seconds{{{R}}})", "{{target}} P95")],
              0, 12, 12, 8, unit="s"),
        panel("timeseries", "核心网络丢包率", [(f"avg by (target) (pointwatch_core_loss_ratio{{{R}}})", "{{target}}"),
                                        (f"max by (target) (pointwatch_core_loss_ratio{{{R}}})", "{{target}} 最大")],
              12, 12, 12, 8, unit="percentunit"),
        panel("bargauge", "缺失或故障设备（按类型）",
              [(f"count by (kind) (pointwatch_device_up{{{R}}} == 0)", "{{kind}}")], 0, 20, 8, 8),
        panel("table", "缺失或故障设备清单", [(f"pointwatch_device_up{{{R}}} == 0", "")], 8, 20, 16, 8),
        panel("table", "失联或网络不通的服务点", [
            (f"pointwatch_point_up{{{R}}} == 0", ""),
            (f"min by (point, region) (pointwatch_check_status{{{CORE},{R}}}) >= 2", "")], 0, 28, 12, 8),
        panel("table", "正在告警的服务点", [(f"sum by (point, region, check) (pointwatch_alerts_firing{{{R}}}) > 0", "")],
              12, 28, 12, 8),
    ], ["overview"])


def point_detail():
    P = 'point="${point}"'
    point_var = var_query("point", "服务点", 'label_values(pointwatch_point_up{region=~"${region}(/.*)?"}, point)',
                          include_all=False, multi=False)
    return dashboard("pointwatch-point", "医保服务点详情", [var_datasource(), REGION_VAR, point_var], [
        panel("stat", "在线", [(f"pointwatch_point_up{{{P}}}", "在线")], 0, 0, 4, 4, mappings=UP_MAPPING),
        panel("stat", "距最近上报", [(f"time() - pointwatch_agent_last_report_timestamp_seconds{{{P}}}", "秒")],
              4, 0, 4, 4, unit="s"),
        panel("stat", "合规得分", [(f"pointwatch_compliance_score{{{P}}}", "{{profile}}")], 8, 0, 4, 4),
        panel("stat", "时钟偏差", [(f"pointwatch_agent_clock_skew_seconds{{{P}}}", "偏差")], 12, 0, 4, 4, unit="s"),
        panel("stat", "不合格检查项", [(f"count(pointwatch_check_status{{{P}}} >= 2)", "项")], 16, 0, 8, 4),
        panel("state-timeline", "各检查项状态", [(f"pointwatch_check_status{{{P}}}", "{{check}} {{target}}")],
              0, 4, 24, 12, mappings=STATUS_MAPPING),
        panel("timeseries", "核心网络时延", [(f"pointwatch_core_rtt_seconds{{{P}}}", "{{target}}")], 0, 16, 12, 8,
              unit="s"),
        panel("timeseries", "核心网络丢包率", [(f"pointwatch_core_loss_ratio{{{P}}}", "{{target}}")], 12, 16, 12, 8,
              unit="percentunit"),
        panel("state-timeline", "设备在线", [(f"pointwatch_device_up{{{P}}}", "{{device}}（{{kind}}）")],
              0, 24, 12, 8, mappings=UP_MAPPING),
        panel("bargauge", "打印机耗材余量", [(f"pointwatch_printer_supply_ratio{{{P}}}", "{{device}} {{target}}")],
              12, 24, 12, 8, unit="percentunit"),
        panel("timeseries", "打印机耗材趋势", [(f"pointwatch_printer_supply_ratio{{{P}}}", "{{device}} {{target}}")],
              0, 32, 24, 8, unit="percentunit"),
    ], ["point"])


def compliance():
    F = f'{R},profile=~"${{profile}}"'
    profile_var = var_query("profile", "评分标准", "label_values(pointwatch_point_up, profile)")
    return dashboard("pointwatch-compliance", "医保服务点合规达标情况", [var_datasource(), REGION_VAR, profile_var], [
        panel("bargauge", "各条目达标率（按评分标准）",
              [(f"avg by (profile, item) (pointwatch_compliance_item_ok{{{F}}})", "{{profile}} {{item}}")],
              0, 0, 12, 12, unit="percentunit"),
        panel("timeseries", "平均得分（按评分标准）", [(f"avg by (profile) (pointwatch_compliance_score{{{F}}})",
                                             "{{profile}}")], 12, 0, 12, 12),
        panel("histogram", "得分分布", [(f"pointwatch_compliance_score{{{F}}}", "{{point}}")], 0, 12, 12, 8,
              extra={"options": {"bucketSize": 10}}),
        panel("stat", "专网专机专用全部合格的服务点占比", [(
            f"count(max by (point) (pointwatch_check_status{{{DEDICATED},{R}}}) < 2)"
            f" / count(max by (point) (pointwatch_check_status{{{DEDICATED},{R}}}))", "占比")],
              12, 12, 12, 8, unit="percentunit"),
        panel("table", "未达标条目", [(f"pointwatch_compliance_item_ok{{{F}}} == 0", "")], 0, 20, 24, 8),
    ], ["compliance"])


DASHBOARDS = {"overview.json": overview, "point.json": point_detail, "compliance.json": compliance}


def render_all() -> dict[str, str]:
    return {name: json.dumps(build(), ensure_ascii=False, indent=2) + "\n" for name, build in DASHBOARDS.items()}


if __name__ == "__main__":
    for name, text in render_all().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {HERE / name}")
