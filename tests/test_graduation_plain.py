"""申请毕业's rules beyond storage/graduation_rules.py's own tests, as plain functions: the 在线验证码 /
报告编号 by the year of the diploma, what stops a submission (storage.graduation.problems_of), the
fee and its order number, the payment period in the approval push."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from types import SimpleNamespace

import pytest

from storage import graduation as G
from storage import graduation_rules as gr

NOW = dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.timezone.utc)
RULES = {"self_assessment_min_chars": 20, "extra_exam_options": [{"label": "A", "courses": []},
                                                                 {"label": "B", "courses": ["00261"]}]}
TEXT = "本人在校期间学习认真，遵守纪律，团结同学，积极参加社会实践活动。"


@pytest.mark.parametrize("graduated, number, problem", [
    ("2012-07", "ABCD12345678", None),
    ("2012-07", "ABC123", "在线验证码是备案表上的12位字母或数字，您输入的是6位。"),
    ("2002-01", "1234567890AB", None),
    ("2001-07", "ABCD12345678", "这是电子注册备案表的在线验证码。2001年毕业（2002年以前）的学历没有电子注册备案表"),
    ("2001-07", "2010012345", None),
    ("1998-07", "12", "认证报告编号是6到32位字母或数字"),
])
def test_the_companion_number_follows_the_2002_rule(graduated, number, problem):
    found = gr.companion_number_problem(graduated, number)
    assert (found is None) if problem is None else (found is not None and found.startswith(problem))


def test_a_2001_diploma_with_a_registration_code_is_refused_at_submission_too():
    diploma = gr.PriorDiploma("103251200105001234", "2001-07", "江苏省", [1])
    report_with_code = gr.Companion(gr.VERIFICATION_REPORT, "ABCD12345678", [2])
    assert any("没有电子注册备案表" in p for p in
               gr.prior_education_problems("专升本", diploma, report_with_code, current_month="2026-11"))
    assert gr.prior_education_problems("专升本", diploma, gr.Companion(gr.VERIFICATION_REPORT, "2010012345", [2]),
                                       current_month="2026-11") == []


def details(**kw) -> G.GraduationDetails:
    base = dict(profile_checked=True, results_confirmed=True, extra_choice="A", self_assessment=TEXT,
                diploma={"number": "103251201205001234", "graduated": "2012-07", "province": "江苏省", "photo_ids": [1]},
                companion={"kind": gr.REGISTRATION_FORM, "number": "ABCD12345678", "photo_ids": [2]})
    return G.GraduationDetails(**{**base, **kw})


def problems(d: G.GraduationDetails, level: str = "专升本", **kw) -> list[str]:
    args = dict(major_code="020301K", enrolled=True, level=level, rules=RULES, other_open=False, now=NOW)
    return G.problems_of(d, **{**args, **kw})


def test_a_complete_application_has_no_problems():
    assert problems(details()) == []


def test_each_missing_part_is_named():
    assert problems(details(), major_code=None) == ["请选择申请毕业的专业。"]
    assert problems(details(profile_checked=False)) == ["请核对个人信息并确认手机号码。"]
    assert problems(details(results_confirmed=False)) == ["请核对本专业的合格成绩。"]
    assert problems(details(extra_choice=None)) == ["请选择加考选项。"]
    assert problems(details(self_assessment="太短了")) == ["自我鉴定不少于20字，现在3字，还差17字。"]
    assert problems(details(), enrolled=False) == ["所选专业不是您报考的专业。"]
    assert problems(details(), other_open=True) == ["该专业已有一份毕业申请（待审核或已通过），同一专业只能有一份。"]
    assert problems(details(companion=None)) == ["毕业时间为2012年（2002年及以后毕业），须上传教育部学历证书电子注册备案表。"]


def test_a_zhuanke_major_needs_no_prior_education_and_rules_can_say_so():
    assert problems(details(diploma=None, companion=None), level="专科") == []
    assert problems(details(diploma=None, companion=None), rules={**RULES, "prior_education_required": False}) == []
    assert problems(details(diploma=None, companion=None)) == ["本科专业须上传前置学历毕业证书。"]


def test_a_explanation_for_each_missing_item_and_only_those():
    missing = [{"key": "thesis", "label": "毕业论文（设计）未取得合格成绩"}]
    assert problems(details(missing=missing)) == ["1.毕业论文（设计）未取得合格成绩：请如实填写情况说明（不少于10字）。"]
    assert problems(details(missing=missing, explanations={"thesis": "论文已提交，答辩安排在下个月。"})) == []
    assert problems(details(explanations={"thesis": "论文已提交，答辩安排在下个月。"})) == ["只需为缺少的项目填写情况说明。"]


def test_details_round_trip_and_name_their_photos():
    d = details(results=[G.ResultLine("00015", "英语(二)", "理论", "63分", 14, "2024-10", "", "012323200117")])
    again = G.GraduationDetails.from_dict(d.to_dict())
    assert again == d and again.photo_ids() == [1, 2]
    assert G.details_photo_ids("graduation", d.to_dict()) == [1, 2]
    assert G.details_photo_ids("transfer_out", d.to_dict()) == []


def test_the_fee_comes_from_the_majors_rules_else_the_default():
    assert G.fee_amount({}) == Decimal("150.00") == G.DEFAULT_FEE
    assert G.fee_amount({"graduation_fee": 200}) == Decimal("200.00")
    assert G.fee_amount({"graduation_fee": "180.5"}) == Decimal("180.50")
    assert G.fee_amount({"graduation_fee": "many"}) == Decimal("150.00")


def test_the_order_number_is_a_wechat_pay_out_trade_no_unique_per_application():
    from storage.payments import valid_out_trade_no

    n = G.order_number(42, NOW)
    assert n == "GF20261129A000042" and valid_out_trade_no(n)
    assert G.order_number(43, NOW) != n


def test_the_approval_says_when_payment_opens():
    assert G.payment_period_text(None, NOW) == "缴费时间另行通知，开放时会通知您。"
    later = SimpleNamespace(opens_at=NOW + dt.timedelta(days=30), closes_at=NOW + dt.timedelta(days=40))
    assert G.payment_period_text(later, NOW) == "缴费时间：2026年12月29日 11:00 至 2027年01月08日 11:00。"
    now_open = SimpleNamespace(opens_at=NOW - dt.timedelta(days=1), closes_at=NOW + dt.timedelta(days=9))
    assert G.payment_period_text(now_open, NOW) == "现在可以缴费，截止到2026年12月08日 11:00。"


def test_one_open_application_per_major_decides_the_majors_offered():
    apps = [SimpleNamespace(kind="graduation", major_code="020301K", status="submitted"),
            SimpleNamespace(kind="graduation", major_code="690206", status="rejected")]
    assert gr.apply_decision(apps, kind="graduation", major_code="020301K", window_open=True).action == "edit"
    assert gr.apply_decision(apps, kind="graduation", major_code="690206", window_open=True).action == "reapply"
    assert gr.apply_decision(apps, kind="graduation", major_code="120402", window_open=True).action == "new"
