"""The Chinese PDF sheet (reportlab), with an embedded TrueType CJK font so it prints the same anywhere.

The font is WenQuanYi Micro Hei from the Debian package ``fonts-wqy-microhei`` (a TTC with TrueType
outlines; reportlab embeds a subset). ``POINTWATCH_CJK_FONT`` may name another TrueType file. Every piece
of text — and the canvas's initial font — uses that one font, so no base-14 font (which a viewer would
substitute) is referenced.

Without any such font the sheet is still produced, in ReportLab's built-in CID font STSong-Light: it is
not embedded, so the reader draws it with its own Chinese font (Acrobat's Asian font pack, poppler's
``poppler-data``). A warning says so once per process, and the manifest's ``pdf_font`` records which font
the sheets use, so a reviewer knows whether the PDF is self-contained.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from collector.evidence.period import local
from collector.evidence.sheet import series_cells
from collector.web.labels import ITEM_STATE_LABEL

log = logging.getLogger(__name__)

FONT = "PWCJK"
CID_FONT = "STSong-Light"  # ReportLab's built-in Adobe-GB1 font: metrics only, never embedded
FONT_PACKAGE = "fonts-wqy-microhei"
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
)


@dataclass(frozen=True)
class PdfFont:
    name: str  # the name reportlab draws with
    face: str  # the font's own name: WenQuanYiMicroHei, STSong-Light
    file: str | None  # the embedded TrueType file's name
    embedded: bool

    def as_json(self) -> dict:
        """The manifest's ``pdf_font``."""
        return {"name": self.face, "file": self.file, "embedded": self.embedded}


def font_file() -> Path | None:
    """The Chinese TrueType font to embed: $POINTWATCH_CJK_FONT, else the first installed candidate."""
    env = os.environ.get("POINTWATCH_CJK_FONT")
    for candidate in ([env] if env else []) + list(FONT_CANDIDATES):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


@functools.lru_cache(maxsize=1)
def pdf_font() -> PdfFont:
    """Register the sheet's font once per process: the TrueType file if there is one, else STSong-Light."""
    from reportlab.pdfbase import pdfmetrics

    path = font_file()
    if path is not None:
        from reportlab.pdfbase.ttfonts import TTFont

        ttf = TTFont(FONT, str(path), subfontIndex=0)
        pdfmetrics.registerFont(ttf)
        face = ttf.face.name
        return PdfFont(FONT, face.decode("latin-1") if isinstance(face, bytes) else str(face), path.name, True)
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    log.warning("no Chinese TrueType font for the evidence PDF: using ReportLab's built-in %s, which is not "
                "embedded (readers draw it with their own Chinese font). To embed one, install the Debian "
                "package '%s' or set POINTWATCH_CJK_FONT to a .ttf/.ttc", CID_FONT, FONT_PACKAGE)
    pdfmetrics.registerFont(UnicodeCIDFont(CID_FONT))
    return PdfFont(CID_FONT, CID_FONT, None, False)


def _styles(font: str):
    from reportlab.lib import colors
    from reportlab.lib.styles import ParagraphStyle

    base = ParagraphStyle("base", fontName=font, bulletFontName=font, fontSize=8.5, leading=11, wordWrap="CJK")
    return {
        "base": base,
        "title": ParagraphStyle("title", parent=base, fontSize=15, leading=20, alignment=1, spaceAfter=4),
        "sub": ParagraphStyle("sub", parent=base, fontSize=9, leading=12, alignment=1, spaceAfter=6),
        "h2": ParagraphStyle("h2", parent=base, fontSize=11, leading=15, spaceBefore=8, spaceAfter=4),
        "warn": ParagraphStyle("warn", parent=base, fontSize=9.5, leading=13, textColor=colors.HexColor("#b00020")),
        "small": ParagraphStyle("small", parent=base, fontSize=7.5, leading=9.5, textColor=colors.HexColor("#444444")),
        "cell": base,
        "center": ParagraphStyle("center", parent=base, alignment=1),
    }


def _esc(text) -> str:
    from xml.sax.saxutils import escape

    return escape("" if text is None else str(text))


