"""Typed fields: what they accept, how they normalise, and the reason they give otherwise."""
from __future__ import annotations

import datetime as dt

import pytest

from dialogs import fields as F
from dialogs.fields import Invalid
from dialogs.types import Message


def text(s: str) -> Message:
    return Message(openid="o", kind="text", text=s)


def image(media_id: str = "MEDIA") -> Message:
    return Message(openid="o", kind="image", media_id=media_id)


def parse(field: F.Field, s: str):
    return field.parse(text(s))


def reason(field: F.Field, s: str) -> str:
    with pytest.raises(Invalid) as e:
        parse(field, s)
    return e.value.reason


@pytest.mark.parametrize("raw", ["310101199001011234", " 3101 0119 9001 0112 34 ", "３１０１０１１９９００１０１１２３４"])
def test_id_number_accepts_spacing_and_full_width(raw):
    assert parse(F.IdNumber(), raw) == "310101199001011234"


def test_id_number_lower_case_x_is_upper_cased():
    assert parse(F.IdNumber(), "11010519491231002x") == "11010519491231002X"


def test_id_number_reasons_are_specific():
    assert "校验" in reason(F.IdNumber(), "310101199001011235")
    assert "出生日期" in reason(F.IdNumber(), "310101199013011231")  # month 13, right check digit
    assert "18位" in reason(F.IdNumber(), "3101011990")


def test_id_number_accepts_passport_shapes():
    assert parse(F.IdNumber(), "E12345678") == "E12345678"
    assert "格式" in reason(F.IdNumber(), "身份证")


def test_id_number_shows_masked():
    assert F.IdNumber().show("310101199001011234") == "3101**********1234"


def test_admission_number_is_twelve_digits():
    assert parse(F.AdmissionNo(), "0115 2010 0001") == "011520100001"
    assert "12位" in reason(F.AdmissionNo(), "01152010000")
    assert "只含数字" in reason(F.AdmissionNo(), "01152010000A")


def test_mobile_accepts_prefix_and_masks():
    assert parse(F.Mobile(), "+86 138-1234-5678") == "13812345678"
    assert "11位" in reason(F.Mobile(), "12812345678")
    assert F.Mobile().show("13812345678") == "138****5678"


@pytest.mark.parametrize("raw", ["2018年6月", "2018年06月", "2018-06", "2018/6", "201806", "2018.6", "２０１８年６月"])
def test_year_month_formats(raw):
    assert parse(F.YearMonth(), raw) == "2018-06"


def test_year_month_rejects_bad_month_future_and_rule():
    assert "1到12" in reason(F.YearMonth(), "2018年13月")
    assert "格式" in reason(F.YearMonth(), "去年六月")
    nxt = dt.date.today().year + 1
    assert "晚于本月" in reason(F.YearMonth(), f"{nxt}年1月")
    rule = F.YearMonth(latest="2002-12", latest_reason="只能登记2002年及以前的成绩。")
    assert parse(rule, "2002年12月") == "2002-12"
    assert reason(rule, "2003年1月") == "只能登记2002年及以前的成绩。"
    assert F.YearMonth().show("2018-06") == "2018年6月"


@pytest.mark.parametrize("raw", ["2018年6月1日", "2018-06-01", "2018/6/1", "20180601", "2018年6月1号"])
def test_date_formats(raw):
    assert parse(F.Date(), raw) == "2018-06-01"


def test_date_rejects_impossible_days():
    assert "没有这一天" in reason(F.Date(), "2019-02-29")
    assert parse(F.Date(), "2020-02-29") == "2020-02-29"


@pytest.mark.parametrize("raw,full", [("上海", "上海市"), ("上海市", "上海市"), ("江苏", "江苏省"), ("内蒙古", "内蒙古自治区"),
                                      ("新疆", "新疆维吾尔自治区"), ("香港", "香港特别行政区"), ("广西", "广西壮族自治区")])
def test_province_short_and_full_names(raw, full):
    assert parse(F.Province(), raw) == full


def test_there_are_34_provinces():
    assert len(F.PROVINCES) == 34 and "没有找到" in reason(F.Province(), "火星")


def test_score_numbers_and_grades():
    s = F.Score()
    assert parse(s, "85") == "85" and parse(s, "59.5") == "59.5" and parse(s, "100分") == "100"
    assert parse(s, "合格") == "合格" and parse(s, "通过") == "通过"
    assert "超过100" in reason(s, "101")
    assert "0到100" in reason(s, "八十五")


@pytest.mark.parametrize("raw,value", [("是", True), ("好的", True), ("确认", True), ("否", False), ("不是", False), ("OK", True)])
def test_yes_no(raw, value):
    assert parse(F.YesNo(), raw) is value


def test_yes_no_refuses_other_words():
    assert "是" in reason(F.YesNo(), "也许")


OPTS = (("00015", "英语(二)"), ("03708", "中国近现代史纲要"), ("04184", "线性代数(经管类)"), ("04183", "概率论与数理统计(经管类)"))


def test_choice_by_number_name_or_unique_part():
    c = F.Choice(options=OPTS)
    assert parse(c, "2") == "03708"
    assert parse(c, "英语(二)") == "00015"
    assert parse(c, "线性代数") == "04184"
    assert "经管类" not in reason(c, "经管类") and "序号" in reason(c, "经管类")
    assert "1到4" in reason(c, "9")
    assert c.show("04184") == "线性代数(经管类)"


@pytest.mark.parametrize("raw", ["1,3,4", "1 3 4", "1、3、4", "1，3，4", "3 4 1 1"])
def test_multi_choice_separators(raw):
    assert sorted(parse(F.MultiChoice(options=OPTS), raw)) == ["00015", "04183", "04184"]


def test_multi_choice_ranges_and_limits():
    assert parse(F.MultiChoice(options=OPTS), "1-3") == ["00015", "03708", "04184"]
    assert "最多" in reason(F.MultiChoice(options=OPTS, max_count=2), "1 2 3")
    assert "1到4" in reason(F.MultiChoice(options=OPTS), "1 7")


def test_photo_wants_an_image_and_text_gets_a_hint():
    p = F.Photo()
    assert p.parse(image("M1")) == {"media_id": "M1"}
    assert "照片" in reason(p, "这是我的照片")


def test_text_field_refuses_an_image_politely():
    with pytest.raises(Invalid) as e:
        F.Text().parse(image())
    assert "文字" in e.value.reason


def test_text_limits_count_characters():
    t = F.Text(min_len=2, max_len=5)
    assert parse(t, "标题") == "标题"
    assert "至少2" in reason(t, "标")
    assert "最多5" in reason(t, "一二三四五六")


def test_optional_field_takes_skip_words():
    assert parse(F.Text(optional=True), "无") is None


def test_secret_is_never_shown():
    assert F.Secret().show("hunter2") == "******"
