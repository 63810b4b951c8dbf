"""Every standards profile loads, adds up to its document's totals, and quotes its document.

The totals below were counted by hand from the documents in ../shared/seeds (see each profile's notes for
the places where 002's converted table prints no value and the points are inferred);
tests/test_profiles_seeds.py checks the printed values against the seed text itself. Both read the documents
through tests/conformance.py.
"""

from __future__ import annotations

import re
from collections import defaultdict

import pytest

from collector.scoring import CHECK_IDS, PROFILE_NAMES, ProfileError, load_profile, load_profiles
from tests.conformance import shared_path

PROFILES = load_profiles()

# profile -> (total, {category: points}, {indicator: points} or None)
EXPECTED = {
    # 表2 of 004: 硬件 35 / 服务 40 / 管理 25; per indicator as 002 附件3's national column splits them.
    "national-basic": (100, {"硬件标准": 35, "服务标准": 40, "管理标准": 25}, {
        "1.建设场所": 15, "2.宣传标识": 5, "3.服务窗口": 5, "4.服务网络": 10, "5.服务方式": 10,
        "6.服务事项": 10, "7.服务人员": 10, "8.服务制度": 10, "9.财经纪律": 15, "10.信息上报": 5,
        "11.安全管理": 5}),
    # 002 附件3, city column (满分110分): the national 100 plus the city's 10-point 综合展示 block.
    "lanzhou-basic-2023": (110, {"硬件标准": 35, "服务标准": 40, "管理标准": 35}, {
        "1.建设场所": 15, "2.宣传标识": 5, "3.服务窗口": 5, "4.服务网络": 10, "5.服务方式": 10,
        "6.服务事项": 10, "7.服务人员": 10, "8.服务制度": 10, "9.财经纪律": 15, "10.信息上报": 5,
        "11.安全管理": 5, "12.综合展示": 10}),
    # 001 二(二): 办公设备 计算机 打印机 复印机 扫描仪 电话 + 柜面家具; 宣传设施 电子显示屏 + 标识;
    # 功能区 一体机 取号机 + 便民设施; 基础医疗设备; 二(四) 网络; 五(三) 专网专机专用 and its five duties
    # (终端安全、账号密码、电子邮件、数据安全、信息保密).
    "jiangsu-15min": (19, {"办公设备": 6, "宣传设施": 2, "功能区设备": 3, "基础医疗设备": 1, "服务网络": 1,
                           "安全管理": 6}, None),
    # 003 基础设施: 电脑 打印机 复印机 电话 老年人专属服务设施; 专线接通; 接入医保信息系统.
    "xiangyuan-county": (7, {"基础设施": 5, "服务网络": 2}, None),
    # 004 表1: all 30 items, 25 split into six areas and 26 into count and standby window.
    "national-window": (36, {"严格依法合规": 4, "事项清单落实到位": 3, "服务优质高效": 7, "办事公开透明": 5,
                             "经办业务能力强": 4, "服务设施设备完善": 13}, None),
}
# (automatic, assisted, inferred) points, counted by hand: automatic = what the monitor awards by itself
# (it has seen the requirement met); assisted = the monitor shows evidence, the reviewer scores.
SPLIT = {"national-basic": (7, 9, 13), "lanzhou-basic-2023": (10, 14, 4), "jiangsu-15min": (7, 6, 0),
         "xiangyuan-county": (4, 2, 0), "national-window": (0, 5, 0)}


def test_every_named_profile_exists():
    assert set(PROFILES) == set(PROFILE_NAMES)


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_profile_adds_up_to_document_totals(name):
    profile = PROFILES[name]
    total, categories, indicators = EXPECTED[name]
    assert profile.total == total
    assert sum(i.points for i in profile.items) == total
    by_cat = defaultdict(float)
    for item in profile.items:
        by_cat[item.category] += item.points
    assert dict(by_cat) == categories
    if indicators is not None:
        by_ind = defaultdict(float)
        for item in profile.items:
            by_ind[item.indicator] += item.points
        assert dict(by_ind) == indicators
    assert (profile.automatic_points, profile.assisted_points, profile.inferred_points) == SPLIT[name]
    assert profile.automatic_points + profile.manual_points == total
    assert profile.covers, "a profile says exactly which part of its document it lists"


def _norm(text: str) -> str:
    return re.sub(r"[\s，。、；：“”\"（）()《》,.;:!！?？<>/]", "", text)


