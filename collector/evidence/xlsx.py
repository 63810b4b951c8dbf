"""The same sheet as XLSX (openpyxl), for reviewers who fill in the manual items on a computer."""

from __future__ import annotations

import io

from collector.evidence.period import local
from collector.evidence.sheet import series_cells
from collector.web.labels import ITEM_STATE_LABEL
from collector.xlsxcells import append

HEAD = ["项目", "评价指标", "具体内容", "分值", "得分", "依据", "状态", "条目编号"]
RECORD_HEAD = ["检查项", "正常/警告/不合格/出错", "正常占比", "首次/末次问题", "最后状态", "最近问题说明"]


def _book():
    from openpyxl import Workbook

    wb = Workbook()
    wb.properties.creator = "pointwatch"
    return wb


def _bold(ws, row: int = 1) -> None:
    from openpyxl.styles import Font

    for cell in ws[row]:
        cell.font = Font(bold=True)


def _widths(ws, widths) -> None:
    from openpyxl.utils import get_column_letter

    for i, w in enumerate(widths, start=1):
        ws.column_dimensions[get_column_letter(i)].width = w


def _save(wb) -> bytes:
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def point_book(ctx) -> bytes:
    reg, sheet, chain = ctx["registration"], ctx["sheet"], ctx["chain"]
    wb = _book()
    ws = wb.active
    ws.title = "自评表"
    append(ws, [f"{sheet.profile_title}自评表", "", f"{reg['name']}（{reg['code']}）", "", "", ctx["period"].label])
    append(ws, ["区域", reg["region"], "报告条数", chain["reports"], "哈希链",
               "完整" if chain["intact"] else f"断裂 {chain['break_count']} 处（见“完整性”页）"])
    append(ws, HEAD)
    _bold(ws, 3)
    for r in sheet.rows:
        append(ws, [r.category, r.indicator, r.content, r.points, r.earned if r.state != "manual" else None,
                   r.basis, ITEM_STATE_LABEL.get(r.state, r.state), r.item_id])
    if sheet.rows:
        append(ws, ["合计", "", "自动项得分 / 可自动评分", sheet.total, sheet.earned,
                   f"人工评审项 {sheet.manual_points:g} 分待评审组填写", "", ""])
    for note in sheet.notes:
        append(ws, [note])
    _widths(ws, [12, 16, 50, 7, 7, 70, 8, 22])
    ws.freeze_panes = "A4"

    for title, rows in (("专网专机专用", sheet.dedicated()), ("设备清单", sheet.devices())):
        w = wb.create_sheet(title)
        append(w, RECORD_HEAD)
        _bold(w)
        for s in rows:
            append(w, series_cells(s))
        _widths(w, [36, 20, 10, 36, 10, 60])

    w = wb.create_sheet("终端登记")
    append(w, ["注册时间（北京时间）", "主机名", "机器标识", "序列号", "MAC 地址", "状态", "agent_id"])
    _bold(w)
    for a in reg["agents"]:
        fp = a.get("fingerprint") or {}
        append(w, [local(a["enrolled_at"]), a.get("hostname") or "", fp.get("machine_id", ""), fp.get("serial", ""),
                  ", ".join(fp.get("macs") or []), "已吊销" if a["revoked"] else "有效", a["agent_id"]])
    _widths(w, [20, 18, 38, 20, 40, 8, 38])

    w = wb.create_sheet("完整性")
    append(w, ["reports.jsonl 行", "报告 report_id", "问题"])
    _bold(w)
    for b in chain["breaks"]:
        append(w, [b["line"], b["report_id"], b["problem_cn"]])
    if chain["intact"]:
        append(w, ["—", "—", f"本期 {chain['reports']} 条报告哈希链完整"])
    _widths(w, [16, 40, 60])
    return _save(wb)


def summary_book(ctx) -> bytes:
    wb = _book()
    ws = wb.active
    ws.title = "汇总"
    append(ws, [f"{ctx['region']} 医保服务点运行监测证据汇总", ctx["period"].label])
    append(ws, ["编码", "服务点", "区域", "评价标准", "自动项得分", "可自动评分", "满分", "报告条数", "哈希链"])
    _bold(ws, 2)
    for p in ctx["points"]:
        sh = p["sheet"]
        append(ws, [p["code"], p["name"], p["region"], sh.profile, sh.earned if sh.rows else None,
                   sh.automatic_points, sh.total, p["chain"]["reports"],
                   "完整" if p["chain"]["intact"] else f"断裂 {p['chain']['break_count']} 处"])
    _widths(ws, [16, 30, 36, 20, 10, 10, 8, 10, 12])
    return _save(wb)
