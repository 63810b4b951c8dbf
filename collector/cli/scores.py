"""`pointwatch-collector scores`: a county's ranking or one point's sheet, as a table or JSON."""

from __future__ import annotations

import json
import sys

from agent.vocabulary import SILENCE_INTERVALS_DEFAULT
from collector.scoring import scores
from collector.timeutil import CHINA, parse_moment
from collector.web.labels import ITEM_STATE_LABEL, PROFILE_LABEL

EVIDENCE_MARK = {"met": "监测可见部分达标", "not_met": "监测可见部分未达标"}


def run_scores(store, args, silence_intervals: int = SILENCE_INTERVALS_DEFAULT) -> int:
    try:
        start = parse_moment(args.since) if args.since else None
        end = parse_moment(args.until, end_of_day=True) if args.until else None
        if args.point:
            sheet = scores.point_sheet(store, args.point, start, end, silence_intervals)
            print(json.dumps(sheet.as_dict(), ensure_ascii=False, indent=2) if args.json else _sheet_text(sheet))
        else:
            result = scores.region_scores(store, args.region, start, end, silence_intervals=silence_intervals)
            if args.json:
                from collector.api.scores import ranking_json

                print(json.dumps(ranking_json(result), ensure_ascii=False, indent=2, default=str))
            else:
                print(_ranking_text(result))
    except (ValueError, scores.ScoreError) as exc:
        print(f"错误：{exc}", file=sys.stderr)
        return 2
    return 0


def _period(start, end) -> str:
    if not start:
        return "当前"
    return f"{start.astimezone(CHINA):%Y-%m-%d %H:%M} 至 {end.astimezone(CHINA):%Y-%m-%d %H:%M}（北京时间）"


def _sheet_text(sheet) -> str:
    lines = [f"{PROFILE_LABEL.get(sheet.profile, sheet.profile)}（{sheet.title}）  时段：{_period(sheet.start, sheet.end)}",
             f"自动评分 {sheet.earned:g} / {sheet.automatic_points:g} 分，人工评审项 {sheet.manual_points:g} 分，满分 {sheet.total:g}"]
    for item in sheet.items:
        avail = f" 可用率 {item.availability:.1%}" if item.availability is not None else ""
        earned = "-" if item.earned is None else f"{item.earned:g}"
        marks = [f"[{ITEM_STATE_LABEL.get(item.state, item.state)}]"]
        if item.evidence:
            marks.append(f"[{EVIDENCE_MARK[item.evidence]}]")
        if item.inferred:
            marks.append("[推定分值]")
        if item.vetoed:
            marks.append("[一票否决]")
        lines.append(f"  {''.join(marks)} {item.category} · {item.title}  {earned}/{item.points:g}{avail}")
    if sheet.vetoed:
        lines.append("一票否决：总分为 0")
    return "\n".join(lines)


def _ranking_text(result) -> str:
    lines = [f"地区 {result.scope}  时段：{_period(result.start, result.end)}  共 {len(result.ranking)} 个服务点",
             "名次  编码          得分/可自动评分   名称"]
    for r in result.ranking:
        p = result.points[r.code]
        lines.append(f"{r.rank:>4}  {r.code:<12}  {r.sheet.earned:>5g}/{r.sheet.automatic_points:<5g} ({r.sheet.share:.0%})  {p.name}")
    return "\n".join(lines)