@pytest.fixture(scope="module")
def seed_texts() -> dict[str, str]:
    return {p.name: _norm(p.read_text(encoding="utf-8")) for p in shared_path("seeds").glob("*.txt")}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_titles_quote_the_documents(name, seed_texts):
    # Titles are the documents' own words (punctuation and spacing aside), so a reviewer recognises them.
    profile = PROFILES[name]
    assert profile.source.file in seed_texts
    for item in profile.items:
        assert item.source.file in seed_texts, item.id
        assert any(_norm(item.title) in t for t in seed_texts.values()), f"{item.id}: {item.title}"


def test_lanzhou_monitored_items_are_the_ones_the_seeds_readme_names():
    # The seeds README names the items the monitor can evidence. Those whose rule sees the whole requirement
    # are automatic; the others are assisted (自动+人工): the rule's result is evidence, the points the
    # reviewer's — 4.②/③ re-count core reachability, 1.② sees only the machine half of 人机信息相符, an
    # HDMI screen is invisible, passwords are not seen.
    lanzhou = PROFILES["lanzhou-basic-2023"]
    auto = {i.id: i.points for i in lanzhou.items if i.mode == "auto"}
    assisted = {i.id: i.points for i in lanzhou.items if i.mode == "assisted"}
    assert auto == {"network.core": 4, "service.self": 3, "security.dedicated_network": 3}
    assert assisted == {"site.computer": 5, "signage.display": 2, "network.query": 3, "network.online": 3,
                        "security.accounts_data": 1}


@pytest.mark.parametrize("name", PROFILE_NAMES)
def test_item_fields_hang_together(name):
    for item in PROFILES[name].items:
        assert (item.rule is None) == (item.mode == "manual"), item.id
        if item.mode == "assisted":
            assert item.review, f"{item.id}: an assisted item says what the reviewer confirms"
        if item.inferred:
            assert item.reason, item.id
        if item.veto:
            assert item.mode == "manual", item.id
        if item.rule is not None:
            assert item.rule.hold_source == "pointwatch 策略", f"{item.id}: holds are the project's policy"


def test_vetoes_and_levels_where_the_documents_put_them():
    vetoes = {name: [i.id for i in p.items if i.veto] for name, p in PROFILES.items()}
    assert vetoes == {"national-basic": ["finance.discipline"], "lanzhou-basic-2023": ["finance.veto"],
                      "national-window": ["legal.finance"], "jiangsu-15min": [], "xiangyuan-county": []}
    # 003: the equipment and the 专线 are demanded of 各镇; villages work through the national app.
    assert all(i.applies_to == ("town",) for i in PROFILES["xiangyuan-county"].items)
    assert all(i.applies_to is None for n, p in PROFILES.items() if n != "xiangyuan-county" for i in p.items)


def test_rule_check_ids_match_the_agent():
    from agent.checks.registry import known_check_ids

    assert known_check_ids() | {"identity.matches_enrolment"} == CHECK_IDS


# ---- validation: each error names the file and the item ----

GOOD_ITEM = """
  - id: network.core
    title: 可连接省级医保信息平台核心系统网络
    category: 服务网络
    points: 4
    source: {file: 002_7c675a8d2b01208e.txt, item: "附件3 4.服务网络 ①"}
    rule:
      all: ["net.core.tcp == ok", "net.core.icmp in [ok, warn]"]
      hold: 95%
"""


def _write(tmp_path, body: str, total: int = 4, name: str = "demo"):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ntitle: 测试\nsource: {{file: x.txt, item: y}}\ntotal: {total}\n"
                    f"items:{body}", encoding="utf-8")
    return path


def test_a_good_profile_loads(tmp_path):
    profile = load_profile(_write(tmp_path, GOOD_ITEM))
    rule = profile.item("network.core").rule
    assert rule.hold == 0.95 and rule.checks() == {"net.core.tcp", "net.core.icmp"}


