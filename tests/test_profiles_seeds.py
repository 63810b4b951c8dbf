"""Conformance: ../shared/seeds is the authority for the points the profiles present as the documents'.

002 附件3 is a converted table (兰州市医疗保障基层服务示范点建设指标): one line per row, cells split by tabs —
项目, 评价指标, 国家标准（满分100分）, 市级细化标准（满分110分）, 分值 — with rows partly shifted and the
management rows run together (see the profiles' notes). The tests read the cells from the seed text, take
every printed value ("得N分", "减N分") in order, and check them against a reading of the table written out
below: which profile items each printed value belongs to. So every printed value must be accounted for,
in order, by items whose points add up to it; an item no printed value accounts for must be marked
``inferred: true`` (推定), with its reason. The 表2 section totals of 004 and the tables' 满分 headers are
checked too. Without ../shared (outside CI) the tests skip, saying why; in CI a skip fails the run.
"""

from __future__ import annotations

import re

from collector.scoring import load_profiles
from tests.conformance import shared_path

PROFILES = load_profiles()
LANZHOU_TABLE = ("seeds", "002_7c675a8d2b01208e.txt")
NATIONAL_TABLES = ("seeds", "004_af34fac9ed6b081e.txt")
VALUE = re.compile(r"(得|减)\s*(\d+(?:\.\d+)?)\s*分")


def _read(parts: tuple[str, str]) -> str:
    return shared_path(*parts).read_text(encoding="utf-8")


def table_rows() -> list[tuple[str, str, int | None]]:
    """(national cell, city cell, 分值 or None) for each scored row of 002 附件3, in table order."""
    text = _read(LANZHOU_TABLE)
    start = re.search(r"^附件3$", text, re.M).start()
    section = text[start:re.search(r"^附件 ?5$", text[start:], re.M).start() + start]
    rows = []
    for line in section.splitlines():
        cells = line.split("\t")
        if len(cells) < 4 or cells[0] == "项目":
            continue
        if re.fullmatch(r"\d+", cells[-1].strip()):
            body, score = cells[:-1], int(cells[-1])
            rows.append((body[-2], body[-1], score))
        else:  # the last row: 9 and 10 in the national cell, 9/10 and 11/12 in two city cells, no 分值
            rows.append((cells[1], " ".join(cells[2:]), None))
    return rows


def printed(cell: str) -> list[tuple[str, float]]:
    return [(kind, float(n)) for kind, n in VALUE.findall(cell)]


def each(*ids):
    """A deduction or award per item ("每缺失一项，减1分", "每具备一项，得1分"): every item is worth it."""
    return ("each", ids)


S4 = ("service.reception", "service.policy_explain", "service.law_popularise", "service.proxy")
R5 = ("rules.first_inquiry", "rules.one_time_notice", "rules.time_limit", "rules.disclosure", "rules.proxy")

# The reading of the national column (国家标准, 满分100分) -> national-basic. One list per table row; each
# entry is one printed value: (得|减, value, the items it belongs to — their points add up to it).
NATIONAL = [
    [("得", 5, ["site.location"]), ("得", 5, ["site.facilities"]), ("得", 5, ["site.layout"])],
    [("得", 3, ["signage.posters"]), ("得", 2, ["signage.display"])],
    [("得", 5, ["windows.count", "windows.standby"]), ("减", 1, ["windows.standby"])],
    [("得", 4, ["network.core"]), ("得", 3, ["network.query"]), ("得", 3, ["network.online"])],
    [("得", 6, ["service.mode"]), ("得", 4, list(S4)), ("减", 1, each(*S4))],
    # the unlabelled row: 6.服务事项's first half
    [("得", 1, ["matters.defined"]), ("得", 4, ["matters.share"]), ("得", 1, ["matters.online"])],
    # the row labelled 6.服务事项: its 规范服务流程…公开公示 clause (线上线下一致 prints no value)
    [("得", 1, ["matters.process"])],
    # the row labelled 7.服务质量: 7.服务人员
    [("得", 3, ["staff.management"]), ("得", 3, ["staff.leader"]), ("得", 3, ["staff.village"]),
     ("得", 1, ["staff.skills"])],
    [("得", 5, list(R5)), ("减", 1, each(*R5))],
    # 9.财经纪律 and 10.信息上报 in one cell; 11.安全管理 has no national cell
    [("得", 15, ["finance.discipline"]), ("得", 3, ["reporting.regular"]), ("得", 2, ["reporting.incidents"])],
]

