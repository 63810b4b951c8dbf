"""The final 自评表 of a review, as PDF and XLSX: every item with the monitor's verdict and the reviewer's
score, automatic + manual = total, the 一票否决, who reviewed, and each automatic item the reviewer overrode
on site (both verdicts and the reason).

``ctx`` is what collector/review/signed.py assembles: ``review`` (the review.json "review" part),
``reviewer``, ``lines`` (lines.Line), ``totals``, ``attachments``, ``key_id``, ``draft``.
"""

from __future__ import annotations

from collector.evidence import pdf, xlsx
from collector.evidence.period import local
from collector.xlsxcells import append

VERDICT_CN = {"met": "达标", "not_met": "未达标", "no_data": "无数据", "manual": "人工评审",
              "not_applicable": "不适用"}
MODE_CN = {"auto": "自动", "manual": "人工", "assisted": "自动+人工"}


def _pts(v) -> str:
    return "" if v is None else f"{v:g}"


def monitor_cell(x) -> str:
    if not x.applicable:
        return "不适用"
    if x.mode == "auto":
        return f"{VERDICT_CN.get(x.monitor_state, x.monitor_state)}（{_pts(x.monitor_earned or 0)} 分）"
    if x.evidence:
        return f"监测佐证：{VERDICT_CN.get(x.evidence, x.evidence)}"
    return "—"


def remark(x) -> str:
    parts = []
    if x.overridden:
        parts.append(f"现场改判：监测判定{VERDICT_CN.get(x.monitor_state, x.monitor_state)}"
                     f"（{_pts(x.monitor_earned or 0)} 分），评审判定 {_pts(x.score)} 分。理由：{x.reason}")
    if x.vetoed:
        parts.append("一票否决：本项否决，总分计 0")
    if x.note:
        parts.append(x.note)
    if x.attachments:
        parts.append("附件：" + "、".join(f"{a.get('name') or '附件'}（{a['sha256'][:12]}…）" for a in x.attachments))
    return "；".join(parts)


def sum_sentence(t: dict) -> str:
    s = f"自动项 {t['automatic']:g} 分 + 人工项 {t['manual']:g} 分 = 总分 {t['automatic'] + t['manual']:g} 分"
    if t["vetoed"]:
        s += f"；一票否决（{'、'.join(t['vetoed_by'])}），总分计 0 分"
    return s + f"（满分 {t['full_marks']:g} 分）"


def who(reviewer: dict) -> str:
    person = reviewer.get("person")
    return f"{person}（{reviewer.get('actor')}）" if person else str(reviewer.get("actor"))


