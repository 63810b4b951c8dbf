"""points import/export: CSV (UTF-8 and GBK) and XLSX, row-by-row errors, nothing half-imported."""

from __future__ import annotations

import io

import pytest
from openpyxl import Workbook, load_workbook

from collector import cli
from collector.store import audit, queries, registry

GOOD = [
    ("code", "name", "region", "profile", "address", "expected_devices"),
    ("620102001001", "城关区某村服务点", "甘肃省/兰州市/城关区/某镇/某村", "lanzhou-basic-2023", "某村委会一楼",
     "kiosk:1, printer:2, 扫描仪"),
    ("620102001002", "城关区另一村服务点", "甘肃省/兰州市/城关区/某镇/另一村", "national-basic", "", ""),
]


@pytest.fixture
def run_cli(db_url, monkeypatch, capsys):
    monkeypatch.setenv("POINTWATCH_DATABASE_URL", db_url)

    def run(*argv, stdin: str | None = None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(list(argv))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def _store(db_url):
    from collector.store import Store

    return Store(db_url)


def write_csv(path, rows, encoding="utf-8-sig"):
    path.write_text("\n".join(",".join(f'"{c}"' for c in r) for r in rows) + "\n", encoding=encoding)
    return path


def write_xlsx(path, rows):
    wb = Workbook()
    for r in rows:
        wb.active.append(list(r))
    wb.save(path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "csv-gbk", "xlsx"])
def test_import_creates_points_regions_and_an_audit_entry(run_cli, db_url, tmp_path, fmt):
    if fmt == "xlsx":
        rows = [GOOD[0], (620102001001, *GOOD[1][1:]), GOOD[2]]  # Excel keeps long codes as numbers
        path = write_xlsx(tmp_path / "points.xlsx", rows)
    else:
        path = write_csv(tmp_path / "points.csv", GOOD, "gb18030" if fmt == "csv-gbk" else "utf-8-sig")
    code, out, err = run_cli("points", "import", str(path))
    assert code == 0, err
    assert "新增 2" in out
    store = _store(db_url)
    points = {p.code: p for p in queries.list_points(store, "甘肃省/兰州市/城关区")}
    assert set(points) == {"620102001001", "620102001002"}
    assert points["620102001001"].profile == "lanzhou-basic-2023"
    exported = registry.export_points(store)
    assert exported[0]["expected_devices"] == [{"kind": "kiosk", "count": 1}, {"kind": "printer", "count": 2},
                                               {"kind": "scanner", "count": 1}]
    assert exported[0]["address"] == "某村委会一楼"
    entry = audit.audit_entries(store, action="points.import")[0]
    assert entry["actor"].startswith("cli:") and entry["details"]["created"] == 2
    # A second import of the same file updates instead of duplicating.
    assert run_cli("points", "import", str(path))[1].count("更新 2") == 1
    store.close()


def test_bad_rows_are_reported_and_nothing_is_written(run_cli, db_url, tmp_path):
    rows = GOOD + [
        ("", "无编码", "甘肃省/兰州市/城关区", "national-basic", "", ""),
        ("620102001001", "重复编码", "甘肃省/兰州市/城关区", "national-basic", "", ""),
        ("620102001004", "", "甘肃省/兰州市/城关区", "no-such-profile", "", "fax:1"),
        ("620102001005", "太深", "a/b/c/d/e/f", "national-basic", "", "printer:0"),
    ]
    path = write_csv(tmp_path / "bad.csv", rows)
    code, out, err = run_cli("points", "import", str(path))
    assert code == 1 and "未写入" in err
    for expected in ("第 4 行，列 code：不能为空", "第 5 行，列 code：编码“620102001001”与第 2 行重复",
                     "第 6 行，列 name", "第 6 行，列 profile", "第 6 行，列 expected_devices：未知设备类型",
                     "第 7 行，列 region", "第 7 行，列 expected_devices"):
        assert expected in err, err
    store = _store(db_url)
    assert queries.list_points(store) == []  # the good rows were not imported either
    assert audit.audit_entries(store, action="points.import") == []
    store.close()


def test_missing_columns_are_named(run_cli, tmp_path):
    path = write_csv(tmp_path / "cols.csv", [("code", "name"), ("1", "x")])
    code, _, err = run_cli("points", "import", str(path))
    assert code == 1 and "第 1 行，列 region：缺少必需的列" in err and "列 profile" in err


def test_export_round_trips_through_import(run_cli, db_url, tmp_path):
    assert run_cli("points", "import", str(write_csv(tmp_path / "p.csv", GOOD)))[0] == 0
    out = tmp_path / "export.xlsx"
    code, text, _ = run_cli("points", "export", "--out", str(out))
    assert code == 0 and "2 个服务点" in text
    sheet = load_workbook(out).active
    header = [c.value for c in sheet[1]]
    assert header[:4] == ["code", "name", "region", "profile"]
    assert sheet.max_row == 3
    code, text, err = run_cli("points", "import", str(out))
    assert code == 0 and "更新 2" in text, err
    store = _store(db_url)
    assert audit.audit_entries(store, action="points.export")[0]["target"] == str(out)
    store.close()