def _table(rows, widths, st, header_rows=1, span=None):
    from reportlab.lib import colors
    from reportlab.platypus import Paragraph, Table, TableStyle

    data = [[c if not isinstance(c, str) else Paragraph(_esc(c), st["cell"]) for c in r] for r in rows]
    t = Table(data, colWidths=widths, repeatRows=header_rows)
    style = [("FONT", (0, 0), (-1, -1), st["base"].fontName),
             ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#888888")),
             ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
             ("BACKGROUND", (0, 0), (-1, header_rows - 1), colors.HexColor("#e8edf3"))]
    t.setStyle(TableStyle(style + (span or [])))
    return t


def _pts(v) -> str:
    return "" if v is None else f"{v:g}"


def point_flowables(ctx, st) -> list:
    """One point's sheet: header, 自评表, integrity, 专网专机专用 record, devices, registration."""
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph, Spacer

    reg, sheet, chain = ctx["registration"], ctx["sheet"], ctx["chain"]
    out = [Paragraph(_esc(f"{sheet.profile_title}自评表"), st["title"]),
           Paragraph(_esc(f"医保服务点运行监测证据 · {reg['name']}（{reg['code']}）"), st["sub"])]
    info = [["服务点", f"{reg['name']}（编码 {reg['code']}）", "所属区域", reg["region"]],
            ["评价标准", f"{sheet.profile_title}（{sheet.profile}）", "评价期间", ctx["period"].label],
            ["报告条数", str(chain["reports"]), "生成时间", local(ctx["generated_at"], "%Y-%m-%d %H:%M:%S")],
            ["签名密钥", ctx["key_id"], "生成程序", ctx["generator"]]]
    out.append(_table(info, [18 * mm, 72 * mm, 18 * mm, 72 * mm], st, header_rows=0))
    out.append(Spacer(1, 3 * mm))
    if chain["intact"]:
        out.append(Paragraph(_esc(f"数据完整性：本期 {chain['reports']} 条报告的哈希链完整，未发现入库后修改。"), st["base"]))
    else:
        out.append(Paragraph(_esc(f"数据完整性警告：本期报告的哈希链有 {chain['break_count']} 处断裂，"
                                  "以下报告在入库后被修改、删除或调换顺序，其内容不能作为可信证据："), st["warn"]))
        for b in chain["breaks"][:20]:
            out.append(Paragraph(_esc(f"· reports.jsonl 第 {b['line']} 行，报告 {b['report_id']}：{b['problem_cn']}"),
                                 st["warn"]))
    for note in sheet.notes + ctx.get("notes", []):
        out.append(Paragraph(_esc(note), st["small"]))
    out.append(Paragraph("一、评分表", st["h2"]))
    rows = [["项目", "评价指标", "具体内容", "分值", "得分", "依据"]]
    for r in sheet.rows:
        earned = _pts(r.earned) if r.state != "manual" else ""
        basis = r.basis if r.state == "manual" else f"{ITEM_STATE_LABEL.get(r.state, r.state)}。{r.basis}"
        rows.append([r.category, r.indicator, r.content, _pts(r.points), earned, basis])
    if sheet.rows:
        rows.append(["合计", "", f"满分 {sheet.total:g} 分：监测自动评分项 {sheet.automatic_points:g} 分，"
                     f"人工评审项 {sheet.manual_points:g} 分", _pts(sheet.total), _pts(sheet.earned),
                     "自动项得分；人工项由评审组现场评定后填入“得分”栏"])
    out.append(_table(rows, [19 * mm, 20 * mm, 52 * mm, 10 * mm, 10 * mm, 69 * mm], st))
    if sheet.reported_share is not None:
        out.append(Paragraph(_esc(f"期间内有报告的时段占比 {sheet.reported_share * 100:.2f}%（无报告的时段不得分）。"),
                             st["small"]))
    out.append(Paragraph("二、专网专机专用记录", st["h2"]))
    head = ["检查项", "正常/警告/不合格/出错", "正常占比", "首次/末次问题", "最后状态", "最近问题说明"]
    widths = [40 * mm, 24 * mm, 16 * mm, 34 * mm, 14 * mm, 52 * mm]
    ded = [series_cells(s) for s in sheet.dedicated()]
    out.append(_table([head] + ded, widths, st) if ded else Paragraph("本期无专网专机专用检查记录。", st["base"]))
    out.append(Paragraph("三、设备清单", st["h2"]))
    expected = reg.get("expected_devices") or []
    if expected:
        out.append(Paragraph(_esc("登记设备：" + "；".join(
            f"{d.get('name', '')}（{d.get('kind', '')}）" if isinstance(d, dict) else str(d) for d in expected)),
            st["base"]))
    dev = [series_cells(s) for s in sheet.devices()]
    out.append(_table([head] + dev, widths, st) if dev else Paragraph("本期无设备检查记录。", st["base"]))
    out.append(Paragraph("四、终端登记与指纹", st["h2"]))
    agents = [["注册时间", "主机名", "机器标识", "序列号", "MAC 地址", "状态"]]
    for a in reg["agents"]:
        fp = a.get("fingerprint") or {}
        agents.append([local(a["enrolled_at"]), a.get("hostname") or "", fp.get("machine_id", ""),
                       fp.get("serial", ""), "、".join(fp.get("macs") or []), "已吊销" if a["revoked"] else "有效"])
    out.append(_table(agents, [24 * mm, 26 * mm, 44 * mm, 28 * mm, 42 * mm, 16 * mm], st))
    changes = ctx.get("host_changes") or []
    if changes:
        out.append(Paragraph(_esc(f"期间内终端上报的主机信息变化 {len(changes)} 次（详见 point.json）。"), st["base"]))
    out.append(Spacer(1, 4 * mm))
    out.append(Paragraph(_esc(
        "本表由 pointwatch 根据终端上报的原始记录自动生成。数据包内 manifest.json 记录每个文件的 SHA-256，"
        "并以采集端 Ed25519 密钥签名（manifest.sig）；可用 “pointwatch-collector evidence verify 数据包.zip "
        "--public-key 公钥文件” 离线核验签名、文件摘要和报告哈希链。评审组签字：＿＿＿＿＿＿  日期：＿＿＿＿＿＿"),
        st["small"]))
    out.append(PageBreak())
    return out


