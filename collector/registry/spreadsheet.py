"""The point registry in files: import from CSV/XLSX (what county staff keep their lists in), export to XLSX.

Import is all or nothing: every row is checked first, and any problem is reported by spreadsheet row number
(the header is row 1), column and what is wrong; only a clean file is written, in one transaction.
Headers may be the English column names or their Chinese labels (编码, 名称, 区域, 标准, 地址, 设备, 上报间隔).

A point's registered devices (what its agent checks, added to its effective policy) are the columns
device_kind, device_name, device_address, device_method (设备类型, 设备名称, 设备地址, 检测方式), one device
a row: a point's first row may hold one, and each further device is a row that repeats the point's code and
leaves name, region and profile empty. Each device is checked with the agent's own validator.
CSV is read as UTF-8 (with or without BOM) or, failing that, GB18030 — what Excel in China saves.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from agent.vocabulary import DEVICE_KIND_CN, DEVICE_KINDS, PROFILE_NAMES
from collector.cleantext import needs_cleaning
from collector.registry.devices import DEVICE_ALIASES, DEVICE_COLUMNS, cells_of, check_device
from collector.registry.regions import RegionError, normalize_path, split_path
from collector.xlsxcells import append, unneutralise

REQUIRED = ("code", "name", "region", "profile")
COLUMNS = REQUIRED + ("address", "expected_devices", "report_interval_s") + DEVICE_COLUMNS
ALIASES = {"编码": "code", "服务点编码": "code", "名称": "name", "服务点名称": "name", "区域": "region",
           "所属区域": "region", "标准": "profile", "评分标准": "profile", "地址": "address",
           "设备": "expected_devices", "应配设备": "expected_devices", "上报间隔": "report_interval_s",
           **DEVICE_ALIASES}
# A device kind may be written as its id or its Chinese name, with or without the note in brackets
# ("扫描仪（OCR）" or "扫描仪"), since that is how staff write it in their lists.
_CN_KIND = {name: kind for kind, cn in DEVICE_KIND_CN.items() for name in (cn, cn.split("（")[0])}
CODE_RE = re.compile(r"^[0-9A-Za-z_-]{1,40}$")
# Names and addresses are shown on every page and printed by the CLI: a cell with control characters (BEL,
# ESC) or invisible formatting (RLO, zero-width) is refused, not silently changed (collector/cleantext.py).
HIDDEN_CN = "含控制字符或不可见的格式字符（如 RLO、零宽空格、ESC），请删除后重新导入"


class ImportError_(Exception):  # noqa: N801 - "ImportError" is a builtin
    def __init__(self, problems: list[RowProblem]):
        super().__init__(f"{len(problems)} problem(s)")
        self.problems = problems


@dataclass(frozen=True)
class RowProblem:
    row: int  # spreadsheet row number; 1 is the header
    column: str
    problem: str

    def __str__(self) -> str:
        if self.row < 1:  # the file as a whole (its type, its encoding), not one of its cells
            return self.problem
        if self.column == "-":
            return f"第 {self.row} 行：{self.problem}"
        return f"第 {self.row} 行，列 {self.column}：{self.problem}"


@dataclass
class PointRow:
    row: int
    code: str
    name: str
    region: str
    profile: str
    address: str | None = None
    expected_devices: list[dict] = field(default_factory=list)
    report_interval_s: int = 60
    devices: list[dict] = field(default_factory=list)  # agent-config device entries (collector/registry/devices.py)


def read_table(path: str | Path) -> list[tuple[int, dict[str, str]]]:
    """(row number, {column: text}) for each non-empty data row; columns already mapped to English names."""
    path = Path(path)
    if path.suffix.lower() not in (".xlsx", ".xlsm", ".csv", ".txt"):
        raise ImportError_([RowProblem(0, "-", f"不支持的文件类型“{path.suffix}”（请用 .csv 或 .xlsx）")])
    return read_upload(path.name, path.read_bytes())


def read_upload(filename: str, data: bytes, max_rows: int | None = None) -> list[tuple[int, dict[str, str]]]:
    """read_table for a file's name and bytes (an upload through the web page or the API); at most
    ``max_rows`` data rows."""
    suffix = Path(filename or "").suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        rows = _read_xlsx(data)
    elif suffix in (".csv", ".txt"):
        rows = _read_csv(data)
    else:
        raise ImportError_([RowProblem(0, "-", f"不支持的文件类型“{suffix or filename}”（请用 .csv 或 .xlsx）")])
    if not rows:
        raise ImportError_([RowProblem(1, "-", "文件是空的")])
    if max_rows is not None and len(rows) - 1 > max_rows:
        raise ImportError_([RowProblem(0, "-", f"文件超过 {max_rows} 行，请分成几个文件导入")])
    header = [ALIASES.get(_text(h), _text(h).lower()) for h in rows[0]]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportError_([RowProblem(1, c, "缺少必需的列") for c in missing])
    out = []
    for number, values in enumerate(rows[1:], start=2):
        record = {h: unneutralise(_text(v)) for h, v in zip(header, values, strict=False) if h in COLUMNS}
        if any(record.values()):
            out.append((number, record))
    return out


def _read_xlsx(data: bytes) -> list[list]:
    from zipfile import BadZipFile

    from openpyxl import load_workbook

    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (BadZipFile, KeyError, ValueError, OSError):
        raise ImportError_([RowProblem(0, "-", "不是有效的 XLSX 文件（请用 Excel 另存为 .xlsx 或 .csv）")]) from None
    try:
        return [list(r) for r in wb.worksheets[0].iter_rows(values_only=True)]
    finally:
        wb.close()


def _read_csv(raw: bytes) -> list[list]:
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise ImportError_([RowProblem(0, "-", "无法识别文件编码（请存为 UTF-8 或 GBK）")])
    try:
        return [r for r in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise ImportError_([RowProblem(0, "-", f"CSV 格式错误：{exc}")]) from None


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Excel keeps long numeric codes as floats
    return str(value).strip()


def validate(rows: list[tuple[int, dict[str, str]]]) -> list[PointRow]:
    problems: list[RowProblem] = []
    points: list[PointRow] = []
    first_seen: dict[str, int] = {}
    by_code: dict[str, PointRow] = {}
    for number, rec in rows:
        bad = len(problems)
        code, name = rec.get("code", ""), rec.get("name", "")
        if code in first_seen and not any(rec.get(c) for c in COLUMNS if c != "code" and c not in DEVICE_COLUMNS):
            _device_row(number, rec, by_code.get(code), problems)  # one more device of a point above
            continue
        if not code:
            problems.append(RowProblem(number, "code", "不能为空"))
        elif not CODE_RE.match(code):
            problems.append(RowProblem(number, "code", f"“{code}”不是有效编码（1–40 位字母、数字、-、_）"))
        elif code in first_seen:
            problems.append(RowProblem(number, "code", f"编码“{code}”与第 {first_seen[code]} 行重复"))
        else:
            first_seen[code] = number
        for column in ("name", "address"):
            if needs_cleaning(rec.get(column)):
                problems.append(RowProblem(number, column, HIDDEN_CN))
        if not name:
            problems.append(RowProblem(number, "name", "不能为空"))
        elif len(name) > 200:
            problems.append(RowProblem(number, "name", "超过 200 个字符"))
        region = rec.get("region", "")
        try:
            region = normalize_path(region)
            if not split_path(region):
                problems.append(RowProblem(number, "region", "不能为空（形如 甘肃省/兰州市/城关区）"))
        except RegionError:
            problems.append(RowProblem(number, "region", f"“{region}”不是有效区域路径（省/市/县/镇/村，最多 5 级）"))
        profile = rec.get("profile", "")
        if profile not in PROFILE_NAMES:
            problems.append(RowProblem(number, "profile", f"“{profile}”不是已知标准（{'、'.join(PROFILE_NAMES)}）"))
        address = rec.get("address") or None
        if address and len(address) > 400:
            problems.append(RowProblem(number, "address", "超过 400 个字符"))
        devices, problem = parse_devices(rec.get("expected_devices", ""))
        if problem:
            problems.append(RowProblem(number, "expected_devices", problem))
        interval = 60
        if rec.get("report_interval_s"):
            try:
                interval = int(rec["report_interval_s"])
                if not 10 <= interval <= 86400:
                    raise ValueError
            except ValueError:
                problems.append(RowProblem(number, "report_interval_s", "须为 10–86400 之间的整数（秒）"))
        row = PointRow(number, code, name, region, profile, address, devices, interval)
        if any(rec.get(c) for c in DEVICE_COLUMNS):
            _device_row(number, rec, row, problems)
        if len(problems) == bad:
            points.append(row)
            by_code[code] = row
    if problems:
        raise ImportError_(problems)
    return points


def _device_row(number: int, rec: dict, point: PointRow | None, problems: list[RowProblem]) -> None:
    entry, column, problem = check_device(rec)
    if problem:
        problems.append(RowProblem(number, column, problem))
    elif point is not None:
        taken = {d.get("name") or d["kind"] for d in point.devices}
        if (entry.get("name") or entry["kind"]) in taken:
            problems.append(RowProblem(number, "device_name", f"设备名称“{entry.get('name') or entry['kind']}”"
                                                               "在该服务点重复（名称是检查结果的对象）"))
        else:
            point.devices.append(entry)


def parse_devices(text: str) -> tuple[list[dict], str | None]:
    """'kiosk:1, printer:2, 扫描仪' -> [{'kind': 'kiosk', 'count': 1}, …]."""
    out: list[dict] = []
    for part in re.split(r"[,，;；、\s]+", text or ""):
        if not part:
            continue
        kind, _, count = part.partition(":") if ":" in part else part.partition("：")
        kind = _CN_KIND.get(kind, kind.lower())
        if kind not in DEVICE_KINDS:
            return [], f"未知设备类型“{part}”（可用：{'、'.join(DEVICE_KINDS)}）"
        try:
            n = int(count) if count else 1
            if n < 1:
                raise ValueError
        except ValueError:
            return [], f"“{part}”的数量须为正整数"
        out.append({"kind": kind, "count": n})
    return out, None


def load_points(path: str | Path) -> list[PointRow]:
    return validate(read_table(path))


EXPORT_HEADER = ("code", "name", "region", "profile", "address", "expected_devices", "report_interval_s",
                 *DEVICE_COLUMNS)


def write_xlsx(points: list[dict], out: str | Path) -> None:
    """The same columns import reads, so an exported file can be edited and imported back."""
    from openpyxl import Workbook

    wb = Workbook()
    ws = wb.active
    ws.title = "服务点"
    append(ws, EXPORT_HEADER)
    for p in points:
        devices = ", ".join(f"{d['kind']}:{d['count']}" for d in p.get("expected_devices") or [])
        registered = [cells_of(d) for d in p.get("devices") or []]
        append(ws, [p["code"], p["name"], p["region"], p["profile"], p.get("address") or "", devices,
                   p.get("report_interval_s", 60), *(registered[0] if registered else ("", "", "", ""))])
        for more in registered[1:]:  # each further device on a row of its own, under the same code
            append(ws, [p["code"], "", "", "", "", "", "", *more])
    for col, width in zip("ABCDEFGHIJK", (16, 28, 40, 20, 30, 30, 10, 14, 20, 24, 10), strict=False):
        ws.column_dimensions[col].width = width
    wb.save(out)
