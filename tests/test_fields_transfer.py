"""The typed answers of 本市转出 (dialogs/fields_transfer.py), without a server."""
from __future__ import annotations

import pytest

from dialogs import fields_transfer as FT
from dialogs.fields import Invalid
from dialogs.types import Message


def text(value: str) -> Message:
    return Message(openid="o", kind="text", text=value)


def test_province_by_number_or_name_and_never_shanghai() -> None:
    f = FT.TransferProvince()
    assert f.parse(text("9")) == "江苏省" and f.parse(text("江苏")) == "江苏省" and f.parse(text("广西")) == "广西壮族自治区"
    assert "9.江苏" in FT.province_list() and "上海" not in FT.province_list()
    for bad, why in (("上海", "不能是上海"), ("江南", "没有“江南”这个省份"), ("31", "1到30")):
        with pytest.raises(Invalid, match=why):
            f.parse(text(bad))
    with pytest.raises(Invalid, match="不是图片"):
        f.parse(Message(openid="o", kind="image", media_id="M1"))


def test_admission_number_and_phone() -> None:
    assert FT.TransferAdmissionNo().parse(text("３３０１ １８２０ ０３４５")) == "330118200345"
    with pytest.raises(Invalid, match="全部是数字"):
        FT.TransferAdmissionNo().parse(text("33011820034A"))
    assert FT.Phone().parse(text("021-12345678")) == "021-12345678"
    assert FT.Phone().parse(text("+86 138 1234 5678")) == "13812345678"
    with pytest.raises(Invalid, match="联系电话"):
        FT.Phone().parse(text("12345"))


def picks() -> FT.ResultPicks:
    return FT.ResultPicks(options=[("03709", "03709 马克思主义基本原理概论｜65分｜2024年10月"),
                                   ("03708", "03708 中国近现代史纲要｜76分｜2024年04月"),
                                   ("!00015", "00015 英语(二)｜免考｜2024年09月")])


def test_results_by_numbers_ranges_codes_and_names() -> None:
    f = picks()
    assert f.parse(text("1,2")) == ["03709", "03708"]
    assert f.parse(text("1-2")) == ["03709", "03708"]
    assert f.parse(text("2 2 1")) == ["03708", "03709"]
    assert f.parse(text("03708、马克思主义基本原理概论")) == ["03708", "03709"]
    assert f.parse(text("近现代史")) == ["03708"]


def test_a_blocked_result_comes_back_marked_and_unknown_ones_are_refused() -> None:
    f = picks()
    assert f.parse(text("00015")) == ["!00015"]  # the step says why it cannot go
    assert f.parse(text("英语(二)")) == ["!00015"]
    with pytest.raises(Invalid, match="没有第3项"):
        f.parse(text("3"))
    with pytest.raises(Invalid, match="范围1-5不对"):
        f.parse(text("1-5"))
    with pytest.raises(Invalid, match="您没有“00099”的合格成绩"):
        f.parse(text("00099"))