# The city column (市级细化标准, 满分110分) -> lanzhou-basic-2023; ``inferred`` adds the inferred items of a
# row, so that the row's items add up to its 分值.
CITY = [
    [("得", 5, ["site.location"]), ("得", 5, ["site.computer"]), ("得", 5, ["site.layout"])],
    [("得", 3, ["signage.posters"]), ("得", 2, ["signage.display"])],
    [("得", 5, ["windows.count", "windows.standby"]), ("减", 1, ["windows.standby"])],
    [("得", 4, ["network.core"]), ("得", 3, ["network.query"]), ("得", 3, ["network.online"])],
    [("得", 3, ["service.counter"]), ("得", 3, ["service.self"]), ("得", 1, each(*S4))],
    [("得", 1, ["matters.defined"]), ("得", 4, ["matters.count"]), ("得", 1, ["matters.online"]),
     ("得", 2, ["matters.display"]), ("得", 1, ["matters.publish"])],
    [("得", 3, ["staff.assignment"]), ("得", 3, ["staff.leader"]), ("得", 1, ["staff.village"])],
    [("得", 1, each(*R5)), ("得", 5, ["rules.satisfaction"])],
    # 8.服务制度 repeats the national text: the same five systems
    [("得", 5, list(R5)), ("减", 1, each(*R5))],
    [("得", 10, ["finance.rules"]), ("得", 5, ["finance.clean"]), ("得", 1, ["reporting.training"]),
     ("得", 2, ["reporting.guidance"]), ("得", 2, ["reporting.incidents"]),
     ("得", 3, ["security.dedicated_network"]), ("得", 1, ["security.accounts_data"]),
     ("得", 1, ["security.secrecy"]), ("得", 2.5, ["showcase.party_building"]),
     ("得", 2.5, ["showcase.presentation"]), ("得", 2.5, ["showcase.report"]),
     ("得", 2.5, ["showcase.annual_tasks"])],
]
CITY_INFERRED_BY_ROW = {5: ["matters.consistent"], 6: ["staff.village_remainder"]}


def _claimed(reading) -> set[str]:
    out = set()
    for row in reading:
        for _kind, _value, ids in row:
            out.update(ids[1] if isinstance(ids, tuple) else ids)
    return out


def _check_column(profile_name: str, cells: list[str], reading) -> None:
    profile = PROFILES[profile_name]
    points = {i.id: i.points for i in profile.items}
    assert len(cells) == len(reading), "the table has a row the reading does not cover"
    for n, (cell, row) in enumerate(zip(cells, reading, strict=True)):
        # Every printed value of the row, in order, is one entry of the reading ...
        assert printed(cell) == [(k, float(v)) for k, v, _ in row], f"{profile_name} row {n + 1}"
        # ... and the profile's items carry it.
        for kind, value, ids in row:
            if isinstance(ids, tuple):
                assert all(points[i] == value for i in ids[1]), f"{profile_name} row {n + 1}: {kind}{value} each"
            else:
                assert sum(points[i] for i in ids) == value, f"{profile_name} row {n + 1}: {kind}{value} {ids}"
    claimed = _claimed(reading)
    for item in profile.items:
        if item.id in claimed:
            assert not item.inferred, f"{profile_name} {item.id}: its value is printed; it is not inferred"
        elif item.veto and item.points == 0:
            continue  # a 一票否决 item carries no points: there is no value to print or infer
        else:
            assert item.inferred and item.reason, (
                f"{profile_name} {item.id}: {item.points:g} points that no printed value gives must be marked "
                "inferred: true, with the reason")


def test_national_column_printed_values_are_the_profiles():
    _check_column("national-basic", [national for national, _city, _score in table_rows()], NATIONAL)
    national = PROFILES["national-basic"]
    # 87 printed: 35 + 32 + 20; the other 13 are inferred.
    assert sum(v for row in NATIONAL for k, v, _ in row if k == "得") == 87
    assert national.inferred_points == national.total - 87 == 13


def test_city_column_printed_values_are_the_profiles():
    rows = table_rows()
    _check_column("lanzhou-basic-2023", [city for _national, city, _score in rows], CITY)
    lanzhou = PROFILES["lanzhou-basic-2023"]
    points = {i.id: i.points for i in lanzhou.items}
    # The 分值 column: each row's items (printed and inferred) add up to it.
    for n, (_national, _city, score) in enumerate(rows):
        if score is None:
            continue
        ids = _claimed([CITY[n]]) | set(CITY_INFERRED_BY_ROW.get(n, ()))
        assert sum(points[i] for i in ids) == score, f"分值 of row {n + 1}"
    assert {i.id for i in lanzhou.items if i.inferred} == {i for ids in CITY_INFERRED_BY_ROW.values() for i in ids}
    assert lanzhou.inferred_points == 4


def test_printed_totals_are_the_profiles():
    text = _read(LANZHOU_TABLE)
    assert int(re.search(r"国家标准（满分(\d+)分）", text)[1]) == PROFILES["national-basic"].total
    assert int(re.search(r"市级细化标准（满分(\d+)分）", text)[1]) == PROFILES["lanzhou-basic-2023"].total
    assert int(re.search(r"硬件标准 \((\d+)分\)", text)[1]) == PROFILES["lanzhou-basic-2023"].categories["硬件标准"]
    # 004 表2 prints the national section totals (硬件 / 服务 / 管理), 表1 the window table's per 项目.
    text = _read(NATIONAL_TABLES)
    table2 = text[text.index("表2\n"):text.index("附件3")]
    assert [int(n) for n in re.findall(r"^\t(\d+)$", table2, re.M)] == list(
        PROFILES["national-basic"].categories.values())
    table1 = text[text.index("表1\n"):text.index("附件2")]
    assert sum(int(n) for n in re.findall(r"^\t(\d+)$", table1, re.M)) == 100
    # national-window scores no points (表1 prints none per item): a checklist, one entry per item.
    assert PROFILES["national-window"].scoring == "checklist"
    assert len(re.findall(r"^\t(\d+)\.", table1, re.M)) == 30 == len(
        {i.indicator for i in PROFILES["national-window"].items})