def flowables(ctx, st) -> list:
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, Spacer

    r, t = ctx["review"], ctx["totals"]
    title = f"{r.get('profile_title') or r['profile']}自评表（评审{'草稿' if ctx.get('draft') else '定稿'}）"
    out = [Paragraph(pdf._esc(title), st["title"]),
           Paragraph(pdf._esc(f"{r.get('name') or ''}（{r['point']}）· 评审编号 {r['id']}"), st["sub"])]
    info = [["服务点", f"{r.get('name') or ''}（编码 {r['point']}）", "所属区域", r["region"]],
            ["评价期间", r["period_label"], "评审人", who(ctx["reviewer"])],
            ["开始评审", local(r.get("opened"), "%Y-%m-%d %H:%M"),
             "提交时间", local(r.get("submitted"), "%Y-%m-%d %H:%M:%S") if r.get("submitted") else "未提交"],
            ["更正", f"更正评审 {r['replaces']['id']}（{r['replaces']['reviewer']}）" if r.get("replaces") else "无",
             "签名密钥", ctx.get("key_id") or "—"]]
    out.append(pdf._table(info, [18 * mm, 72 * mm, 18 * mm, 72 * mm], st, header_rows=0))
    out.append(Spacer(1, 3 * mm))
    out.append(Paragraph(pdf._esc(sum_sentence(t)), st["warn" if t["vetoed"] else "h2"]))
    if t["overridden"]:
        out.append(Paragraph(pdf._esc(f"评审组现场改判了 {len(t['overridden'])} 个自动评分项（得分前标“※”，“说明”栏并列监测判定与评审判定）。"),
                             st["warn"]))
    rows = [["项目", "具体内容", "分值", "方式", "监测判定", "得分", "说明"]]
    for x in ctx["lines"]:
        mark = "※" if x.overridden else ""  # in GB2312, so every Chinese font has it
        rows.append([x.category, x.title, _pts(x.points), MODE_CN.get(x.mode, x.mode), monitor_cell(x),
                     mark + ("—" if not x.applicable else _pts(x.counted)), remark(x)])
    rows.append(["合计", sum_sentence(t), _pts(t["full_marks"]), "", f"{t['automatic_monitor']:g}（监测）",
                 _pts(t["total"]), ""])
    out.append(pdf._table(rows, [18 * mm, 48 * mm, 10 * mm, 13 * mm, 24 * mm, 13 * mm, 54 * mm], st))
    general = ctx.get("attachments_general") or []
    if general:
        out.append(Paragraph(pdf._esc("其他附件：" + "；".join(f"{a.get('name')}（SHA-256 {a['sha256']}）"
                                                          for a in general)), st["small"]))
    chain = ctx.get("chain") or {}
    out.append(Paragraph(pdf._esc(
        f"自动评分部分在开始评审时冻结（{local(r.get('automatic_at'))}）：本期 {chain.get('reports', 0)} 条报告，"
        f"哈希链{'完整' if chain.get('intact', True) else '有断裂'}，链尾摘要 {chain.get('head') or '—'}。"), st["small"]))
    out.append(Spacer(1, 3 * mm))
    out.append(Paragraph(pdf._esc(
        "本表由评审人在 pointwatch 中逐项评分后提交，提交即以采集端 Ed25519 密钥签名，并在 manifest.json 中写明评审人的"
        "登录身份；提交后不可修改，更正须另开评审。可用 “pointwatch-collector evidence verify 数据包.zip --public-key "
        "公钥文件” 离线核验。评审组签字：＿＿＿＿＿＿  日期：＿＿＿＿＿＿"), st["small"]))
    out.append(PageBreak())
    return out


def pdf_bytes(ctx) -> bytes:
    return pdf.render(flowables, ctx)


def xlsx_bytes(ctx) -> bytes:
    r, t = ctx["review"], ctx["totals"]
    wb = xlsx._book()
    ws = wb.active
    ws.title = "自评表"
    append(ws, [f"{r.get('profile_title') or r['profile']}自评表", f"{r.get('name') or ''}（{r['point']}）",
               r["period_label"], f"评审编号 {r['id']}", "草稿" if ctx.get("draft") else "定稿"])
    append(ws, ["评审人", who(ctx["reviewer"]), "提交时间", local(r.get("submitted"), "%Y-%m-%d %H:%M:%S")
               if r.get("submitted") else "未提交", "更正", f"评审 {r['replaces']['id']}" if r.get("replaces") else "无"])
    append(ws, ["项目", "具体内容", "分值", "方式", "监测判定", "监测得分", "评审得分", "计入得分", "现场改判",
               "一票否决", "说明", "条目编号"])
    xlsx._bold(ws, 3)
    for x in ctx["lines"]:
        append(ws, [x.category, x.title, x.points, MODE_CN.get(x.mode, x.mode), monitor_cell(x),
                   x.monitor_earned if x.mode == "auto" else None, x.score, x.counted,
                   "是" if x.overridden else "", "否决" if x.vetoed else "", remark(x), x.id])
    append(ws, ["合计", sum_sentence(t), t["full_marks"], "", "", t["automatic_monitor"], "", t["total"], "", "", "", ""])
    append(ws, ["自动项", t["automatic"], "人工项", t["manual"], "总分", t["total"], "一票否决",
               "是" if t["vetoed"] else "否"])
    xlsx._widths(ws, [12, 50, 7, 9, 16, 9, 9, 9, 9, 9, 60, 22])
    ws.freeze_panes = "A4"
    return xlsx._save(wb)
