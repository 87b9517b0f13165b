"""申请毕业's rules (storage.graduation_rules) over plain data: no database, no server.

What is missing comes from the 毕业进度 rules of dialogs/progress.py, called here as the
conversation will call them; the one-open-application-per-major rule is also a database index,
tested at the end.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pytest
from sqlalchemy.exc import IntegrityError

from dialogs import progress as prog
from storage import graduation_rules as g
from storage.db import Database
from storage.models_applications import Application
from tests.test_progress import PLAN, passed

RULES = {"thesis": True, "extra_exam_options": [{"label": "政治类专科毕业已通过行政法学", "courses": []},
                                                {"label": "非政治类专科毕业未通过行政法学", "courses": ["00261"]}]}


def diploma(graduated: str = "2015-07", **kw) -> g.PriorDiploma:
    return g.PriorDiploma(**({"number": "DIP-001", "graduated": graduated, "province": "江苏省", "photo_ids": [1]} | kw))


# --- 2002 rule and 专科 ---------------------------------------------------------------------------


@pytest.mark.parametrize("graduated, wanted", [
    ("2002-01", g.REGISTRATION_FORM), ("2015-07", g.REGISTRATION_FORM),
    ("2001-12", g.VERIFICATION_REPORT), ("1998-07", g.VERIFICATION_REPORT),
])
def test_graduation_in_2002_or_later_needs_the_registration_form_before_2002_the_verification_report(graduated, wanted):
    assert g.companion_for(graduated) == wanted


def test_a_diploma_with_the_right_companion_is_complete_and_the_wrong_one_is_named():
    ok = g.prior_education_problems("专升本", diploma(), g.Companion(g.REGISTRATION_FORM, "A1B2C3D4E5F6", [2]),
                                    current_month="2026-11")
    assert ok == []
    wrong = g.prior_education_problems("专升本", diploma("2001-06"), g.Companion(g.REGISTRATION_FORM, "A1B2C3D4E5F6", [2]),
                                       current_month="2026-11")
    assert wrong == ["毕业时间为2001年（2002年以前毕业），须上传中国高等教育学历认证报告。"]
    missing = g.prior_education_problems("本科", diploma("2010-07"), None, current_month="2026-11")
    assert missing == ["毕业时间为2010年（2002年及以后毕业），须上传教育部学历证书电子注册备案表。"]


def test_the_registration_forms_online_code_and_photo_are_checked():
    problems = g.prior_education_problems("专升本", diploma(), g.Companion(g.REGISTRATION_FORM, "123", []),
                                          current_month="2026-11")
    assert problems == ["请填写备案表上的12位在线验证码。", "请上传教育部学历证书电子注册备案表照片。"]


def test_every_missing_diploma_field_is_named_at_once():
    problems = g.prior_education_problems("专升本", g.PriorDiploma(graduated="2030-01"), None, current_month="2026-11")
    assert problems[:4] == ["请填写毕业证书编号。", "取得毕业证书的年月不对，请核对。", "请填写取得毕业证书的省份。",
                            "请上传毕业证书照片。"]


def test_a_junior_college_major_skips_prior_education():
    assert not g.needs_prior_education("专科") and g.needs_prior_education("专升本")
    assert g.prior_education_problems("专科", None, None, current_month="2026-11") == []
    assert g.prior_education_problems("专升本", None, None, current_month="2026-11") == ["本科专业须上传前置学历毕业证书。"]


# --- 自我鉴定 -------------------------------------------------------------------------------------


def test_self_assessment_has_a_configurable_minimum_that_ignores_spaces():
    assert g.self_assessment_problem("我" * 199) == "自我鉴定不少于200字，现在199字，还差1字。"
    assert g.self_assessment_problem("我" * 200) is None
    assert g.self_assessment_problem("我 是\n" * 25, minimum=60) == "自我鉴定不少于60字，现在50字，还差10字。"
    assert g.self_assessment_problem("好" * 30, minimum=30) is None


# --- 情况说明 -------------------------------------------------------------------------------------


def test_a_situation_statement_is_asked_for_each_missing_item_of_the_progress_rules_and_only_those():
    progress = prog.progress(PLAN, passed("03708", "03709", "00052", "00079"), required_credits=30, rules=RULES)
    items = g.missing_items(progress, extra_choice="非政治类专科毕业未通过行政法学")
    assert [i.key for i in items] == ["course:00015", "credits", "thesis", "extra:非政治类专科毕业未通过行政法学"]
    assert items[0].label == "英语(二)(00015)未取得合格成绩" and items[1].label == "选考课程学分还差5学分"
    explanations = {i.key: "本人已在外省取得该课程合格成绩，已办理转入手续。" for i in items}
    assert g.explanation_problems(items, explanations) == []
    short = dict(explanations, credits="无")
    assert g.explanation_problems(items, short) == ["2.选考课程学分还差5学分：请如实填写情况说明（不少于10字）。"]
    extra = dict(explanations, **{"course:03708": "这门课其实已经通过了，只是想说明一下。"})
    assert g.explanation_problems(items, extra) == ["只需为缺少的项目填写情况说明。"]


def test_a_complete_progress_with_an_extra_option_already_met_needs_no_statement():
    everything = passed("03708", "03709", "00015", "00052", "00079", "00054", "07999")
    progress = prog.progress(PLAN, everything, required_credits=30, rules=RULES)
    assert progress.complete
    assert g.missing_items(progress, extra_choice="政治类专科毕业已通过行政法学") == []
    assert g.explanation_problems([], {}) == []


# --- One application per major; 重新申请 --------------------------------------------------------


@dataclass
class App:
    kind: str
    major_code: Optional[str]
    status: str


@pytest.mark.parametrize("statuses, window_open, action", [
    ([], True, "new"),
    (["draft"], True, "continue"),
    (["submitted"], True, "edit"),
    (["rejected"], True, "reapply"),
    (["rejected"], False, "refused"),
    ([], False, "refused"),
    (["approved"], True, "refused"),
])
def test_one_application_per_major_and_reapplying_only_after_rejection_inside_the_window(statuses, window_open, action):
    existing = [App("graduation", "120103", s) for s in statuses]
    decision = g.apply_decision(existing, kind="graduation", major_code="120103", window_open=window_open,
                                window_text="申请毕业现在不在办理时间内。")
    assert decision.action == action
    if not window_open and "approved" not in statuses:
        assert decision.reason == "申请毕业现在不在办理时间内。"


def test_another_major_or_business_is_a_new_application():
    existing = [App("graduation", "120103", "submitted"), App("degree", "120402", "approved")]
    assert g.apply_decision(existing, kind="graduation", major_code="120402", window_open=True).action == "new"
    assert g.open_majors(existing, "graduation") == {"120103"}


async def test_the_database_holds_one_open_graduation_application_per_major(db: Database):
    from tests.test_payments import A1, Clock, _load

    await _load(db, Clock())
    async with db.session() as s:
        from sqlalchemy import select

        from storage.models_service import Order
        cid = (await s.execute(select(Order.candidate_id))).scalar_one()

    async def add(status: str, major: str = "120103", kind: str = "graduation") -> None:
        async with db.session() as s, s.begin():
            s.add(Application(kind=kind, status=status, candidate_id=cid, openid="o", admission_number=A1,
                              major_code=major))

    await add("rejected")
    await add("submitted")  # a rejected one does not block
    with pytest.raises(IntegrityError):
        await add("approved")
    await add("submitted", kind="exemption")  # other businesses are not concerned
    await add("submitted", kind="exemption")