@pytest.mark.parametrize("change, message", [
    (("net.core.tcp == ok", "net.core.tpc == ok"), "unknown check id 'net.core.tpc'"),
    (("net.core.tcp == ok", "net.core.tcp = ok"), "cannot parse condition"),
    (("net.core.tcp == ok", "net.core.tcp == up"), "unknown status 'up'"),
    (("net.core.tcp == ok", "net.core.tcp >= 1"), "takes ==, !=, in or not in"),
    (("net.core.tcp == ok", "device.kiosk.present >= one"), "whole number"),
    (("net.core.tcp == ok", "device.fax.present >= 1"), "unknown device"),
    (("hold: 95%", "hold: 150%"), "at most 100%"),
    (("hold: 95%", "hold: 95"), "write a percentage"),
    (("      hold: 95%\n", ""), "'hold'"),
    (("all:", "every:"), "expected exactly one of all, any, none"),
    (("points: 4", "points: 5"), "items add up to 5 points, the profile's total is 4"),
    (("    rule:", "    manual: true\n    rule:"), "either 'manual: true' or a 'rule'"),
])
def test_bad_profiles_name_file_and_item(tmp_path, change, message):
    path = _write(tmp_path, GOOD_ITEM.replace(*change))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    text = str(err.value)
    assert str(path) in text and message in text
    if "add up" not in message:
        assert "'network.core'" in text


@pytest.mark.parametrize("change, message", [
    (("    rule:", "    mode: assisted\n    rule:"), "says what the reviewer confirms ('review')"),
    (("    rule:", "    mode: sometimes\n    rule:"), "mode must be one of auto, manual, assisted"),
    (("    rule:", "    review: 看一下\n    rule:"), "'review' is for manual and assisted items"),
    (("    rule:", "    inferred: true\n    rule:"), "inferred points need a 'reason'"),
    (("    rule:", "    reason: 推定\n    rule:"), "inferred points need a 'reason'"),
    (("    rule:", "    veto: true\n    rule:"), "a veto (一票否决) is a reviewer's finding"),
    (("    rule:", "    applies_to: [hamlet]\n    rule:"), "'applies_to' lists region levels"),
    (("    rule:", "    manual: true\n    mode: assisted\n    rule:"), "contradict each other"),
])
def test_bad_item_fields_are_refused(tmp_path, change, message):
    path = _write(tmp_path, GOOD_ITEM.replace(*change))
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and "'network.core'" in str(err.value) and message in str(err.value)


def test_new_item_fields_load(tmp_path):
    body = GOOD_ITEM.replace("    rule:", "    mode: assisted\n    review: 评审现场确认\n    inferred: true\n"
                                        "    reason: 原表未印分值\n    applies_to: [town, village]\n    rule:")
    item = load_profile(_write(tmp_path, body)).item("network.core")
    assert (item.mode, item.manual, item.review, item.inferred, item.reason, item.applies_to) == (
        "assisted", True, "评审现场确认", True, "原表未印分值", ("town", "village"))
    assert item.applies("town") and not item.applies("county") and item.applies(None)


def test_level_of_a_region_path():
    from collector.scoring import level_of

    assert [level_of(p) for p in ("山西省", "山西省/长治市/襄垣县/古韩镇", "山西省/长治市/襄垣县/古韩镇/东关村",
                                  "/", "")] == ["province", "town", "village", None, None]


def test_duplicate_ids_and_category_totals_are_refused(tmp_path):
    with pytest.raises(ProfileError, match="'network.core': duplicate id"):
        load_profile(_write(tmp_path, GOOD_ITEM + GOOD_ITEM, total=8))
    path = tmp_path / "cats.yaml"
    path.write_text(_write(tmp_path, GOOD_ITEM).read_text(encoding="utf-8").replace(
        "name: demo", "name: cats").replace("total: 4", "total: 4\ncategories: {服务网络: 5}"), encoding="utf-8")
    with pytest.raises(ProfileError, match="category '服务网络': items add up to 4, expected 5"):
        load_profile(path)


def test_name_must_match_file(tmp_path):
    path = _write(tmp_path, GOOD_ITEM)
    wrong = tmp_path / "other.yaml"
    wrong.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    with pytest.raises(ProfileError, match="does not match the file name"):
        load_profile(wrong)


def test_validate_command(tmp_path, capsys):
    from collector.scoring.__main__ import main

    assert main([]) == 0
    assert "lanzhou-basic-2023: " in capsys.readouterr().out
    bad = _write(tmp_path, GOOD_ITEM.replace("net.core.tcp == ok", "net.core.tcp == down"))
    assert main([str(tmp_path)]) == 1
    assert f"{bad}: item 1 'network.core'" in capsys.readouterr().err
