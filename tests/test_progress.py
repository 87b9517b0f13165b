"""毕业进度 rules (dialogs.progress) over plain data: no database, no server."""
from __future__ import annotations

from dataclasses import dataclass

from dialogs import progress as p


@dataclass(frozen=True)
class Course:
    course_code: str
    course_name: str
    credits: int
    category: str = "必考"
    course_kind: str = "理论"


@dataclass(frozen=True)
class Res:
    course_code: str
    passed: bool


PLAN = [
    Course("03708", "中国近现代史纲要", 2),
    Course("03709", "马克思主义基本原理概论", 4),
    Course("00015", "英语(二)", 14),
    Course("00052", "管理系统中计算机应用(实践)", 1, course_kind="实践"),
    Course("00079", "保险学原理", 4, "选考"),
    Course("00054", "管理学原理", 6, "选考"),
    Course("00261", "行政法学", 5, "加考"),
    Course("07999", "金融学毕业论文", 0, course_kind="论文"),
]


def passed(*codes: str) -> list[Res]:
    return [Res(c, True) for c in codes]


def test_nothing_passed_lists_every_required_course_but_not_the_thesis_or_extras() -> None:
    r = p.progress(PLAN, [], required_credits=25, rules={"thesis": True})
    assert [m.course_code for m in r.missing_required] == ["03708", "03709", "00015", "00052"]
    assert r.credits == 0 and r.credits_needed == 25
    # 21 credits of 必考 courses are still to come: 4 more must come from 选考 courses.
    assert r.elective_credits_needed == 4
    assert [m.course_code for m in r.electives_open] == ["00079", "00054"]
    assert r.thesis_status == p.THESIS_NOT_YET and not r.complete


def test_credits_count_passed_required_and_elective_courses_only() -> None:
    r = p.progress(PLAN, passed("03708", "00079", "00261", "07999"), required_credits=25, rules={"thesis": True})
    assert r.credits == 2 + 4  # 加考 00261 and the thesis bring none
    assert r.credits_needed == 19
    assert r.thesis_status == p.THESIS_PASSED and r.thesis_done


def test_a_failed_attempt_is_marked_and_still_missing() -> None:
    r = p.progress(PLAN, [Res("00015", False), Res("00015", False), Res("07999", False)], required_credits=25,
                   rules={"thesis": True})
    english = next(m for m in r.missing_required if m.course_code == "00015")
    assert english.attempted and english.credits == 14
    assert not next(m for m in r.missing_required if m.course_code == "03708").attempted
    assert r.thesis_status == p.THESIS_FAILED


def test_one_pass_among_failures_completes_a_course() -> None:
    r = p.progress(PLAN, [Res("00015", False), Res("00015", True)], required_credits=25)
    assert "00015" not in {m.course_code for m in r.missing_required}
    assert r.credits == 14


def test_all_required_and_enough_elective_credits_with_the_thesis_is_complete() -> None:
    r = p.progress(PLAN, passed("03708", "03709", "00015", "00052", "00054", "07999"), required_credits=25,
                   rules={"thesis": True})
    assert r.credits == 27 and r.credits_needed == 0 and r.elective_credits_needed == 0
    assert r.missing_required == () and r.complete


def test_enough_credits_but_a_required_course_missing_is_not_complete() -> None:
    r = p.progress(PLAN, passed("03708", "03709", "00015", "00054", "00079", "07999"), required_credits=25,
                   rules={"thesis": True})
    assert r.credits_needed == 0
    assert [m.course_code for m in r.missing_required] == ["00052"] and not r.complete


def test_missing_thesis_keeps_it_incomplete_only_when_the_rules_ask_for_one() -> None:
    done = passed("03708", "03709", "00015", "00052", "00054")
    assert not p.progress(PLAN, done, required_credits=25, rules={"thesis": True}).complete
    no_thesis = p.progress(PLAN, done, required_credits=25, rules={"thesis": False})
    assert no_thesis.complete and no_thesis.thesis_status is None


def test_without_a_rule_a_required_thesis_course_in_the_plan_means_a_thesis() -> None:
    assert p.progress(PLAN, [], required_credits=25).thesis_required
    assert not p.progress([c for c in PLAN if c.course_kind != "论文"], [], required_credits=25).thesis_required
    r = p.progress([c for c in PLAN if c.course_kind != "论文"], [], required_credits=25, rules={"thesis": True})
    assert r.thesis_status == p.THESIS_NOT_IN_PLAN


def test_rule_required_courses_are_missing_whatever_their_category() -> None:
    r = p.progress(PLAN, [], required_credits=25, rules={"required_courses": ["00079"]})
    assert "00079" in [m.course_code for m in r.missing_required]
    assert [m.course_code for m in r.electives_open] == ["00054"]
    # Its credits count as coming: only 25 - 21 - 4 = 0 more from the others.
    assert r.elective_credits_needed == 0


def test_extra_exam_options_list_their_courses_with_passes() -> None:
    rules = {"extra_exam_options": [{"label": "政治类专科毕业", "courses": []},
                                    {"label": "非政治类专科毕业", "courses": ["00261", "00277"]}]}
    r = p.progress(PLAN, passed("00261"), required_credits=25, rules=rules, course_names={"00277": "行政管理学"})
    assert r.extra_options[0] == p.ExtraOption("政治类专科毕业", ())
    assert r.extra_options[0].done
    assert r.extra_options[1].courses == (("00261", "行政法学", True), ("00277", "行政管理学", False))
    assert not r.extra_options[1].done


def test_more_credits_than_required_leave_nothing_needed() -> None:
    r = p.progress(PLAN, passed(*[c.course_code for c in PLAN]), required_credits=10)
    assert r.credits == 31 and r.credits_needed == 0 and r.elective_credits_needed == 0 and r.complete
