"""A review round's county summary, for the city bureau: every point's total and rank, the items most often
lost, the points not yet reviewed; as JSON and as XLSX.

A round is a region and a period: the reviews counted are each point's current (newest submitted) review of
exactly that period. Ranks are by total, highest first; equal totals share a rank (1, 2, 2, 4).
"""

from __future__ import annotations

from collector.evidence import xlsx
from collector.evidence.period import Period, iso
from collector.review import lines
from collector.store import queries
from collector.store import reviews as repo
from collector.xlsxcells import append


def round_summary(store, scope: str, period: Period, silence_intervals: int) -> dict:
    points = queries.list_points(store, scope, silence_intervals=silence_intervals)
    done = repo.submitted_in_round(store, scope, period.start, period.end)
    ranked, lost = [], {}
    for p in points:
        rec = done.get(p.code)
        if rec is None:
            continue
        ls = lines.lines(rec.frozen, rec.entries)
        t = lines.totals(rec.frozen, ls)
        ranked.append({"code": p.code, "name": p.name, "region": p.region_path, "profile": rec.profile,
                       "review": rec.id, "reviewer": rec.identity.get("person") or rec.reviewer,
                       "submitted_at": iso(rec.submitted_at), "total": t["total"], "automatic": t["automatic"],
                       "manual": t["manual"], "vetoed": t["vetoed"], "full_marks": t["full_marks"],
                       "overridden": len(t["overridden"])})
        for x in ls:
            if x.applicable and (x.counted or 0.0) < x.points - 1e-9:
                e = lost.setdefault((rec.profile, x.id), {"profile": rec.profile, "item": x.id, "title": x.title,
                                                          "category": x.category, "points": x.points,
                                                          "points_losing": 0, "lost": 0.0})
                e["points_losing"] += 1
                e["lost"] += x.points - (x.counted or 0.0)
    ranked.sort(key=lambda r: (-r["total"], r["code"]))
    for i, r in enumerate(ranked):
        r["rank"] = ranked[i - 1]["rank"] if i and ranked[i - 1]["total"] == r["total"] else i + 1
    drafts = {r["point"] for r in repo.listing(store, scope, start=period.start, end=period.end, limit=100000)
              if r["state"] == repo.DRAFT}
    pending = [{"code": p.code, "name": p.name, "region": p.region_path, "profile": p.profile,
                "draft_open": p.code in drafts} for p in points if p.code not in done]
    items = sorted(lost.values(), key=lambda e: (-e["points_losing"], -e["lost"], e["item"]))
    return {"region": scope, "from": period.given_from, "to": period.given_to, "period": period.as_json(),
            "points": len(points), "reviewed": len(ranked), "ranking": ranked, "items_lost": items,
            "not_reviewed": pending}


def summary_xlsx(store, scope: str, period: Period, silence_intervals: int) -> bytes:
    s = round_summary(store, scope, period, silence_intervals)
    wb = xlsx._book()
    ws = wb.active
    ws.title = "排名"
    append(ws, [f"{scope} 医保服务点评审汇总", period.label, f"已评审 {s['reviewed']} / {s['points']} 个服务点"])
    append(ws, ["名次", "编码", "服务点", "区域", "评价标准", "总分", "自动项", "人工项", "满分", "一票否决",
               "现场改判项数", "评审人", "评审编号", "提交时间"])
    xlsx._bold(ws, 2)
    for r in s["ranking"]:
        append(ws, [r["rank"], r["code"], r["name"], r["region"], r["profile"], r["total"], r["automatic"],
                   r["manual"], r["full_marks"], "是" if r["vetoed"] else "否", r["overridden"], r["reviewer"],
                   r["review"], r["submitted_at"]])
    xlsx._widths(ws, [6, 16, 30, 36, 20, 8, 8, 8, 8, 8, 12, 16, 9, 22])
    w = wb.create_sheet("失分项")
    append(w, ["评价标准", "条目编号", "项目", "具体内容", "分值", "失分服务点数", "合计失分"])
    xlsx._bold(w)
    for e in s["items_lost"]:
        append(w, [e["profile"], e["item"], e["category"], e["title"], e["points"], e["points_losing"], e["lost"]])
    xlsx._widths(w, [20, 22, 14, 50, 7, 12, 10])
    w = wb.create_sheet("未评审")
    append(w, ["编码", "服务点", "区域", "评价标准", "评审草稿"])
    xlsx._bold(w)
    for p in s["not_reviewed"]:
        append(w, [p["code"], p["name"], p["region"], p["profile"], "评审中" if p["draft_open"] else "未开始"])
    xlsx._widths(w, [16, 30, 36, 20, 10])
    return xlsx._save(wb)