def summary_flowables(ctx, st) -> list:
    from reportlab.lib.units import mm
    from reportlab.platypus import PageBreak, Paragraph

    out = [Paragraph(_esc(f"{ctx['region']} 医保服务点运行监测证据汇总"), st["title"]),
           Paragraph(_esc(f"评价期间：{ctx['period'].label}　生成时间：{local(ctx['generated_at'])}"), st["sub"])]
    rows = [["编码", "服务点", "区域", "评价标准", "自动项得分", "报告条数", "哈希链"]]
    for p in ctx["points"]:
        sh = p["sheet"]
        score = f"{sh.earned:g} / {sh.automatic_points:g}" if sh.rows else "—"
        rows.append([p["code"], p["name"], p["region"], sh.profile, score, str(p["chain"]["reports"]),
                     "完整" if p["chain"]["intact"] else f"断裂 {p['chain']['break_count']} 处"])
    out.append(_table(rows, [26 * mm, 40 * mm, 42 * mm, 26 * mm, 18 * mm, 14 * mm, 16 * mm], st))
    out.append(PageBreak())
    return out


def render(flow_builder, ctx) -> bytes:
    """Build a PDF from ``flow_builder(ctx, styles)`` (or a list of such (builder, ctx) pairs)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.platypus import SimpleDocTemplate

    font = pdf_font().name
    st = _styles(font)
    buf = io.BytesIO()
    doc = SimpleDocTemplate(buf, pagesize=A4, leftMargin=12 * mm, rightMargin=12 * mm, topMargin=12 * mm,
                            bottomMargin=14 * mm, title="pointwatch evidence", author="pointwatch",
                            invariant=1, initialFontName=font)
    parts = flow_builder if isinstance(flow_builder, list) else [(flow_builder, ctx)]
    story = []
    for builder, c in parts:
        story += builder(c, st)
    if story:
        story.pop()  # the trailing page break

    def footer(canvas, _doc):
        canvas.setFont(font, 7.5)
        canvas.drawRightString(A4[0] - 12 * mm, 7 * mm, f"第 {canvas.getPageNumber()} 页 · pointwatch 证据数据包")

    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()
